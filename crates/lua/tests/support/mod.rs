//! Shared helpers: a node with a Lua engine, Rust test processes, and one-shot Lua runs.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wsrelay_lua::{EngineConfig, FunctionSpec, LuaEngine, LuaFunction, ProcessSpec};
use wsrelay_process::{
    Context, Event, ExitGuard, ExitResult, HostConfig, Message, Node, Pid, SpawnOptions, Value,
};

pub const HOST: &str = "app:processes";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn setup() -> (Node, LuaEngine) {
    setup_with(EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    })
}

pub fn setup_with(config: EngineConfig) -> (Node, LuaEngine) {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    let engine = LuaEngine::new(node.clone(), config).unwrap();
    (node, engine)
}

/// A node and an engine of one worker: every Lua process of the test shares one Lua state
/// and one thread, so a process that does not yield holds up the others.
pub fn one_worker() -> (Node, LuaEngine) {
    setup_with(EngineConfig {
        workers: 1,
        ..EngineConfig::default()
    })
}

/// [`one_worker`] with the CPU budget `cpu_budget` (`None`: no budget, so a runaway loop is
/// only preempted).
pub fn one_worker_with_budget(cpu_budget: Option<Duration>) -> (Node, LuaEngine) {
    setup_with(EngineConfig {
        workers: 1,
        cpu_budget,
        ..EngineConfig::default()
    })
}

/// A Rust process standing in for a test driver or a WebSocket connection.
pub fn rust_process(node: &Node) -> (Context, ExitGuard) {
    node.attach(HOST, SpawnOptions::new()).unwrap().detach()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Registers `source` under a fresh entry id with the given method and modules.
pub fn register(engine: &LuaEngine, source: &str, method: &str, modules: &[&str]) -> String {
    let id = format!("test:entry{}", NEXT.fetch_add(1, Ordering::Relaxed));
    engine
        .register_process(
            &id,
            ProcessSpec {
                source: source.to_owned(),
                method: method.to_owned(),
                modules: modules.iter().map(|m| m.to_string()).collect(),
            },
        )
        .unwrap();
    id
}

/// Prepares `source` as a `function.lua` entry under a fresh id (the chunk returns the
/// function to call), with the given modules.
pub fn function(engine: &LuaEngine, source: &str, modules: &[&str]) -> LuaFunction {
    let id = format!("test:function{}", NEXT.fetch_add(1, Ordering::Relaxed));
    named_function(engine, &id, source, modules)
}

/// [`function`] under the entry id `id` (which error positions name).
pub fn named_function(engine: &LuaEngine, id: &str, source: &str, modules: &[&str]) -> LuaFunction {
    engine
        .function(
            id,
            FunctionSpec {
                source: source.to_owned(),
                method: String::new(),
                modules: modules.iter().map(|m| m.to_string()).collect(),
            },
        )
        .unwrap()
}

/// A process that answers every message with its payload (topic `echo`).
pub const ECHO: &str = r#"
local function main()
    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        process.send(msg:from(), "echo", msg:payload():data())
    end
end
return { main = main }
"#;

/// Spawns `entry` monitored by `me`.
pub fn spawn_monitored(me: &Context, entry: &str, args: Vec<Value>) -> Pid {
    me.spawn_monitored(entry, HOST, args).unwrap()
}

pub async fn recv(me: &Context) -> Message {
    tokio::time::timeout(WAIT, me.recv())
        .await
        .expect("timed out waiting for a message")
}

pub async fn next_event(me: &Context) -> Event {
    tokio::time::timeout(WAIT, me.next_event())
        .await
        .expect("timed out waiting for an event")
}

/// Polls `check` every 5 ms until it holds; `false` if it still does not after `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Waits for the EXIT of `pid`.
pub async fn exit_of(me: &Context, pid: &Pid) -> ExitResult {
    loop {
        match next_event(me).await {
            Event::Exit { from, result } if &from == pid => return result,
            _ => {}
        }
    }
}

/// Runs `body` as the body of `main(...)` in a fresh process (all modules enabled) and returns
/// its exit.
pub async fn run_lua(engine: &LuaEngine, body: &str) -> ExitResult {
    run_lua_args(engine, body, vec![]).await
}

pub async fn run_lua_args(engine: &LuaEngine, body: &str, args: Vec<Value>) -> ExitResult {
    let source = format!("local function main(...)\n{body}\nend\nreturn {{ main = main }}");
    let entry = register(engine, &source, "main", &["json", "time", "http", "pg"]);
    run_entry(engine.node(), &entry, args).await
}

/// Spawns the registered `entry` with `args` and waits for its exit.
pub async fn run_entry(node: &Node, entry: &str, args: Vec<Value>) -> ExitResult {
    let (me, _guard) = rust_process(node);
    let pid = spawn_monitored(&me, entry, args);
    exit_of(&me, &pid).await
}

/// Runs `body` and asserts that it returned normally; returns the value.
pub async fn eval(engine: &LuaEngine, body: &str) -> Value {
    let result = run_lua(engine, body).await;
    assert!(result.error.is_none(), "lua failed: {:?}", result.error);
    result.value
}

/// Runs `body` on a node and engine of its own (see [`eval`]).
pub async fn eval_fresh(body: &str) -> Value {
    let (_node, engine) = setup();
    eval(&engine, body).await
}

/// A `Value::Array` of the items, each converted with `Value::from` (`array![true, 3, "x"]`).
macro_rules! array {
    ($($item:expr),* $(,)?) => {
        wsrelay_process::Value::Array(vec![$(wsrelay_process::Value::from($item)),*])
    };
}
pub(crate) use array;

pub fn s(v: &str) -> Value {
    Value::from(v)
}
