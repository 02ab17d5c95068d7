//! Test helpers: start a gateway, send requests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsrelay_http::{
    handler_fn, response, Gateway, Handler, PathParams, Router, RunningGateway, Server,
    ServerConfig,
};

/// The id every single-server test uses.
pub(crate) const ID: &str = "test:gateway";

/// A started gateway and the address of its [`ID`] server.
pub(crate) struct TestGateway {
    pub(crate) running: RunningGateway,
    pub(crate) addr: SocketAddr,
}

/// A server config on a free loopback port.
pub(crate) fn config() -> ServerConfig {
    ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Starts one server with `routers`.
pub(crate) async fn start(routers: Vec<Router>) -> TestGateway {
    let mut server = Server::new(ID, config());
    for router in routers {
        server.add_router(router).unwrap();
    }
    start_server(server).await
}

/// Starts one server.
pub(crate) async fn start_server(server: Server) -> TestGateway {
    let mut gateway = Gateway::new();
    gateway.add_server(server).unwrap();
    let running = gateway.bind().await.unwrap();
    let addr = running.local_addr(ID).unwrap();
    TestGateway { running, addr }
}

/// A handler answering `200` with `text`, plus its path params as `k=v`.
pub(crate) fn text(text: &'static str) -> Arc<dyn Handler> {
    Arc::new(handler_fn(move |req| async move {
        let params = req
            .extensions()
            .get::<PathParams>()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| format!(" {k}={v}"))
                    .collect::<String>()
            })
            .unwrap_or_default();
        response::text(StatusCode::OK, format!("{text}{params}"))
    }))
}

/// A response as the client saw it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// Sends `GET path`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, Method::GET, path, &[], Bytes::new()).await
}

/// Sends one request on a fresh connection.
pub(crate) async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `GET {raw_path}` byte for byte and returns the status code (0 when
/// the server closed without answering) and the whole response text.
pub(crate) async fn raw_get(addr: SocketAddr, raw_path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {raw_path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

// ===== TLS =====

pub(crate) use wsrelay_http::test_util::{
    fixture, fixture_certificate, presented_certificate, tls_connect, tls_connector, tls_files,
};

/// Sends `GET path` on an HTTP/1.1 or HTTP/2 sender and returns the status, version and body.
pub(crate) async fn body_of(
    res: hyper::Response<hyper::body::Incoming>,
) -> (StatusCode, http::Version, String) {
    let (status, version) = (res.status(), res.version());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// A handler that answers with what the gateway knows of the client:
/// `remote=ADDR peer=ADDR https=BOOL host=HOST`.
pub(crate) fn whoami() -> Arc<dyn Handler> {
    Arc::new(handler_fn(|req| async move {
        let info = req
            .extensions()
            .get::<wsrelay_http::ConnectInfo>()
            .unwrap()
            .clone();
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        response::text(
            StatusCode::OK,
            format!(
                "remote={} peer={} https={} host={host}",
                info.remote_addr(),
                info.peer_addr(),
                info.is_https()
            ),
        )
    }))
}

/// A router serving [`whoami`] at `/whoami`.
pub(crate) fn whoami_router() -> Router {
    let mut router = Router::new("/").unwrap();
    router.route(Method::GET, "/whoami", whoami()).unwrap();
    router
}
