//! `/lua/`: the Lua app's `function.lua` handler relays to a Lua echo process.

use tokio_tungstenite::tungstenite::Message;

use crate::support::{close, echo, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_come_back_from_the_lua_process() {
    let server = Server::start().await;
    let mut ws = server.connect("/lua/", None).await.expect("upgrade");
    echo(&mut ws, Message::text("from lua")).await;
    echo(&mut ws, Message::binary(vec![7u8; 1000])).await;
    close(ws).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_lua_connections_share_one_listener() {
    let server = Server::start().await;
    let mut rust = server.connect("/ws", None).await.expect("rust upgrade");
    let mut lua = server.connect("/lua/", None).await.expect("lua upgrade");
    echo(&mut lua, Message::text("lua")).await;
    echo(&mut rust, Message::text("rust")).await;
    close(lua).await;
    close(rust).await;
    server.stop().await;
}
