//! Handshake rejections as a client sees them over HTTP.

use std::time::Duration;

use crate::support::TestServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wsrelay_ws::Config;

/// Sends `head` (CRLF-joined, blank line appended) and returns the status line and the rest.
async fn exchange(server: &TestServer, head: &[&str]) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request = head.join("\r\n");
    request.push_str("\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (status, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    (status.to_owned(), rest.to_ascii_lowercase())
}

/// A request head: the request line `first`, `Host`, `Connection: Upgrade` and
/// `Upgrade: websocket`, then `rest`.
fn upgrade<'a>(first: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut head = vec![
        first,
        "Host: x",
        "Connection: Upgrade",
        "Upgrade: websocket",
    ];
    head.extend_from_slice(rest);
    head
}

#[tokio::test]
async fn rejections_table() {
    let server = TestServer::start(Config::default()).await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let v13 = "Sec-WebSocket-Version: 13";
    let get = "GET / HTTP/1.1";
    // (request head, expected status line prefix, text expected in headers/body)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            upgrade(get, &[v13, key]),
            "HTTP/1.1 101",
            "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=",
        ),
        (
            vec![get, "Host: x"],
            "HTTP/1.1 426",
            "sec-websocket-version: 13",
        ),
        (
            upgrade(get, &["Sec-WebSocket-Version: 8", key]),
            "HTTP/1.1 400",
            "sec-websocket-version: 13",
        ),
        (
            upgrade(get, &[v13, "Sec-WebSocket-Key: short"]),
            "HTTP/1.1 400",
            "sec-websocket-key",
        ),
        (
            upgrade(get, &[v13, key, key]),
            "HTTP/1.1 400",
            "must appear once",
        ),
        (
            upgrade("POST / HTTP/1.1", &["Content-Length: 0", v13, key]),
            "HTTP/1.1 405",
            "allow: get",
        ),
        (
            upgrade("GET / HTTP/1.0", &[v13, key]),
            "HTTP/1.0 426",
            "http/1.1",
        ),
    ];
    for (head, status, needle) in cases {
        let (got_status, rest) = exchange(&server, &head).await;
        assert!(got_status.starts_with(status), "{head:?}: got {got_status}");
        assert!(rest.contains(needle), "{head:?}: {needle:?} not in {rest}");
    }
}
