//! The instruction hook: preemption, stop requests, CPU and memory bounds.
//!
//! Lua 5.4 lets a count hook yield the running coroutine, and mlua turns such a yield of an
//! async coroutine into "pending, wake me again". So every `hook_interval` instructions the
//! hook checks the running actor (see [`crate::actor`]) and:
//!
//! 1. **stop requested** (terminate, failed link, shutdown): yields, and the driver drops the
//!    coroutine; if the yield is impossible (inside a metamethod or a C function such as
//!    `table.sort`), the next check raises an error instead to unwind to a point that can yield;
//! 2. **memory**: if the state grew by more than the per-process limit since the slice
//!    started, it runs a full collection and, if the growth is still above the limit, fails
//!    the process with `out of memory`;
//! 3. **CPU**: once the slice has run `time_slice`, it yields (preemption: the other
//!    processes of the worker run, then this one continues). If it cannot yield for
//!    `cpu_budget`, it fails the process with `cpu budget exceeded`.
//!
//! A failure is recorded on the actor first and only then raised, so a `pcall` in the Lua code
//! cannot hide it: the driver ends the process with that error at its next yield.

use std::time::Duration;

use mlua::{HookTriggers, Lua, VmState};

use crate::actor::current;
use crate::config::EngineConfig;

/// Error text when a process runs too long without yielding.
pub(crate) const CPU_BUDGET_EXCEEDED: &str = "cpu budget exceeded";

/// Installs the hook on `lua` (every coroutine created afterwards gets it).
pub(crate) fn install(lua: &Lua, config: &EngineConfig) -> mlua::Result<()> {
    let time_slice = config.time_slice;
    let cpu_budget = config.cpu_budget.unwrap_or(Duration::MAX);
    let memory_limit = config.process_memory_limit;
    let triggers = HookTriggers::new().every_nth_instruction(config.hook_interval.max(1));
    lua.set_global_hook(triggers, move |lua, _debug| {
        let Some(actor) = current() else {
            return Ok(VmState::Continue);
        };
        let slice = actor.slice();
        let is_main = || lua.current_thread().to_pointer() as usize == slice.main_thread.get();
        let failure = slice.failure.borrow().clone();
        if let Some(failure) = failure {
            return yield_or_raise(slice, is_main(), failure);
        }
        if actor.stop_requested().is_some() {
            return yield_or_raise(slice, is_main(), "process stopped".to_owned());
        }
        let grown = lua.used_memory().saturating_sub(slice.memory_at_start.get());
        if grown > memory_limit {
            lua.gc_collect()?;
            let grown = lua.used_memory().saturating_sub(slice.memory_at_start.get());
            if grown > memory_limit {
                let failure = format!(
                    "out of memory: the process grew by {grown} bytes in one slice (limit {memory_limit})"
                );
                return fail(slice, failure, is_main());
            }
        }
        let ran = slice.started.get().map_or(Duration::ZERO, |s| s.elapsed());
        if ran >= cpu_budget {
            return fail(slice, CPU_BUDGET_EXCEEDED.to_owned(), is_main());
        }
        if ran >= time_slice && is_main() {
            return Ok(VmState::Yield);
        }
        Ok(VmState::Continue)
    })
}

/// The actor must end: yield so that the driver drops it. If we are back here in the same
/// slice, the yield was impossible at that point (a C boundary): raise instead, to unwind to a
/// point that can yield, and try yielding again at the next check. Alternating makes a
/// `pcall` around the stuck code unable to keep the process alive.
fn yield_or_raise(
    slice: &crate::actor::Slice,
    is_main: bool,
    why: String,
) -> mlua::Result<VmState> {
    let attempted = slice.yield_refused.get();
    slice.yield_refused.set(!attempted);
    if is_main && !attempted {
        Ok(VmState::Yield)
    } else {
        Err(mlua::Error::runtime(why))
    }
}

/// Records the failure, then yields (the driver ends the process) or, where a yield would be
/// taken by a coroutine the Lua code resumed itself, raises.
fn fail(slice: &crate::actor::Slice, failure: String, is_main: bool) -> mlua::Result<VmState> {
    *slice.failure.borrow_mut() = Some(failure.clone());
    if is_main {
        Ok(VmState::Yield)
    } else {
        Err(mlua::Error::runtime(failure))
    }
}
