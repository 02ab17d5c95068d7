//! Plain axum routes next to the relay: `/health` and `/metrics`.

use crate::support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_ok_from_a_plain_axum_handler() {
    let server = Server::start().await;
    let (status, body) = server.get("/health").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_metrics_are_in_the_hosts_registry() {
    let server = Server::start().await;
    let mut ws = server.connect("/ws", None).await.expect("upgrade");
    crate::support::echo(&mut ws, "hi".into()).await;
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("wsrelay_connections_open 1"),
        "one open connection counted:\n{body}"
    );
    crate::support::close(ws).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_of_a_relay_route_is_refused_with_426() {
    let server = Server::start().await;
    // The handler names a target, but the request is no upgrade: docs/spec.md §3.3.
    let (status, _) = server.get("/ws").await;
    assert_eq!(status, 426);
    server.stop().await;
}
