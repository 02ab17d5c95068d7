//! Graceful shutdown through the host's token: clients get close `1001`, `serve` returns.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{echo, next, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_closes_every_connection_with_1001() {
    let server = Server::start().await;
    let mut rust = server.connect("/ws", None).await.expect("rust upgrade");
    let mut lua = server.connect("/lua/", None).await.expect("lua upgrade");
    // Both relayed before shutdown starts.
    echo(&mut rust, Message::text("before")).await;
    echo(&mut lua, Message::text("before")).await;
    server.token.cancel();
    for ws in [&mut rust, &mut lua] {
        match next(ws).await {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
        // Reading on sends the client's close reply, which ends the close handshake; the
        // stream then ends.
        while next(ws).await.is_some() {}
    }
    // The server ends a connection when the client closes TCP after the close handshake
    // (or after `wsrelay.close_timeout`): the clients hang up, as a browser does.
    drop(rust);
    drop(lua);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_the_listener_is_closed() {
    let server = Server::start().await;
    let addr = server.addr;
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
