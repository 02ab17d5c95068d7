//! examples/echo end to end: the seed's pattern, a Lua target per connection.

use std::time::Duration;

use crate::support::{repo, AppDir, Server};
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

/// What a Lua target sends for each case a client names, in order: every shape of a
/// `ws.send` payload. The record shapes are written by the connection straight from the
/// table's strings (no payload is built); the others take the built path. Both give what
/// `docs/spec.md` says: a wrong payload is ignored (and logged), the next one goes out.
const SHAPES: &str = r#"
local cases = {
    text = { { type = "text", data = "t1" } },
    notype = { { data = "t2" } },
    binary = { { type = "binary", data = "\0\1\255" } },
    binary_text = { { type = "binary", data = "abc" } },
    extra = { { type = "text", data = "t5", note = "x" } },
    nested = { { type = "text", data = "t6", meta = { a = 1 } } },
    many = { { type = "text", data = "t7", a = 1, b = 2, c = 3 } },
    number_type = { { type = 7, data = "t8" } },
    bad_text = { { type = "text", data = "\255" }, { data = "after bad text" } },
    no_data = { { type = "text" }, { data = "after no data" } },
    unknown_type = { { type = "blob", data = "x" }, { data = "after unknown type" } },
}
local function run()
    local inbox = process.inbox()
    repeat
        local msg = inbox:receive()
        local topic = msg and msg:topic()
        if topic == "ws.message" then
            local data = msg:payload():data()
            for _, payload in ipairs(cases[data.data]) do
                process.send(data.client_pid, "ws.send", payload)
            end
        end
    until topic == nil or topic == "ws.leave"
end
return { run = run }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_of_a_lua_ws_send_reaches_the_client_as_the_spec_says() {
    let app = AppDir::new()
        .file(
            "app.yaml",
            &std::fs::read_to_string(repo("examples/echo/app.yaml")).unwrap(),
        )
        .file(
            "connect.lua",
            &std::fs::read_to_string(repo("examples/echo/connect.lua")).unwrap(),
        )
        .file("echo.lua", SHAPES);
    let server = Server::start(Some(app.path()));
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{}/", server.addr))
        .await
        .expect("connect");
    let cases: [(&str, Message); 11] = [
        ("text", Message::text("t1")),
        ("notype", Message::text("t2")),
        ("binary", Message::binary(vec![0u8, 1, 255])),
        ("binary_text", Message::binary(b"abc".to_vec())),
        ("extra", Message::text("t5")),
        ("nested", Message::text("t6")),
        ("many", Message::text("t7")),
        ("number_type", Message::text("t8")),
        ("bad_text", Message::text("after bad text")),
        ("no_data", Message::text("after no data")),
        ("unknown_type", Message::text("after unknown type")),
    ];
    for (case, expected) in cases {
        client.send(Message::text(case)).await.expect("send");
        let got = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .unwrap_or_else(|_| panic!("{case}: nothing within 10 s"))
            .expect("connection open")
            .expect("frame");
        assert_eq!(got, expected, "{case}");
    }
    client.close(None).await.expect("close");
    assert_eq!(server.terminate().code(), Some(0));
}
