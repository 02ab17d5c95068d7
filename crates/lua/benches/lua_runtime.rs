//! Lua runtime benchmarks: message round trips (Lua echo vs Rust echo), memory per idle Lua
//! process, spawn rate. Each figure is the median of 3 runs.
//!
//! Run with `cargo bench -p wsrelay-lua --bench lua_runtime` (set `LUA_BENCH_IDLE` to change
//! the idle-process counts, default `10000,100000`).

mod support;

use std::time::{Duration, Instant};

use support::{median, rss_kib};

use wsrelay_lua::{EngineConfig, LuaEngine, ProcessSpec};
use wsrelay_process::{Context, HostConfig, Node, Pid, SpawnOptions, Value};

const HOST: &str = "bench:processes";

const ECHO: &str = r#"
local function main()
    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        process.send(msg:from(), "pong", msg:payload():data())
    end
end
return { main = main }
"#;

const IDLE: &str = r#"
local function main()
    local msg = process.inbox():receive()
end
return { main = main }
"#;

const READY: &str = r#"
local function main(parent)
    process.send(parent, "ready", true)
end
return { main = main }
"#;

async fn round_trips(me: &Context, echo: &Pid, n: usize) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        me.send(echo, "ping", i as i64).unwrap();
        let reply = me.recv().await;
        debug_assert_eq!(reply.payload(), &Value::Int(i as i64));
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    let engine = LuaEngine::new(node.clone(), EngineConfig::default()).unwrap();
    let spec = |source: &str| ProcessSpec {
        source: source.to_owned(),
        method: "main".to_owned(),
        modules: vec![],
    };
    engine.register_process("bench:echo", spec(ECHO)).unwrap();
    engine.register_process("bench:idle", spec(IDLE)).unwrap();
    engine.register_process("bench:ready", spec(READY)).unwrap();
    println!("workers: {}", engine.workers());

    // ===== round trip =====
    let (me, _guard) = node.attach(HOST, SpawnOptions::new()).unwrap().detach();
    let lua_echo = node
        .spawn_entry("bench:echo", HOST, SpawnOptions::new(), vec![])
        .unwrap();
    let rust_echo = node
        .spawn(HOST, SpawnOptions::new(), |ctx| async move {
            loop {
                let msg = ctx.recv().await;
                if let Some(from) = msg.from() {
                    let _ = ctx.send(from, "pong", msg.payload().clone());
                }
                if msg.topic() == "stop" {
                    return;
                }
            }
        })
        .unwrap();
    let n = 50_000;
    round_trips(&me, &lua_echo, 2_000).await;
    round_trips(&me, &rust_echo, 2_000).await;
    let (mut lua_runs, mut rust_runs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        lua_runs.push(round_trips(&me, &lua_echo, n).await);
        rust_runs.push(round_trips(&me, &rust_echo, n).await);
    }
    let (lua_rate, rust_rate) = (median(lua_runs), median(rust_runs));
    println!(
        "round trip Rust -> echo -> Rust, {n} sequential: Lua echo {lua_rate:.0} msg/s, Rust echo {rust_rate:.0} msg/s, ratio Lua/Rust {:.2}",
        lua_rate / rust_rate
    );

    // ===== spawn rate =====
    let mut spawn_runs = Vec::new();
    let spawns = 20_000;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..spawns {
            node.spawn_entry(
                "bench:ready",
                HOST,
                SpawnOptions::new(),
                vec![Value::from(me.pid().as_str())],
            )
            .unwrap();
        }
        for _ in 0..spawns {
            me.recv().await;
        }
        spawn_runs.push(spawns as f64 / started.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "spawn rate (spawn + run to first send + exit), {spawns} processes: {:.0} processes/s",
        median(spawn_runs)
    );

    // ===== idle memory =====
    let counts: Vec<usize> = std::env::var("LUA_BENCH_IDLE")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let mut idle = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib();
    for &count in &counts {
        while idle.len() < count {
            idle.push(
                node.spawn_entry("bench:idle", HOST, SpawnOptions::new(), vec![])
                    .unwrap(),
            );
        }
        // Let every process start and block in inbox:receive().
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rss = rss_kib();
            if rss == last {
                break;
            }
            last = rss;
        }
        let per = (rss_kib() - baseline) as f64 * 1024.0 / count as f64;
        println!(
            "idle Lua processes blocked in inbox:receive(): {count}: {:.0} bytes RSS each ({:.1} KiB), total RSS {} MiB",
            per,
            per / 1024.0,
            rss_kib() / 1024
        );
    }
    for pid in &idle {
        let _ = me.send(pid, "stop", true);
    }
}
