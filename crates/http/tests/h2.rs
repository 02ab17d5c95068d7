//! HTTP/2: cleartext by prior knowledge (h2c) when enabled, and RFC 8441 extended CONNECT
//! reaching the `GET` endpoint and becoming a stream of its own.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsrelay_http::{
    handler_fn, is_websocket_connect, middleware_fn, response, Router, Server, Shutdown,
};

use crate::support::{self, whoami, ID};

/// Takes an extended CONNECT over: answers `200` and echoes what the client sends on the
/// stream, prefixed with `echo:`. The handler must have run (it sets `x-tunnel`).
fn tunnel() -> Arc<dyn wsrelay_http::Middleware> {
    Arc::new(middleware_fn(|mut req, next| async move {
        if !is_websocket_connect(&req) {
            return next.run(req).await;
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        let shutdown = req.extensions().get::<Shutdown>().cloned().unwrap();
        let res = next.run(req).await;
        let Some(seen) = res.headers().get("x-tunnel").cloned() else {
            return res;
        };
        shutdown.tracker().spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(b"echo:").await.is_err() {
                    break;
                }
                let _ = io.write_all(&buf[..n]).await;
            }
            let _ = io.shutdown().await;
        });
        let mut ok = response::empty(StatusCode::OK);
        ok.headers_mut().insert("x-tunnel", seen);
        ok
    }))
}

async fn start(h2c: bool) -> support::TestGateway {
    let mut router = Router::new("/").unwrap();
    router.post_middleware(tunnel());
    router
        .route(
            Method::GET,
            "/ws",
            Arc::new(handler_fn(|req| async move {
                let mut res = response::empty(StatusCode::OK);
                // The handler sees the request as it came (CONNECT); the route is GET's.
                let method = http::HeaderValue::from_str(req.method().as_str()).unwrap();
                res.headers_mut().insert("x-tunnel", method);
                res
            })),
        )
        .unwrap();
    router.route(Method::GET, "/whoami", whoami()).unwrap();
    let mut config = support::config();
    config.h2c = h2c;
    let mut server = Server::new(ID, config);
    server.add_router(router).unwrap();
    support::start_server(server).await
}

async fn h2c_sender(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn connect_websocket(addr: std::net::SocketAddr) -> http::Request<Empty<bytes::Bytes>> {
    let mut req = http::Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn h2c_by_prior_knowledge_serves_http2_and_http11_alike() {
    let gw = start(true).await;
    let mut sender = h2c_sender(gw.addr).await;
    let req = http::Request::get(format!("http://{}/whoami", gw.addr))
        .body(Empty::new())
        .unwrap();
    let (status, version, body) = support::body_of(sender.send_request(req).await.unwrap()).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    assert!(body.contains(&format!("host={}", gw.addr)), "{body}");
    // HTTP/1.1 still works on the same listener.
    assert_eq!(
        support::get(gw.addr, "/whoami").await.status,
        StatusCode::OK
    );
    gw.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn h2c_is_off_by_default() {
    let gw = start(false).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let handshake = hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    );
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut sender, conn) = handshake.await?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{}/whoami", gw.addr))
            .body(Empty::new())
            .unwrap();
        sender.send_request(req).await
    })
    .await
    .expect("the server answers or closes within 10 s");
    assert!(outcome.is_err(), "HTTP/2 served without h2c: {outcome:?}");
    gw.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn extended_connect_runs_the_get_endpoint_and_streams_share_a_connection() {
    let gw = start(true).await;
    let sender = h2c_sender(gw.addr).await;
    let mut streams = Vec::new();
    for i in 0..3u8 {
        let mut sender = sender.clone();
        let addr = gw.addr;
        streams.push(tokio::spawn(async move {
            let mut res = sender.send_request(connect_websocket(addr)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["x-tunnel"], "CONNECT");
            let upgraded = hyper::upgrade::on(&mut res).await.unwrap();
            let mut io = TokioIo::new(upgraded);
            let text = format!("stream {i}");
            io.write_all(text.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 5 + text.len()];
            io.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, format!("echo:{text}").as_bytes());
        }));
    }
    for stream in streams {
        tokio::time::timeout(Duration::from_secs(10), stream)
            .await
            .expect("echo within 10 s")
            .unwrap();
    }
    // A plain CONNECT (no :protocol) is no WebSocket: no GET endpoint for it.
    let mut sender = sender.clone();
    let plain = http::Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{}", gw.addr))
        .body(Empty::new())
        .unwrap();
    let status = sender.send_request(plain).await.unwrap().status();
    assert_ne!(status, StatusCode::OK);
    gw.running.shutdown().await.unwrap();
}
