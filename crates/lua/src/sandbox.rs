//! The environment Lua code runs in: per-process globals over read-only shared libraries.
//!
//! A worker's state holds many processes, so nothing a process can reach may be shared and
//! writable:
//!
//! - Each process (and each function call) gets its own `_ENV` table; its globals are its own.
//!   The table's metatable (`__index` = the entry's base table) is hidden (`__metatable`).
//! - Libraries and modules are read-only proxies: writes raise, `pairs` iterates the real
//!   table without exposing it, `rawset` refuses them, and the string metatable is hidden.
//! - Not available: `load`, `loadstring`, `dofile`, `require` of files, `debug`, `io`,
//!   `package`, and `os` except `time`, `clock`, `date`, `difftime`; `collectgarbage` only
//!   answers `"count"`.
//! - `process`, `channel` and `errors` are globals in every entry (as in Wippy).
//!   `require(name)` returns them too, and returns the other modules (`json`, `time`, `http`,
//!   `pg`, `base64`, `hash`, `uuid`, `env`, `crypto`, `logger`, `store`, `metrics`, `http_client`) only when the entry lists them in its
//!   `modules`; other names raise `module 'x' not found` or name the missing `modules` entry.
//!
//! Each entry's chunk is compiled once per worker as `function(_ENV, ...) <source> end`, so
//! its prototypes are shared and each process pays only for its own closures and globals.

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use crate::bounds;
use crate::config::EngineConfig;
use crate::modules;
use crate::preempt;
use crate::stdlib;

/// The Lua side of a worker: module proxies and the helpers that start an entry.
pub(crate) struct Sandbox {
    /// `make_meta(entry, allowed_modules)` → metatable for process environments.
    make_meta: Function,
    /// The body of every coroutine: Lua's own `xpcall`, called with [`start`](Self::start),
    /// [`traceback`](Self::traceback) and `start`'s arguments → `true, results...`, `true,
    /// missing` or `false, err`.
    ///
    /// `xpcall` itself is the coroutine's body, and `start` tail-calls the entry, so a waiting
    /// process's stack holds `xpcall`, the entry and what it called, nothing more: with a Lua
    /// `bootstrap` frame under `xpcall`, a process waiting in `inbox:receive()` outgrew the
    /// coroutine's first 40 stack slots and Lua doubled them (1,064 B more per idle process,
    /// docs/OPERATIONS.md, "Memory per connection").
    pub(crate) xpcall: Function,
    /// `start(factory, env, method, ...)`: runs the module's chunk with `env`, then tail-calls
    /// `method` of its table (or the function it returned) with `...`; returns
    /// [`missing`](Self::missing) when there is no such function.
    pub(crate) start: Function,
    /// The message handler: the error as text, with the stack traceback of where it happened.
    pub(crate) traceback: Function,
    /// What `start` returns when the entry has no function to run (never a value of a script).
    pub(crate) missing: Table,
}

/// The environment of processes, in Lua.
const SETUP: &str = include_str!("sandbox.lua");

impl Sandbox {
    /// Builds the module tables and the helpers in `lua`.
    pub(crate) fn new(
        lua: &Lua,
        config: &EngineConfig,
        shared: modules::Shared,
    ) -> mlua::Result<Sandbox> {
        let limits = stdlib::Limits {
            steps: config.pattern_step_limit,
            max_len: config.process_memory_limit,
        };
        stdlib::install(lua, limits)?;
        let setmetatable = bounds::install(lua)?;
        modules::inbox::install(lua)?;
        let mods = lua.create_table()?;
        mods.raw_set("process", modules::process::module(lua)?)?;
        mods.raw_set("channel", modules::channel::module(lua)?)?;
        mods.raw_set("time", modules::time::module(lua)?)?;
        mods.raw_set("json", modules::json::module(lua)?)?;
        mods.raw_set("http", modules::http::module(lua)?)?;
        mods.raw_set("pg", modules::pg::module(lua)?)?;
        mods.raw_set("errors", modules::errors::module(lua)?)?;
        mods.raw_set("base64", modules::base64::module(lua)?)?;
        mods.raw_set("hash", modules::hash::module(lua)?)?;
        mods.raw_set("uuid", modules::uuid::module(lua)?)?;
        mods.raw_set("env", modules::env::module(lua, shared.env)?)?;
        mods.raw_set("crypto", modules::crypto::module(lua)?)?;
        mods.raw_set("logger", modules::logger::module(lua)?)?;
        mods.raw_set("store", modules::store::module(lua, shared.stores)?)?;
        mods.raw_set("metrics", modules::metrics::module(lua, shared.metrics)?)?;
        mods.raw_set("http_client", modules::http_client::module(lua)?)?;
        mods.raw_set("events", modules::events::module(lua)?)?;
        let traceback = lua.create_function(|lua, err: LuaValue| {
            let text = match &err {
                LuaValue::String(s) => s.to_string_lossy(),
                LuaValue::Error(e) => e.to_string(),
                other => other
                    .to_string()
                    .unwrap_or_else(|_| other.type_name().to_owned()),
            };
            lua.traceback(Some(&text), 1)
        })?;
        let print = lua.create_function(|_, args: MultiValue| {
            let line: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| v.type_name().to_owned()))
                .collect();
            let pid = match crate::actor::current() {
                Some(crate::actor::Actor::Process(p)) => p.ctx.pid().to_string(),
                _ => String::new(),
            };
            tracing::info!(target: "wsrelay_lua::print", pid = %pid, "{}", line.join("\t"));
            Ok(())
        })?;
        let doomed = lua.create_function(|_, ()| {
            Ok(crate::actor::current().and_then(|actor| {
                let failure = actor.slice().failure.borrow().clone();
                failure.or_else(|| actor.stop_requested().map(|_| "process stopped".to_owned()))
            }))
        })?;
        let (make_meta, start, xpcall, missing): (Function, Function, Function, Table) =
            lua.load(SETUP).set_name("=wsrelay-lua sandbox").call((
                mods,
                traceback.clone(),
                print,
                doomed.clone(),
                setmetatable,
                preempt::coroutine_library(lua, doomed)?,
                modules::logger::maker(lua)?,
                modules::http_client::maker(lua, shared.http)?,
            ))?;
        Ok(Sandbox {
            make_meta,
            xpcall,
            start,
            traceback,
            missing,
        })
    }

    /// The metatable of environments for `entry`, which may require `allowed` modules.
    pub(crate) fn entry_meta(
        &self,
        lua: &Lua,
        entry: &str,
        allowed: &[String],
    ) -> mlua::Result<Table> {
        let set = lua.create_table()?;
        for name in allowed {
            set.raw_set(name.as_str(), true)?;
        }
        self.make_meta.call((entry, set))
    }
}

