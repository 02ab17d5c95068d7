//! Requests that never become connections (docs/spec.md §3.1, §3.3): they are refused before the
//! handler when they can be, and a target the handler named anyway gets `ws.leave` with
//! reason `not_upgraded`, so a target that exits on `ws.leave` never lingers.
//!
//! The regression behind these tests: 20,000 plain GETs to a relay route whose handler
//! spawns a target (the seed's own pattern) left 20,000 processes alive, and the per-IP
//! limits never saw them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use tokio::io::AsyncWriteExt;
use wsrelay_http::{handler_fn, response, Handler};
use wsrelay_lua::{EngineConfig, LuaEngine, ProcessSpec};
use wsrelay_process::{Event, GroupLimits, Map, Message, Node, SpawnOptions, Value};
use wsrelay_relay::NotUpgraded;

/// An `X-WS-Relay` value naming `target` with metadata `{user = "u1"}`.
fn naming(target: &wsrelay_process::Context) -> Option<String> {
    Some(format!(
        r#"{{"target_pid":"{}","metadata":{{"user":"u1"}}}}"#,
        target.pid()
    ))
}

/// The seed's handler pattern, in Rust: spawn `entry` for this request and relay to it.
fn spawning_handler(entry: &'static str) -> impl FnOnce(&Node) -> Arc<dyn Handler> {
    move |node: &Node| {
        let node = node.clone();
        Arc::new(handler_fn(move |_req: wsrelay_http::Request| {
            let spawned = node.spawn_entry(entry, HOST, SpawnOptions::new(), Vec::new());
            async move {
                let mut res = response::empty(http::StatusCode::OK);
                let pid = spawned.expect("spawn the target");
                let header =
                    format!(r#"{{"target_pid": "{pid}", "metadata": {{"user_id": "u1"}}}}"#);
                res.headers_mut()
                    .insert("x-ws-relay", header.parse().unwrap());
                res
            }
        })) as Arc<dyn Handler>
    }
}

/// A Lua engine on the harness's node running the seed example's handler process.
fn seed_engine(node: &Node) -> LuaEngine {
    let engine = LuaEngine::new(node.clone(), EngineConfig::default()).unwrap();
    engine
        .register_process(
            "app.ws:handler",
            ProcessSpec {
                source: include_str!("../../../examples/seed/handler.lua").into(),
                method: "handler".into(),
                modules: vec!["json".into()],
            },
        )
        .unwrap();
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gets_to_a_spawning_handler_leave_no_process_behind() {
    const REQUESTS: usize = 2_000;
    const CLIENTS: usize = 4;
    let h = Harness::builder()
        .no_upgrade_rate_limit()
        .handler(spawning_handler("app.ws:handler"))
        .start()
        .await;
    let engine = seed_engine(&h.node);
    let before = h.node.process_count();
    let rss_before = rss_kib();

    let started = Instant::now();
    let h = Arc::new(h);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                for _ in 0..REQUESTS / CLIENTS {
                    let (status, body) = h.raw(PLAIN).await;
                    assert_eq!(status, 426, "{body}");
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let answered = started.elapsed();
    let settled = eventually(Duration::from_secs(10), || h.node.process_count() == before).await;
    println!(
        "{REQUESTS} plain GETs answered in {answered:?}; processes back to {before} after \
         {:?}: {settled}; RSS {rss_before} KiB -> {} KiB",
        started.elapsed(),
        rss_kib()
    );
    assert!(
        settled,
        "{} processes left behind",
        h.node.process_count() - before
    );
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), REQUESTS);
    assert_eq!(h.relay.stats().not_upgraded(), REQUESTS as u64);
    assert_eq!(
        engine.stats().process_errors,
        0,
        "the targets must end by returning, not by failing"
    );
    drop(engine);
}

/// The next message of the probe target must be the `not_upgraded` leave: no `ws.join`
/// first, no `client_pid`, no sender, the header's metadata.
async fn expect_not_upgraded(target: &wsrelay_process::Context) {
    let msg = tokio::time::timeout(Duration::from_secs(5), target.recv())
        .await
        .expect("ws.leave within 5 s");
    assert_eq!(msg.topic(), "ws.leave");
    assert_eq!(msg.from(), None, "no connection sent it");
    assert!(msg.payload().downcast_ref::<NotUpgraded>().is_some());
    let payload = msg.payload().clone().into_plain();
    assert_eq!(payload.get("reason"), Some(&Value::from("not_upgraded")));
    assert_eq!(payload.get("client_pid"), None);
    assert_eq!(
        payload.get("metadata").and_then(|m| m.get("user")),
        Some(&Value::from("u1"))
    );
}

#[tokio::test]
async fn a_plain_request_that_names_a_target_gets_426_and_the_target_a_leave() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "metadata": {"user": "u1"}"#);
    let (status, body) = h.raw(PLAIN).await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    expect_not_upgraded(&target).await;
    assert_eq!(h.relay.stats().not_upgraded(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_handler_that_wrote_a_body_gets_500_and_the_target_a_leave() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    for request in [format!("{UPGRADE}\r\n"), PLAIN.to_owned()] {
        h.answer_with(Answer {
            relay_header: naming(&target),
            body: Some("oops".into()),
            ..Answer::default()
        });
        let (status, body) = h.raw(&request).await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("body"), "{body}");
        expect_not_upgraded(&target).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_header_still_releases_the_target_it_names() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(
        target.pid().as_str(),
        r#", "heartbeat_interval": "soon", "metadata": {"user": "u1"}"#,
    );
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("heartbeat_interval"), "{body}");
    expect_not_upgraded(&target).await;
    h.stop().await;
}

#[tokio::test]
async fn cross_origin_and_bad_upgrade_requests_never_run_the_handler() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    // (request, status, a word of the body)
    let cases = [
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n".to_owned(),
            403,
            "origin",
        ),
        (
            format!("{UPGRADE}Origin: https://evil.example\r\n\r\n"),
            403,
            "origin",
        ),
        (
            format!("{}\r\n", UPGRADE.replace("Version: 13", "Version: 8")),
            400,
            "Sec-WebSocket-Version",
        ),
        (
            format!(
                "{}\r\n",
                UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", "")
            ),
            400,
            "Sec-WebSocket-Version",
        ),
        (
            format!(
                "{}\r\n",
                UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")
            ),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            format!(
                "{}Content-Length: 0\r\n\r\n",
                UPGRADE.replace("GET", "POST")
            ),
            405,
            "GET",
        ),
        (
            format!("{}\r\n", UPGRADE.replace("Connection: Upgrade\r\n", "")),
            426,
            "Connection",
        ),
    ];
    for (request, status, word) in &cases {
        let (got, body) = h.raw(request).await;
        assert_eq!(got, *status, "{request:?}: {body}");
        assert!(body.contains(word), "{request:?}: {body}");
    }
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 0, "the handler ran");
    assert_eq!(h.relay.stats().plain_refused(), 1);
    assert_eq!(h.relay.limit_stats().forbidden_origin(), 1);
    assert_eq!(h.relay.stats().upgrades(), (0, cases.len() as u64 - 1));
    h.stop().await;
}

