//! `/ws`: a Rust handler relays each connection to a Rust echo process of its own.

use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{close, echo, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_come_back_from_the_rust_process() {
    let server = Server::start().await;
    let mut ws = server.connect("/ws", None).await.expect("upgrade");
    echo(&mut ws, Message::text("hello")).await;
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    close(ws).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_origin_is_let_in() {
    let server = Server::start().await;
    let origin = format!("http://{}", server.addr);
    let mut ws = server
        .connect("/ws", Some(&origin))
        .await
        .expect("same origin upgrades");
    echo(&mut ws, Message::text("same")).await;
    close(ws).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_with_403() {
    let server = Server::start().await;
    for path in ["/ws", "/lua/"] {
        match server.connect(path, Some("https://evil.example")).await {
            Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403, "{path}"),
            Err(other) => panic!("{path}: expected 403, got {other}"),
            Ok(_) => panic!("{path}: a foreign origin was let in"),
        }
    }
    server.stop().await;
}
