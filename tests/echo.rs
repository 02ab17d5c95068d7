//! examples/echo end to end: the seed's pattern, a Lua target per connection.

use std::time::Duration;

use crate::support::{repo, Server};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// A Lua target can pass on any message its route accepts: the engine's value budget
/// (`max_value_size`, 16 MiB by default) grows to admit the route's `max_message_size`
/// (16 MiB in examples/echo) plus the table around it. Before, a message of exactly the
/// route's limit was dropped by `process.send` and the client never got its echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_target_echoes_a_message_of_the_routes_largest_size() {
    let server = Server::start(Some(&repo("examples/echo")));
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let url = format!("ws://{}/", server.addr);
    let (mut client, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .expect("connect");
    for len in [1 << 20, 16 << 20] {
        let payload = vec![b'x'; len];
        client
            .send(Message::Binary(payload.clone().into()))
            .await
            .expect("send");
        let echo = tokio::time::timeout(Duration::from_secs(60), client.next())
            .await
            .unwrap_or_else(|_| panic!("no echo of {len} bytes within 60 s"))
            .expect("connection open")
            .expect("frame");
        assert_eq!(echo.into_data().len(), payload.len(), "echo of {len} bytes");
    }
    client.close(None).await.expect("close");
    assert_eq!(server.terminate().code(), Some(0));
}