#[tokio::test]
async fn per_ip_limits_count_plain_requests() {
    let h = Harness::builder().two_upgrades_per_ip().start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    for _ in 0..2 {
        assert_eq!(h.raw(PLAIN).await.0, 426);
    }
    let (status, body) = h.raw(PLAIN).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h.raw(&format!("{UPGRADE}\r\n")).await.0, 429);
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 2);
    // The upgrade counters keep counting upgrades; the plain refusal has its own.
    assert_eq!(h.relay.limit_stats().rate_limited(), 1);
    assert_eq!(h.relay.stats().plain_refused(), 1);
    h.stop().await;
}

#[tokio::test]
async fn the_connection_pool_counts_plain_requests_while_their_handler_runs() {
    let h = Harness::builder()
        .option("wsrelay.max_connections", "1")
        .no_upgrade_rate_limit()
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    joined(&target).await;
    let (status, body) = h.raw(PLAIN).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 1);
    client_close(client, None).await;
    // The slot comes back with the connection's end; a plain request then gets its 426 and
    // frees the slot with its answer.
    let mut status = 0;
    for _ in 0..500 {
        status = h.raw(PLAIN).await.0;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 426);
    assert_eq!(h.raw(PLAIN).await.0, 426, "the plain request kept its slot");
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_before_the_upgrade_completes_releases_its_target() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.answer_with(Answer {
        relay_header: naming(&target),
        delay: Some(Duration::from_millis(300)),
        ..Answer::default()
    });
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(format!("{UPGRADE}\r\n").as_bytes())
        .await
        .unwrap();
    drop(stream); // gone while the handler still runs
    expect_not_upgraded(&target).await;
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 1);
    // The handler's answer is seen without making a connection for nobody: no `101` is
    // counted (one was while the request ran on a task of its own, which went on to
    // connect for a client that had gone).
    assert_eq!(h.relay.stats().upgrades().0, 0, "no upgrade was accepted");
    h.stop().await;
}

