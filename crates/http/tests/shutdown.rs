//! Graceful shutdown: in-flight requests finish, new connections are refused,
//! the drain is bounded.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use wsrelay_http::{handler_fn, response, Error, Gateway, Router, Server};

use crate::support::{self, get, ID};

/// A gateway whose `/slow` handler signals `started` and then sleeps `delay`.
async fn start(
    delay: Duration,
    drain: Duration,
    started: Arc<Notify>,
) -> (wsrelay_http::RunningGateway, std::net::SocketAddr) {
    let mut router = Router::new("/").unwrap();
    router
        .route(
            Method::GET,
            "/slow",
            Arc::new(handler_fn(move |_| {
                let started = started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(delay).await;
                    response::text(StatusCode::OK, "done")
                }
            })),
        )
        .unwrap()
        .route(Method::GET, "/fast", support::text("fast"))
        .unwrap();
    let mut server = Server::new(ID, support::config());
    server.add_router(router).unwrap();
    let mut gateway = Gateway::new().drain_timeout(drain);
    gateway.add_server(server).unwrap();
    let running = gateway.bind().await.unwrap();
    let addr = running.local_addr(ID).unwrap();
    (running, addr)
}

/// Polls until connecting to `addr` is refused, for at most 2 s.
async fn wait_until_refused(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections after shutdown");
}

#[tokio::test]
async fn in_flight_request_completes_and_new_connections_are_refused() {
    let started = Arc::new(Notify::new());
    let (running, addr) = start(
        Duration::from_millis(500),
        Duration::from_secs(5),
        started.clone(),
    )
    .await;

    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    started.notified().await;
    let shutdown = tokio::spawn(running.shutdown());

    wait_until_refused(addr).await;
    let reply = in_flight.await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "done")
    );
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_hold_shutdown() {
    let (running, addr) = start(
        Duration::ZERO,
        Duration::from_secs(5),
        Arc::new(Notify::new()),
    )
    .await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/fast")
        .header("host", "t")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );

    // The connection is idle and kept alive; shutdown closes it at once.
    tokio::time::timeout(Duration::from_secs(2), running.shutdown())
        .await
        .expect("shutdown waited for an idle connection")
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn drain_is_bounded_by_the_timeout() {
    let started = Arc::new(Notify::new());
    let (running, addr) = start(
        Duration::from_secs(30),
        Duration::from_millis(200),
        started.clone(),
    )
    .await;
    let _stuck = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(30), get(addr, "/slow")).await;
    });
    started.notified().await;
    let result = tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("shutdown ignored its drain timeout");
    assert!(
        matches!(result, Err(Error::DrainTimeout { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn external_token_stops_the_gateway() {
    let shutdown = wsrelay_http::Shutdown::new();
    let mut server = Server::new(ID, support::config());
    server.add_router(Router::new("/").unwrap()).unwrap();
    let mut gateway = Gateway::new().with_shutdown(shutdown.clone());
    gateway.add_server(server).unwrap();
    let running = gateway.bind().await.unwrap();
    let addr = running.local_addr(ID).unwrap();

    shutdown.trigger();
    assert!(shutdown.is_triggered());
    wait_until_refused(addr).await;
    running.shutdown().await.unwrap();
}