/// A fresh environment for one process or call: `{_G = itself}` with the entry's metatable.
pub(crate) fn new_env(lua: &Lua, meta: &Table) -> mlua::Result<Table> {
    crate::raw::environment(lua, meta)
}

/// Wraps a chunk so each call runs its body with the `_ENV` it is given. The prefix sits on
/// the first line, so line numbers in errors stay those of the source.
pub(crate) fn wrap_source(source: &str) -> String {
    format!("return function(_ENV, ...) {source}\nend")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mlua::{Function, Lua, LuaOptions, MultiValue, Thread};

    use super::{new_env, wrap_source, Sandbox};
    use crate::config::EngineConfig;
    use crate::modules::{env::EnvStore, Shared};

    /// The echo entry's shape: `run` loops on a `receive` written in Lua that yields from a
    /// C function. `inbox:receive()` is that C function itself now
    /// (`crates/lua/src/raw/receive.rs`), one Lua frame less: this shape is the upper bound.
    const WAITING: &str = r#"
        local function receive(yield)
          local msg = nil
          while msg == nil do yield(false) end
          return msg, true
        end
        local function run(yield)
          while true do
            local msg, ok = receive(yield)
            if not ok then break end
            local topic = msg:topic()
            local data = msg:payload():data()
            if topic == "ws.message" then
              process.send(data.client_pid, "ws.send", { type = data.type, data = data.data })
            end
          end
        end
        return { run = run }
    "#;

    /// A waiting process's frames fit the 40 stack slots a coroutine starts with: a vararg
    /// Lua frame under `xpcall` (the former `bootstrap`) made Lua double the stack. Measured
    /// here: 2,507 B per waiting coroutine with such a frame, 1,443 B without (with its
    /// environment and closures; docs/OPERATIONS.md, "Memory per connection").
    #[test]
    fn a_waiting_process_keeps_the_stack_it_started_with() {
        let lua = Lua::new_with(crate::worker::worker_libs(), LuaOptions::new()).unwrap();
        let shared = Shared {
            env: Arc::new(EnvStore::from_os(&[])),
            stores: Arc::default(),
            metrics: Arc::default(),
            http: Arc::default(),
        };
        let sandbox = Sandbox::new(&lua, &EngineConfig::default(), shared).unwrap();
        let factory: Function = lua.load(wrap_source(WAITING)).call(()).unwrap();
        let meta = sandbox.entry_meta(&lua, "test:waiting", &[]).unwrap();
        let coroutine: mlua::Table = lua.globals().get("coroutine").unwrap();
        let yield_fn: Function = coroutine.get("yield").unwrap();
        let count = 1_000;
        lua.gc_collect().unwrap();
        lua.gc_collect().unwrap();
        let before = lua.used_memory();
        let waiting: Vec<Thread> = (0..count)
            .map(|_| {
                let env = new_env(&lua, &meta).unwrap();
                let thread = lua.create_thread(sandbox.xpcall.clone()).unwrap();
                let args = (
                    sandbox.start.clone(),
                    sandbox.traceback.clone(),
                    factory.clone(),
                    env,
                    "run",
                    yield_fn.clone(),
                );
                let yielded: MultiValue = thread.resume(args).unwrap();
                assert_eq!(yielded.len(), 1, "{yielded:?}");
                thread
            })
            .collect();
        lua.gc_collect().unwrap();
        lua.gc_collect().unwrap();
        let per_coroutine = (lua.used_memory() - before) / count;
        assert!(
            per_coroutine < 2_000,
            "{per_coroutine} B per waiting coroutine"
        );
        drop(waiting);
    }
}
