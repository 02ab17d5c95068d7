//! Dispatch: new calls and processes do not queue behind a worker stuck in one resume (a C
//! call, a metamethod, anything that cannot yield), and the cost of the pathological pattern
//! of the hardening issue.

use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_lua::{EngineConfig, LuaError, LuaFunction};
use wsrelay_process::Value;

/// Runs Lua inside `tostring` (a C function calling back into Lua): the hook fires but cannot
/// yield, so the worker is held until the CPU budget ends the call.
const STUCK: &str = r#"return function()
    return tostring(setmetatable({}, { __tostring = function() while true do end end }))
end"#;

const PING: &str = "return function() return 'pong' end";

/// The snippet of the hardening issue.
const PATHOLOGICAL: &str = r#"return function()
    return string.find(("a"):rep(22), ("a*"):rep(22) .. "b")
end"#;

/// Calls `f` and returns how long it took; a hang detector, not a timing assertion.
async fn timed_ping(f: &LuaFunction) -> Duration {
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), f.call(vec![]))
        .await
        .expect("a call queued behind the stuck worker");
    assert_eq!(reply.unwrap(), Value::from("pong"));
    started.elapsed()
}

/// Pings every 5 ms until `task` ends; the time of each ping.
async fn ping_until<T>(ping: &LuaFunction, task: &tokio::task::JoinHandle<T>) -> Vec<Duration> {
    let mut times = Vec::new();
    while !task.is_finished() {
        times.push(timed_ping(ping).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    times
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        times.len(),
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_and_spawns_do_not_queue_behind_a_worker_stuck_in_one_resume() {
    // The stuck call holds its worker for 30 s, longer than the hang detector: without the
    // dispatch policy, every other ping would wait for it and the test would fail.
    let (node, engine) = setup_with(EngineConfig {
        workers: 2,
        cpu_budget: Some(Duration::from_secs(30)),
        ..EngineConfig::default()
    });
    let stuck = function(&engine, STUCK, &[]);
    let ping = function(&engine, PING, &[]);
    let _stuck_call = tokio::spawn(stuck.call(vec![]));
    // Long enough for the dispatcher to see the worker as stuck (4 time slices).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut times = Vec::new();
    for _ in 0..20 {
        times.push(timed_ping(&ping).await);
    }
    eprintln!("pings while a worker is stuck: {}", summary(times));
    // New processes land on the free worker too.
    let echo = register(
        &engine,
        "return function(me) process.send(me, 'up', true) end",
        "",
        &[],
    );
    let (me, _g) = rust_process(&node);
    for _ in 0..10 {
        spawn_monitored(&me, &echo, vec![Value::from(me.pid().as_str())]);
        assert_eq!(recv(&me).await.topic(), "up");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement: cargo test --release -p wsrelay-lua --test lua lua_dispatch -- --ignored --nocapture"]
async fn measure_the_pathological_pattern_and_ping_latency_meanwhile() {
    let (_node, engine) = setup_with(EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    });
    let slow = function(&engine, PATHOLOGICAL, &[]);
    let ping = function(&engine, PING, &[]);
    let mut failures = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let err = slow.call(vec![]).await.unwrap_err();
        assert!(
            matches!(&err, LuaError::Runtime { message, .. } if message.contains("pattern too complex"))
        );
        failures.push(started.elapsed());
    }
    eprintln!("pathological pattern fails after: {}", summary(failures));
    // The snippet in a loop on one worker while pings run every 5 ms.
    let busy = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(3);
        let mut calls = 0;
        while Instant::now() < until {
            let _ = slow.call(vec![]).await;
            calls += 1;
        }
        calls
    });
    let times = ping_until(&ping, &busy).await;
    eprintln!(
        "pings while the snippet runs in a loop ({} runs): {}",
        busy.await.unwrap(),
        summary(times)
    );
    // A worker stuck for a whole CPU budget (1 s) in a non-yieldable loop.
    let stuck = function(&engine, STUCK, &[]);
    let stuck_call = tokio::spawn(stuck.call(vec![]));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let times = ping_until(&ping, &stuck_call).await;
    eprintln!(
        "pings while a worker is stuck for the CPU budget: {}",
        summary(times)
    );
}
