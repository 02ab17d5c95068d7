//! Operations promises: `/metrics` on its own listener and the numbers move,
//! `/healthz` turns `503` while draining, the admin API is off by default and token
//! protected, and a graceful shutdown sends `1001` to every client and `ws.leave`
//! (`shutdown`) to every target within the drain timeout (in process, and via SIGTERM).

use crate::support;

use std::time::{Duration, Instant};

use crate::support::ops;
use crate::support::ops::{
    body_of, close_frame, get, metric, raw, status_of, wait_metric, ws, TestApp, ADMIN,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{SpawnOptions, Value};

async fn next_text(client: &mut ops::Client) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a frame within 5s")
            .expect("open")
            .expect("no error");
        match frame {
            T::Text(text) => return text.to_string(),
            T::Ping(_) | T::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_the_numbers_move() {
    let t = TestApp::start("", true).await;
    let ops = t.ops();
    assert_ne!(ops, t.addr);
    // Not on the app's server.
    assert_eq!(status_of(&get(t.addr, "/metrics", "").await), 404);
    assert_eq!(status_of(&get(ops, "/healthz", "").await), 200);

    wait_metric(ops, "wsrelay_connections_open", 0.0).await;
    let mut client = ws(&t.url("/ws"), None).await.expect("upgrade");
    wait_metric(ops, "wsrelay_connections_open", 1.0).await;
    wait_metric(ops, r#"wsrelay_upgrades_total{outcome="accepted"}"#, 1.0).await;
    assert_eq!(
        metric(ops, r#"wsrelay_processes{host="app:gateway"}"#).await,
        Some(1.0)
    );

    client.send(T::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "hello");
    wait_metric(ops, r#"wsrelay_frames_total{direction="in"}"#, 1.0).await;
    wait_metric(ops, r#"wsrelay_frames_total{direction="out"}"#, 1.0).await;
    wait_metric(ops, r#"wsrelay_bytes_total{direction="in"}"#, 5.0).await;
    // Exported (whether this one reply was taken in its sender's call depends on timing).
    assert!(metric(ops, "wsrelay_sends_taken_total").await.is_some());

    client.close(None).await.unwrap();
    while client.next().await.is_some() {}
    wait_metric(ops, "wsrelay_connections_open", 0.0).await;
    wait_metric(ops, r#"wsrelay_closes_total{reason="client_closed"}"#, 1.0).await;

    // Refusals are counted by outcome.
    assert_eq!(
        ws(&t.url("/strict"), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    wait_metric(
        ops,
        r#"wsrelay_upgrades_total{outcome="forbidden_origin"}"#,
        1.0,
    )
    .await;

    // A failing Lua handler moves the Lua error counter.
    assert_eq!(status_of(&get(t.addr, "/api/boom", "").await), 500);
    wait_metric(ops, r#"wsrelay_lua_errors_total{kind="function"}"#, 1.0).await;

    let answer = get(ops, "/metrics", "").await;
    let text = body_of(&answer);
    for name in [
        "# TYPE wsrelay_inbox_depth_peak gauge",
        "# TYPE wsrelay_inbox_depth_max gauge",
        "wsrelay_processes{host=\"app:processes\"}",
        "wsrelay_draining 0",
        "# TYPE wsrelay_lua_preemptions counter",
        "wsrelay_lua_preemptions_total 0",
        "# TYPE wsrelay_lua_heap_bytes gauge",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "wsrelay_build_info{version=",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    // The app's Lua ran (its handler answered): its worker's state holds at least the
    // standard library and the modules (a few hundred KiB).
    let heap: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wsrelay_lua_heap_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wsrelay_lua_heap_bytes value in\n{text}"));
    assert!((100_000..1 << 30).contains(&heap), "Lua heap {heap} B");
    // The admin API is off by default.
    assert_eq!(status_of(&get(ops, "/admin/connections", "").await), 404);
    t.stop().await;
}

#[tokio::test]
async fn admin_api_needs_the_token_lists_and_closes_connections() {
    let t = TestApp::start(ADMIN, false).await;
    let ops = t.ops();
    let mut client = ws(&t.url("/ws"), None).await.expect("upgrade");

    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: s3cret-token-0123456789\r\n",
    ] {
        let answer = get(ops, "/admin/connections", auth).await;
        assert_eq!(status_of(&answer), 401, "{auth:?}: {answer}");
    }
    let auth = ops::ADMIN_AUTH;
    let answer = get(ops, "/admin/connections", auth).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let list: serde_json::Value = serde_json::from_str(body_of(&answer)).unwrap();
    assert_eq!(list["count"], 1, "{list}");
    let pid = list["connections"][0]["pid"].as_str().unwrap().to_owned();
    assert!(pid.starts_with("{app:gateway|"), "{pid}");

    let answer = get(ops, "/admin/processes", auth).await;
    let all: serde_json::Value = serde_json::from_str(body_of(&answer)).unwrap();
    assert!(all["count"].as_u64().unwrap() >= 2, "{all}");

    // Closing needs the token too, and a POST.
    let encoded: String = pid
        .bytes()
        .map(|b| match b {
            b'{' => "%7B".to_owned(),
            b'}' => "%7D".to_owned(),
            b'|' => "%7C".to_owned(),
            other => (other as char).to_string(),
        })
        .collect();
    let path = format!("/admin/connections/{encoded}/close");
    let post = |auth: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    assert_eq!(status_of(&raw(ops, post("").as_bytes()).await), 401);
    let answer = raw(ops, post(auth).as_bytes()).await;
    assert_eq!(status_of(&answer), 202, "{answer}");
    assert_eq!(
        close_frame(&mut client).await,
        (1000, "closed by operator".to_owned())
    );
    let gone = format!("POST /admin/connections/%7Bapp:gateway%7C0xfffff%7D/close HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(ops, gone.as_bytes()).await), 404);
    t.stop().await;
}

#[tokio::test]
async fn an_admin_token_variable_that_is_unset_stops_the_start() {
    let dir = ops::app_dir(
        "  - name: ops
    kind: wsrelay.ops
    addr: \"127.0.0.1:0\"
    admin: { enabled: true, token_env: WSRELAY_TEST_TOKEN_THAT_IS_NEVER_SET }
",
    );
    let config = wsrelay_config::AppConfig::load(dir.path(), &wsrelay_app::load_options()).unwrap();
    let error = wsrelay_app::App::start(config, wsrelay_app::AppOptions::default())
        .await
        .unwrap_err();
    assert!(error.is_config());
    assert!(
        error
            .to_string()
            .contains("WSRELAY_TEST_TOKEN_THAT_IS_NEVER_SET"),
        "{error}"
    );
}

#[tokio::test]
async fn graceful_shutdown_in_process_closes_1001_and_tells_every_target() {
    let t = TestApp::start("", true).await;
    let ops = t.ops();
    let node = t.app.node().clone();
    let (probe, _guard) = node
        .attach("app:processes", SpawnOptions::new())
        .unwrap()
        .detach();
    node.register("probe", probe.pid()).unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(ws(&t.url("/ws?target=probe"), None).await.expect("upgrade"));
        let msg = tokio::time::timeout(Duration::from_secs(5), probe.recv())
            .await
            .unwrap();
        assert_eq!(msg.topic(), "ws.join");
    }
    // The clients read nothing until /healthz has been seen answering 503, so the close
    // handshakes (and the drain) wait for them.
    // A drain timeout longer than the wait below: the shutdown ending within the wait shows
    // that it ended because every connection closed, not because the drain timed out.
    let shutdown = tokio::spawn(t.app.shutdown(Duration::from_secs(60)));
    let mut saw_draining = false;
    for _ in 0..100 {
        let answer = get(ops, "/healthz", "").await;
        if status_of(&answer) == 503 {
            assert_eq!(body_of(&answer), "draining\n");
            saw_draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_draining, "/healthz never answered 503 during the drain");
    for client in &mut clients {
        assert_eq!(close_frame(client).await.0, 1001);
    }
    let mut leaves = Vec::new();
    while leaves.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), probe.recv())
            .await
            .expect("ws.leave for every connection");
        if msg.topic() == "ws.leave" {
            let payload = msg.payload().clone().into_plain();
            leaves.push(payload.get("reason").cloned());
        }
    }
    assert!(
        leaves.iter().all(|r| r == &Some(Value::from("shutdown"))),
        "{leaves:?}"
    );
    for client in &mut clients {
        while client.next().await.is_some() {}
    }
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("the shutdown ends once the connections have closed")
        .unwrap();
    // The ops listener stopped last.
    assert!(tokio::net::TcpStream::connect(ops).await.is_err());
}

#[test]
fn sigterm_drains_open_connections_within_the_drain_timeout() {
    let dir = ops::app_dir("");
    let mut cmd = support::bin();
    let mut child = cmd
        .args([
            "run",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        // Longer than the wait for the exit below: exiting within that wait shows that the
        // drain ended because every connection closed, not because it timed out.
        .args(["--metrics", "127.0.0.1:0", "--drain-timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut app = None;
    let mut ops = None;
    while app.is_none() || ops.is_none() {
        let line = lines
            .next()
            .expect("wsrelay printed its addresses")
            .unwrap();
        let Some(url) = line.split("serving http://").nth(1) else {
            continue;
        };
        let addr: std::net::SocketAddr = url.split('/').next().unwrap().parse().unwrap();
        if line.contains("ops serving") {
            ops = Some(addr);
        } else {
            app = Some(addr);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (app, ops) = (app.unwrap(), ops.unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for _ in 0..200 {
            if metric(ops, r#"wsrelay_processes{host="app:processes"}"#).await == Some(1.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(ws(&format!("ws://{app}/ws"), None).await.expect("upgrade"));
        }
        wait_metric(ops, "wsrelay_connections_open", 5.0).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for client in &mut clients {
            assert_eq!(close_frame(client).await.0, 1001);
            while client.next().await.is_some() {}
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "wsrelay did not exit once its connections had closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(exit.code(), Some(0));
    });
}

/// What the `count` handler of [`lua_metrics_are_exported_under_the_app_prefix`] runs: one
/// series of each type, then a call past the label rules, whose error it reports.
const COUNT_ENTRIES: &str = r#"  - name: count
    kind: function.lua
    modules: [http, metrics]
    method: handler
    source: |
      local http = require("http")
      local metrics = require("metrics")
      local function handler()
        assert(metrics.counter_inc("requests", {route = "count"}))
        assert(metrics.counter_add("requests_total", 2, {route = "count"}))
        assert(metrics.gauge_set("queue_depth", 7))
        assert(metrics.gauge_dec("queue_depth"))
        assert(metrics.histogram("latency_seconds", 0.3, {route = "count"}))
        local ok, err = metrics.counter_inc("bad-name")
        assert(ok == nil)
        http.response():write(err:kind() .. "\n")
      end
      return { handler = handler }
  - name: count_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /count
    func: count
"#;

#[tokio::test]
async fn lua_metrics_are_exported_under_the_app_prefix() {
    let t = TestApp::start(COUNT_ENTRIES, true).await;
    let ops = t.ops();
    let answer = get(t.addr, "/api/count", "").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(body_of(&answer), "INVALID\n");
    assert_eq!(
        metric(ops, r#"wsrelay_app_requests_total{route="count"}"#).await,
        Some(3.0)
    );
    assert_eq!(metric(ops, "wsrelay_app_queue_depth").await, Some(6.0));
    assert_eq!(
        metric(
            ops,
            r#"wsrelay_app_latency_seconds_bucket{le="0.25",route="count"}"#
        )
        .await,
        Some(0.0)
    );
    assert_eq!(
        metric(
            ops,
            r#"wsrelay_app_latency_seconds_bucket{le="0.5",route="count"}"#
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(ops, r#"wsrelay_app_latency_seconds_count{route="count"}"#).await,
        Some(1.0)
    );
    // The scrape is valid OpenMetrics: one TYPE line per family, the app's among them.
    let body = get(ops, "/metrics", "").await;
    assert!(
        body.contains("# TYPE wsrelay_app_latency_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE wsrelay_app_requests counter"),
        "{body}"
    );
    t.stop().await;
}
