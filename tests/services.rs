//! `process.service` entries at the app's start: `App::start` opens the listeners once every
//! auto-started service has come to its first wait, so the names a service registers as it
//! starts are there for the first client.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

use crate::support::ops::{app_dir_with, ws, TestApp, ROOM};
use crate::support::{bin, output_within, AppDir};

/// The test apps' echo room, made to take a while to set up (longer than many time slices:
/// it is preempted on the way, which is no wait) and to register its name last.
fn late_room() -> String {
    let late = ROOM.replace(
        "    if name then process.registry.register(name) end",
        "    local started = os.clock()\n    while os.clock() - started < 0.3 do end\n    process.registry.register(name)",
    );
    assert!(
        late.contains("os.clock"),
        "the room registers its name as expected"
    );
    late
}

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
    let t = TestApp::start_in(
        app_dir_with(SLOW_ENTRIES, &[("late.lua", &late_room())]),
        false,
    )
    .await;
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
    let echoed = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("an answer")
        .expect("a frame")
        .unwrap();
    assert_eq!(echoed, T::text("first"));
    t.stop().await;
}

/// A service that registers a name and waits.
const WAITER: &str = r#"
local function run()
    process.registry.register("marked")
    local inbox = process.inbox()
    while true do inbox:receive() end
end
return { run = run }
"#;

#[test]
fn an_address_taken_ends_the_run_with_its_services() {
    // The port is held: the service starts, then binding fails, and the run ends with the
    // bind error (status 1): the service's supervisor is stopped, not waited for forever.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = AppDir::new()
        .file(
            "app.yaml",
            &format!(
                "namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: \"{addr}\"
  - name: processes
    kind: process.host
  - name: marked
    kind: process.lua
    source: file://marked.lua
    method: run
  - name: marked_service
    kind: process.service
    process: marked
    host: processes
    lifecycle: {{ auto_start: true }}
"
            ),
        )
        .file("marked.lua", WAITER);
    let mut cmd = bin();
    cmd.arg("run").arg(dir.path());
    let (out, _) = output_within(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start the HTTP servers"), "{stderr}");
    drop(taken);
}
