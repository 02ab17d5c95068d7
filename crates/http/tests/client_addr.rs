//! The client's address: forwarding headers from trusted proxies only, and the PROXY
//! protocol (v1 and v2) on real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsrelay_http::{Server, TrustedProxies};

use crate::support::{self, whoami_router, ID};

async fn start(trusted: &[&str], proxy_protocol: bool) -> support::TestGateway {
    let mut config = support::config();
    config.trusted_proxies =
        TrustedProxies::new(trusted.iter().map(|net| net.parse().unwrap()).collect());
    config.proxy_protocol = proxy_protocol;
    config.header_read_timeout = Duration::from_secs(2);
    let mut server = Server::new(ID, config);
    server.add_router(whoami_router()).unwrap();
    support::start_server(server).await
}

async fn whoami(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let reply = support::send(addr, Method::GET, "/whoami", headers, bytes::Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_peers() {
    let headers = [
        ("x-forwarded-for", "203.0.113.9, 198.51.100.4"),
        ("x-forwarded-proto", "https"),
    ];
    let trusted = start(&["127.0.0.1/32"], false).await;
    let body = whoami(trusted.addr, &headers).await;
    assert!(
        body.starts_with("remote=198.51.100.4:0 peer=127.0.0.1:"),
        "{body}"
    );
    assert!(body.contains("https=true"), "{body}");
    // Also trusting the next hop moves the client one step left.
    let deeper = start(&["127.0.0.1/32", "198.51.100.0/24"], false).await;
    let body = whoami(deeper.addr, &headers).await;
    assert!(body.starts_with("remote=203.0.113.9:0"), "{body}");
    // An untrusted peer's headers are ignored.
    let untrusted = start(&["10.0.0.0/8"], false).await;
    let body = whoami(untrusted.addr, &headers).await;
    assert!(body.starts_with("remote=127.0.0.1:"), "{body}");
    assert!(body.contains("https=false"), "{body}");
    for gw in [trusted, deeper, untrusted] {
        gw.running.shutdown().await.unwrap();
    }
}

/// Sends `prefix` then a `GET /whoami` on one connection; returns the response text
/// (empty when the server closed without answering).
async fn raw_whoami(addr: SocketAddr, prefix: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    let request = b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.200\r\nConnection: close\r\n\r\n";
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out));
    let _ = read
        .await
        .expect("the server answers or closes within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

fn v2_header(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&80u16.to_be_bytes());
    header
}

#[tokio::test]
async fn proxy_protocol_headers_give_the_client_address() {
    let gw = start(&["127.0.0.1/32"], true).await;
    let v1 = raw_whoami(gw.addr, b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n").await;
    // The PROXY source is the hop the forwarding header is read from: it is not trusted,
    // so X-Forwarded-For is ignored and the PROXY source is the client.
    assert!(v1.contains("remote=192.0.2.7:5555 peer=127.0.0.1:"), "{v1}");
    let v2 = raw_whoami(gw.addr, &v2_header([198, 51, 100, 20], 4242)).await;
    assert!(v2.contains("remote=198.51.100.20:4242"), "{v2}");
    // A health check (v1 UNKNOWN) keeps the peer, a trusted proxy: its forwarding header
    // then counts, as on a connection without the PROXY protocol.
    let local = raw_whoami(gw.addr, b"PROXY UNKNOWN\r\n").await;
    assert!(
        local.contains("remote=192.0.2.200:0 peer=127.0.0.1:"),
        "{local}"
    );
    // No header: the connection is closed unanswered.
    assert_eq!(raw_whoami(gw.addr, b"").await, "");
    gw.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn proxy_protocol_is_refused_from_untrusted_peers() {
    let gw = start(&["10.0.0.0/8"], true).await;
    let answer = raw_whoami(gw.addr, b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n").await;
    assert_eq!(answer, "");
    gw.running.shutdown().await.unwrap();
}
