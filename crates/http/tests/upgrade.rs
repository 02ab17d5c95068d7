//! Upgrades pass through the chain: a post middleware takes hyper's upgrade
//! handle, runs the handler, inspects its response and answers 101.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsrelay_http::{handler_fn, middleware_fn, response, ConnectInfo, Router, Shutdown};

use crate::support::{self, ID};

/// Upgrades when the handler set `x-upgrade` and wrote no body; the upgraded
/// connection greets, echoes one message, and says `bye` on shutdown.
fn upgrading_middleware() -> Arc<dyn wsrelay_http::Middleware> {
    Arc::new(middleware_fn(|mut req, next| async move {
        let on_upgrade = hyper::upgrade::on(&mut req);
        let shutdown = req.extensions().get::<Shutdown>().cloned().unwrap();
        let server_id = req
            .extensions()
            .get::<ConnectInfo>()
            .unwrap()
            .server_id()
            .to_owned();
        let res = next.run(req).await;
        if !res.headers().contains_key("x-upgrade") {
            return res;
        }
        if !res.body().is_known_empty() {
            return response::text(StatusCode::INTERNAL_SERVER_ERROR, "handler wrote a body");
        }
        let tracker = shutdown.tracker().clone();
        tracker.spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let _ = io
                .write_all(format!("hello from {server_id}\n").as_bytes())
                .await;
            let mut buf = [0u8; 4];
            tokio::select! {
                read = io.read_exact(&mut buf) => {
                    if read.is_ok() {
                        let _ = io.write_all(b"echo:").await;
                        let _ = io.write_all(&buf).await;
                    }
                }
                () = shutdown.token().cancelled() => { let _ = io.write_all(b"bye").await; }
            }
            let _ = io.shutdown().await;
        });
        let mut switching = response::empty(StatusCode::SWITCHING_PROTOCOLS);
        switching
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("test"));
        switching
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        switching
    }))
}

async fn start() -> support::TestGateway {
    let mut router = Router::new("/").unwrap();
    router.post_middleware(upgrading_middleware());
    router
        .route(
            Method::GET,
            "/ws",
            Arc::new(handler_fn(|_| async {
                let mut res = response::empty(StatusCode::OK);
                res.headers_mut()
                    .insert("x-upgrade", HeaderValue::from_static("1"));
                res
            })),
        )
        .unwrap()
        .route(
            Method::GET,
            "/ws-with-body",
            Arc::new(handler_fn(|_| async {
                let mut res = response::text(StatusCode::OK, "oops");
                res.headers_mut()
                    .insert("x-upgrade", HeaderValue::from_static("1"));
                res
            })),
        )
        .unwrap()
        .route(Method::GET, "/plain", support::text("plain"))
        .unwrap();
    support::start(vec![router]).await
}

/// Sends an upgrade request and reads the response head.
async fn upgrade(addr: std::net::SocketAddr, path: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test]
async fn upgrade_passes_through_a_post_middleware() {
    let gw = start().await;
    let (mut stream, head) = upgrade(gw.addr, "/ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(read_line(&mut stream).await, format!("hello from {ID}"));

    stream.write_all(b"ping").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "echo:ping");
}

#[tokio::test]
async fn plain_responses_and_bodies_are_not_upgraded() {
    let gw = start().await;
    let (_, head) = upgrade(gw.addr, "/plain").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, head) = upgrade(gw.addr, "/ws-with-body").await;
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
}

#[tokio::test]
async fn upgraded_connections_join_the_shutdown() {
    let gw = start().await;
    let (mut stream, head) = upgrade(gw.addr, "/ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(read_line(&mut stream).await, format!("hello from {ID}"));

    tokio::time::timeout(Duration::from_secs(5), gw.running.shutdown())
        .await
        .unwrap()
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "bye");
}
