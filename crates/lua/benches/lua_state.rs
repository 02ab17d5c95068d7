//! What a Lua 5.4 state, a coroutine and a Rust call cost, and whether a count hook can yield:
//! the measurements behind the choice of Lua 5.4 over LuaJIT
//! (`docs/decisions/lua-version.md`). Plain mlua, no engine: the numbers are those of the
//! library the engine is built on.
//!
//! Run with `cargo bench -p wsrelay-lua --bench lua_state`.

mod support;

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, VmState};
use support::rss_kib;

/// The libraries the measurements load (what a sandbox needs most).
fn libs() -> StdLib {
    StdLib::TABLE | StdLib::STRING | StdLib::MATH
}

fn new_state() -> Lua {
    Lua::new_with(libs(), LuaOptions::default()).expect("a Lua state")
}

/// `used_memory()` of a fresh state, and its RSS cost when 1,000 are alive.
fn fresh_states() {
    let n = 1_000;
    let before = rss_kib();
    let states: Vec<Lua> = (0..n).map(|_| new_state()).collect();
    let per_state = (rss_kib() - before) as f64 / n as f64;
    println!(
        "fresh state: used_memory {} B, RSS {per_state:.1} KiB each ({n} states)",
        states[0].used_memory()
    );
}

/// What one more process costs in a shared state: a coroutine, its own `_ENV` and the closures
/// of its chunk.
fn coroutines_in_one_state() -> mlua::Result<()> {
    let lua = new_state();
    let factory: Function = lua
        .load(
            "return function(_ENV, ...)
                local function handler() while true do if not wait() then break end end end
                return { handler = handler }
            end",
        )
        .eval()?;
    lua.globals()
        .set("wait", lua.create_function(|_, ()| Ok(()))?)?;
    let meta = lua.create_table()?;
    meta.set("__index", lua.globals())?;
    let n = 10_000;
    let before = lua.used_memory();
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let env = lua.create_table()?;
        env.set_metatable(Some(meta.clone()))?;
        let module: Table = factory.call(env)?;
        threads.push(lua.create_thread(module.get::<Function>("handler")?)?);
    }
    lua.gc_collect()?;
    println!(
        "coroutine + own _ENV + closures in a shared state: {} B each ({n} live coroutines referenced from Rust)",
        (lua.used_memory() - before) / n
    );
    Ok(())
}

/// Calls of a Rust function from a Lua loop, and 4-field table allocations, per second.
fn call_and_allocation_rates() -> mlua::Result<()> {
    let lua = new_state();
    lua.globals()
        .set("inc", lua.create_function(|_, x: i64| Ok(x + 1))?)?;
    let n = 2_000_000;
    let started = Instant::now();
    lua.load(format!("local x = 0 for i = 1, {n} do x = inc(x) end"))
        .exec()?;
    println!(
        "Rust function called from Lua: {:.1} M calls/s",
        n as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    let started = Instant::now();
    lua.load(format!(
        "local t for i = 1, {n} do t = {{client_pid = 'x', type = 'text', data = 'hello', n = i}} end"
    ))
    .exec()?;
    println!(
        "allocate a 4-field table: {:.1} M/s",
        n as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    Ok(())
}

/// A 5M-iteration loop in an async coroutine whose count hook always yields: how many polls
/// it takes (each poll is one preemption), and that it then finishes.
fn hook_yield() -> mlua::Result<()> {
    let lua = new_state();
    let body: Function = lua
        .load("local i = 0 while true do i = i + 1 if i > 5000000 then return i end end")
        .into_function()?;
    let thread = lua.create_thread(body)?;
    thread.set_hook(HookTriggers::new().every_nth_instruction(10_000), |_, _| {
        Ok(VmState::Yield)
    })?;
    let mut run = pin!(thread.into_async::<i64>(())?);
    let polls = Cell::new(0u32);
    let mut cx = Context::from_waker(Waker::noop());
    let result = loop {
        polls.set(polls.get() + 1);
        if let Poll::Ready(r) = run.as_mut().poll(&mut cx) {
            break r;
        }
    };
    println!(
        "yield from a count hook: result {:?} after {} polls",
        result,
        polls.get()
    );
    Ok(())
}

fn main() -> mlua::Result<()> {
    fresh_states();
    coroutines_in_one_state()?;
    call_and_allocation_rates()?;
    hook_yield()
}