/// An example's target process: file, method, modules, spawn arguments, and whether it is
/// one process per connection (ends on `ws.leave`) or a shared one that outlives its members.
struct ExampleTarget {
    source: &'static str,
    method: &'static str,
    modules: &'static [&'static str],
    args: &'static [&'static str],
    per_connection: bool,
}

const EXAMPLE_TARGETS: &[ExampleTarget] = &[
    ExampleTarget {
        source: include_str!("../../../examples/echo/echo.lua"),
        method: "run",
        modules: &[],
        args: &[],
        per_connection: true,
    },
    ExampleTarget {
        source: include_str!("../../../examples/seed/handler.lua"),
        method: "handler",
        modules: &["json"],
        args: &[],
        per_connection: true,
    },
    ExampleTarget {
        source: include_str!("../../../examples/seed/other.lua"),
        method: "run",
        modules: &["json"],
        args: &[],
        per_connection: true,
    },
    // The demo's room (crates/app/src/demo.rs embeds examples/chat).
    ExampleTarget {
        source: include_str!("../../../examples/chat/room.lua"),
        method: "run",
        modules: &["json", "pg", "time"],
        args: &["lobby"],
        per_connection: true,
    },
    ExampleTarget {
        source: include_str!("../../../examples/seed/handler.lua"),
        method: "hub",
        modules: &["json"],
        args: &[],
        per_connection: false,
    },
    ExampleTarget {
        source: include_str!("../../../examples/broadcast/room.lua"),
        method: "run",
        modules: &["pg"],
        args: &[],
        per_connection: false,
    },
];

/// Every example target handles `not_upgraded`: one per connection ends at once without an
/// error; a shared one (a service with members) carries on and still serves a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_target_handles_a_not_upgraded_leave() {
    let h = Harness::start().await;
    // The group scopes the examples' apps declare (`pg.scope` entries).
    for scope in ["app:chat", "broadcast:rooms"] {
        h.node.add_group_scope(scope, GroupLimits::default());
    }
    let engine = LuaEngine::new(h.node.clone(), EngineConfig::default()).unwrap();
    for (i, example) in EXAMPLE_TARGETS.iter().enumerate() {
        let entry = format!("app:example{i}");
        let modules = example.modules.iter().map(|m| (*m).to_owned()).collect();
        let spec = ProcessSpec {
            source: example.source.into(),
            method: example.method.into(),
            modules,
        };
        engine.register_process(&entry, spec).unwrap();
        let args = example.args.iter().map(|a| Value::from(*a)).collect();
        let (probe, _g) = h.probe();
        let pid = h
            .node
            .spawn_entry(&entry, HOST, SpawnOptions::new(), args)
            .unwrap();
        probe.monitor(&pid).unwrap();
        let leave = NotUpgraded {
            metadata: Arc::new(Map::new().with("user", "u1")),
        };
        let leave = Message::new(None, "ws.leave", Value::Opaque(Arc::new(leave)));
        h.node.send(&pid, leave).unwrap();
        if example.per_connection {
            let Event::Exit { result, .. } = event(&probe).await else {
                panic!("{entry}: expected its exit");
            };
            assert_eq!(result.error, None, "{entry} ({})", example.method);
        } else {
            // Still there, still serving: a client joins and gets a frame back.
            let client = Map::new()
                .with("client_pid", probe.pid().as_str())
                .with("metadata", Map::new().with("sender", true));
            send(&probe, &pid, "ws.join", client.clone());
            let message = client.with("type", "text").with("data", "hi");
            send(&probe, &pid, "ws.message", message);
            let (topic, _) = recv(&probe).await;
            assert_eq!(topic, "ws.send", "{entry} ({})", example.method);
        }
    }
    assert_eq!(engine.stats().process_errors, 0);
    h.stop().await;
}
