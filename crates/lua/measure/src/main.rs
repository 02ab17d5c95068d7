//! Lua 5.4 vs LuaJIT measurements for the README (standalone crate, not a workspace member).
//! Run: `cargo run --release --features lua54` and `cargo run --release --features luajit`.
use mlua::{Lua, LuaOptions, StdLib, HookTriggers, VmState, Value, Table, Function};
use std::time::Instant;
fn rss_kb() -> usize { std::fs::read_to_string("/proc/self/status").unwrap().lines().find(|l| l.starts_with("VmRSS")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap() }
fn main() {
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH;
    // fresh state
    let n = 1000;
    let before = rss_kb();
    let mut v = Vec::new();
    let mut used = 0;
    for _ in 0..n { let l = Lua::new_with(libs, LuaOptions::default()).unwrap(); used = l.used_memory(); v.push(l); }
    let after = rss_kb();
    println!("fresh state: used_memory={} B, rss/state={} KB", used, (after - before) as f64 / n as f64);
    drop(v);
    // coroutine + env in one state
    let lua = Lua::new_with(libs, LuaOptions::default()).unwrap();
    let factory: Function = lua.load("return function(_ENV, ...) local function handler() local inbox = wait() while true do local m = wait() if not m then break end end end return { handler = handler }\nend").eval().unwrap();
    let wait = lua.create_function(|_, ()| Ok(())).unwrap();
    lua.globals().set("wait", wait).unwrap();
    let meta = lua.create_table().unwrap();
    meta.set("__index", lua.globals()).unwrap();
    let m0 = lua.used_memory();
    let n = if cfg!(feature = "luajit") { 3000 } else { 10000 };
    let mut threads = Vec::new();
    for _ in 0..n {
        let env = lua.create_table().unwrap();
        env.set_metatable(Some(meta.clone())).unwrap();
        let t: Table = factory.call(env).unwrap();
        let h: Function = t.get("handler").unwrap();
        let th = lua.create_thread(h).unwrap();
        threads.push(th);
    }
    lua.gc_collect().unwrap();
    println!("per coroutine+env+closures: {} B", (lua.used_memory() - m0) / n);
    // call speed: lua loop calling rust fn
    let counter = lua.create_function(|_, x: i64| Ok(x + 1)).unwrap();
    lua.globals().set("inc", counter).unwrap();
    let t = Instant::now();
    lua.load("local x = 0 for i=1,2000000 do x = inc(x) end").exec().unwrap();
    println!("rust call from lua: {:.1} M calls/s", 2.0 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    lua.load("local t = {} for i=1,2000000 do t = {client_pid='x', type='text', data='hello'} end").exec().unwrap();
    println!("table alloc: {:.1} M/s", 2.0 / t.elapsed().as_secs_f64());
    // hook yield
    let lua2 = Lua::new_with(libs, LuaOptions::default()).unwrap();
    let f: Function = lua2.load("local i = 0 while true do i = i + 1 if i > 5000000 then return i end end").into_function().unwrap();
    let th = lua2.create_thread(f).unwrap();
    let r = th.set_hook(HookTriggers::new().every_nth_instruction(10000), |_, _| Ok(VmState::Yield));
    println!("set_hook: {:?}", r.is_ok());
    let fut = th.into_async::<i64>(()).unwrap();
    let polls = std::cell::Cell::new(0);
    let mut fut = std::pin::pin!(fut); let mut cx = std::task::Context::from_waker(std::task::Waker::noop()); let res = loop { polls.set(polls.get()+1); if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) { break r; } };
    println!("hook-yield result: {:?} after {} polls", res.map_err(|e| e.to_string().lines().next().unwrap().to_owned()), polls.get());
}
use std::future::Future;
