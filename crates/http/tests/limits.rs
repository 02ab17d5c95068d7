//! Limits: body size, header count, header read timeout, panics.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsrelay_http::{handler_fn, response, Router, Server};

use crate::support::{self, get, send, ID};

/// A server whose `/echo` answers with the length of the body it read.
async fn start(configure: impl FnOnce(&mut wsrelay_http::ServerConfig)) -> support::TestGateway {
    let mut config = support::config();
    configure(&mut config);
    let mut router = Router::new("/").unwrap();
    router
        .route(
            Method::POST,
            "/echo",
            Arc::new(handler_fn(|req| async move {
                match req.into_body().collect_bytes().await {
                    Ok(body) => response::text(StatusCode::OK, body.len().to_string()),
                    Err(err) => err.to_response(),
                }
            })),
        )
        .unwrap()
        .route(
            Method::GET,
            "/panic",
            Arc::new(handler_fn(|_| async { panic!("handler bug") })),
        )
        .unwrap();
    let mut server = Server::new(ID, config);
    server.add_router(router).unwrap();
    support::start_server(server).await
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let gw = start(|c| c.max_body_size = 1000).await;

    let ok = send(
        gw.addr,
        Method::POST,
        "/echo",
        &[],
        Bytes::from(vec![b'a'; 1000]),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "1000"));

    // Declared too large: refused before the handler runs.
    let big = send(
        gw.addr,
        Method::POST,
        "/echo",
        &[],
        Bytes::from(vec![b'a'; 1001]),
    )
    .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn chunked_body_over_the_limit_fails_to_read() {
    let gw = start(|c| c.max_body_size = 10).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let request =
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}

#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    assert_eq!(support::config().max_body_size, 1024 * 1024);
}

#[tokio::test]
async fn too_many_headers_is_refused() {
    let gw = start(|c| c.max_headers = 10).await;
    let headers: Vec<(String, String)> = (0..20)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let mut request = "GET /panic HTTP/1.1\r\nHost: t\r\n".to_owned();
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let gw = start(|c| c.header_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "connection still open after the header timeout"
    );
}

#[tokio::test]
async fn handler_panic_is_500() {
    let gw = start(|_| {}).await;
    assert_eq!(
        get(gw.addr, "/panic").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
