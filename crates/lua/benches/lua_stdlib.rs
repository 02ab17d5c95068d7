//! The cost of the hardened standard library: the Rust pattern functions against the C ones
//! (same Lua loop, plain mlua state vs engine worker), and how fast the bounded failures
//! arrive (pathological pattern, exponential shared tables, huge `string.rep`, `os.date` with a
//! long format, which stays in C).
//!
//! Run with `cargo bench -p wsrelay-lua --bench lua_stdlib`.

use std::time::Instant;

use mlua::Lua;
use wsrelay_lua::{EngineConfig, FunctionSpec, LuaEngine};
use wsrelay_process::{HostConfig, Node, Value};

/// Each case: a name and a Lua body run `n` times in a loop (`n` is the argument).
const CASES: &[(&str, &str)] = &[
    ("find plain", "local s = 'hello world' for _ = 1, n do s:find('wor', 1, true) end"),
    ("find pattern", "local s = 'hello world' for _ = 1, n do s:find('w%a+') end"),
    ("match captures", "local s = 'key=value' for _ = 1, n do s:match('(%w+)=(%w+)') end"),
    ("gsub string", "local s = 'a b c d e f' for _ = 1, n do s:gsub('%s', '_') end"),
    ("gsub function", "local s = 'a b c d e f' local f = function(c) return c end for _ = 1, n do s:gsub('%a', f) end"),
    ("gmatch", "local s = 'a,b,c,d,e,f' for _ = 1, n do for w in s:gmatch('[^,]+') do end end"),
    ("random", "for _ = 1, n do math.random(1, 100) end"),
];

/// One-shot bodies whose time is what matters.
const ONCE: &[(&str, &str)] = &[
    ("gsub %s+ over 1 MiB", "local s = string.rep('word ', 209716) local r, k = s:gsub('%s+', ' ') return k"),
    ("pathological pattern", "return pcall(string.find, ('a'):rep(22), ('a*'):rep(22) .. 'b')"),
    ("string.rep 900 MiB", "return pcall(string.rep, 'x', 900 << 20)"),
    ("t = {t, t} x25, send", "local t = {1} for i = 1, 25 do t = {t, t} end return process.send(process.pid() or 'none', 'x', t)"),
    ("os.date, 1 MiB format", "return #os.date(string.rep('%c', 1 << 19))"),
];

fn wrap(body: &str) -> String {
    format!("return function(n) {body} end")
}

fn c_lua_time(body: &str, n: i64) -> f64 {
    let lua = Lua::new();
    let f: mlua::Function = lua.load(wrap(body)).eval().unwrap();
    let started = Instant::now();
    let _: mlua::MultiValue = f.call(n).unwrap();
    started.elapsed().as_secs_f64()
}

async fn engine_time(engine: &LuaEngine, id: &str, body: &str, n: i64) -> (f64, String) {
    let f = engine
        .function(
            id,
            FunctionSpec {
                source: wrap(body),
                method: String::new(),
                modules: vec![],
            },
        )
        .unwrap();
    let started = Instant::now();
    let result = f.call(vec![Value::Int(n)]).await;
    let took = started.elapsed().as_secs_f64();
    let shown = match result {
        Ok(v) => format!("{v:?}"),
        Err(e) => e.to_string().lines().next().unwrap_or_default().to_owned(),
    };
    (took, shown)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let node = Node::new();
        node.add_host("bench:processes", HostConfig::default());
        let engine = LuaEngine::new(
            node,
            EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let n = 1_000_000;
        for (i, (name, body)) in CASES.iter().enumerate() {
            let c = c_lua_time(body, n);
            let (rust, _) = engine_time(&engine, &format!("bench:{i}"), body, n).await;
            println!(
                "{name}: C {:.0} ns/op, engine {:.0} ns/op ({:.2}x)",
                c * 1e9 / n as f64,
                rust * 1e9 / n as f64,
                rust / c
            );
        }
        for (i, (name, body)) in ONCE.iter().enumerate() {
            let (took, shown) = engine_time(&engine, &format!("once:{i}"), body, 1).await;
            println!("{name}: {:.1} ms -> {shown}", took * 1e3);
        }
    });
}
