//! `process.service` entries at the app's start: `App::start` opens the listeners once every
//! auto-started service has come to its first wait, so the names a service registers as it
//! starts are there for the first client.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

use crate::support::ops::{app_dir_with, ws, TestApp};

/// A service that takes a while to set up (longer than many time slices: it is preempted on
/// the way, which is no wait) and registers its name last, then echoes.
const SLOW: &str = r#"
local function run(name)
    local started = os.clock()
    while os.clock() - started < 0.3 do end
    process.registry.register(name)
    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        if msg:topic() == "ws.message" then
            local d = msg:payload():data()
            process.send(d.client_pid, "ws.send", { type = "text", data = d.data })
        end
    end
end
return { run = run }
"#;

const SLOW_ENTRIES: &str = "  - name: late_room
    kind: process.lua
    source: file://late.lua
    method: run
  - name: late_service
    kind: process.service
    process: late_room
    host: processes
    input: [late]
    lifecycle: { auto_start: true }
";

#[tokio::test]
async fn the_first_client_finds_a_service_that_was_slow_to_set_up() {
    let started = Instant::now();
    // `TestApp` checks that the `echo` service's name is there when the app has started.
    let t = TestApp::start_in(app_dir_with(SLOW_ENTRIES, &[("late.lua", SLOW)]), false).await;
    assert!(
        started.elapsed().as_millis() >= 300,
        "the app started before the slow service had set up"
    );
    assert!(t.app.node().lookup("late").is_some());
    // The first request: upgraded and answered by the service, not refused with `503`.
    let mut client = ws(&t.url("/ws/?target=late"), None)
        .await
        .expect("the first client is upgraded");
    client.send(T::text("first")).await.unwrap();
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), client.next())
        .await
        .expect("an answer")
        .expect("a frame")
        .unwrap();
    assert_eq!(echoed, T::text("first"));
    t.stop().await;
}
