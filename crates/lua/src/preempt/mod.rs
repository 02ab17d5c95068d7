//! The instruction hook: preemption, stop requests and the CPU bound.
//!
//! Lua 5.4 lets a count hook yield the running coroutine, and mlua turns such a yield of an
//! async coroutine into "pending, wake me again". The hook is not set while resumes stay
//! short: any count hook makes Lua trap every instruction, which cost ~950 instructions per
//! relayed message. A timer on each worker thread's CPU clock signals the thread after every
//! `time_slice` of CPU; if one resume ran through it, the signal arms the hook on the Lua
//! thread running there (`raw`'s `preempt` module says why that is sound), and from then on,
//! every `hook_interval` instructions until the thread yields, the hook checks the running
//! actor (see [`crate::actor`]) and:
//!
//! 1. **stop requested** (terminate, failed link, shutdown): yields, and the driver drops the
//!    coroutine; if the yield is impossible (inside a metamethod or a C function such as
//!    `table.sort`), the next check raises an error instead to unwind to a point that can yield;
//! 2. **CPU**: once the slice has run `time_slice` (it always has, when armed), it yields
//!    (preemption: the other processes of the worker run, then this one continues). If it
//!    cannot yield for `cpu_budget`, it fails the process with `cpu budget exceeded`.
//!
//! Memory is not the hook's job: the per-process limit is the allocator's limit during each
//! slice (see [`crate::resume::Resumes`]).
//!
//! A failure is recorded on the actor first and only then raised, so a `pcall` in the Lua code
//! cannot hide it: the driver ends the process with that error at its next yield.
//!
//! **Coroutines of the Lua code.** The hook runs in every thread. In a coroutine the process
//! resumed itself, a plain yield would look like that coroutine's own `coroutine.yield()` to
//! its resumer, so the hook marks the thread preempted before yielding, and the process's
//! `coroutine` library (`coroutines.lua`) recognises the mark, passes the yield up to the
//! process's main coroutine and resumes the inner one transparently afterwards. Long work
//! inside `coroutine.wrap` is thus preempted like any other, instead of running into the CPU
//! budget; a stop or a failure reaches the main coroutine the same way.

use std::time::Duration;

use mlua::{Function, HookTriggers, Lua, LuaString, MultiValue, Table, Thread, VmState};

use crate::actor::{current, Slice};
use crate::config::EngineConfig;
use crate::stdlib::Args;

/// Error text when a process runs too long without yielding.
pub(crate) const CPU_BUDGET_EXCEEDED: &str = "cpu budget exceeded";

/// The coroutine library of processes, in Lua.
const COROUTINES: &str = include_str!("coroutines.lua");

/// The thread running now, as the number the marks use.
fn thread_id(lua: &Lua) -> usize {
    lua.current_thread().to_pointer() as usize
}

/// Installs the hook on `lua`, disarmed: it runs only in threads a signal armed because their
/// resume ran a whole time slice (see [`crate::raw`]'s `preempt` module and its worker
/// slice timer), and then every `hook_interval` instructions until it finds nothing to do.
pub(crate) fn install(lua: &Lua, config: &EngineConfig) -> mlua::Result<()> {
    // Installed with a count first, to take mlua's hook function from the main thread; then
    // without triggers, so that mlua gives the threads it creates none.
    let interval = config.hook_interval.max(1);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(interval),
        hook(config),
    )?;
    crate::raw::take_hook(lua)?;
    lua.set_global_hook(HookTriggers::new(), hook(config))
}

/// The hook: checks the running actor (see the module docs).
fn hook(config: &EngineConfig) -> impl Fn(&Lua, &mlua::debug::Debug<'_>) -> mlua::Result<VmState> {
    let time_slice = config.time_slice;
    let cpu_budget = config.cpu_budget.unwrap_or(Duration::MAX);
    move |lua, _debug| {
        let here = thread_id(lua);
        let Some(actor) = current() else {
            crate::raw::disarm(here);
            return Ok(VmState::Continue);
        };
        let slice = actor.slice();
        // Running again in a thread marked preempted: the yield did not happen (a C
        // boundary).
        slice.preempted.take(here);
        let ran = slice.started.get().map_or(Duration::ZERO, |s| s.elapsed());
        let failure = slice.failure.borrow().clone();
        let stop = actor.stop_requested().is_some();
        if failure.is_none() && !stop && ran < time_slice {
            // Armed in an earlier slice (or by a signal that came late): nothing to check
            // until the slice timer finds this resume long.
            crate::raw::disarm(here);
            return Ok(VmState::Continue);
        }
        if let Some(failure) = failure {
            return yield_or_raise(slice, here, failure);
        }
        if stop {
            return yield_or_raise(slice, here, "process stopped".to_owned());
        }
        if ran >= cpu_budget {
            *slice.failure.borrow_mut() = Some(CPU_BUDGET_EXCEEDED.to_owned());
            return yield_or_raise(slice, here, CPU_BUDGET_EXCEEDED.to_owned());
        }
        slice.sliced.set(true);
        Ok(preempt(slice, here))
    }
}

/// Yields the running thread; in a coroutine of the Lua code, marks it first so that its
/// resumer passes the yield up (see the module docs).
fn preempt(slice: &Slice, here: usize) -> VmState {
    if here != slice.main_thread.get() {
        slice.preempted.mark(here);
    }
    VmState::Yield
}

/// The actor must end: yield so that the driver drops it. If we are back here in the same
/// slice, the yield was impossible at that point (a C boundary): raise instead, to unwind to a
/// point that can yield, and try yielding again at the next check. Alternating makes a
/// `pcall` around the stuck code unable to keep the process alive.
fn yield_or_raise(slice: &Slice, here: usize, why: String) -> mlua::Result<VmState> {
    let attempted = slice.yield_refused.get();
    slice.yield_refused.set(!attempted);
    if attempted {
        Err(mlua::Error::runtime(why))
    } else {
        Ok(preempt(slice, here))
    }
}

/// The `coroutine` library of processes (see the module docs); `doomed` tells why the running
/// actor must end, if it must.
pub(crate) fn coroutine_library(lua: &Lua, doomed: Function) -> mlua::Result<Table> {
    let with_slice = |f: fn(&Slice, usize)| {
        lua.create_function(move |lua, ()| {
            if let Some(actor) = current() {
                f(actor.slice(), thread_id(lua));
            }
            Ok(())
        })
    };
    // Whether `co` was preempted by the hook (and not by its own yield); takes the mark.
    let took_preemption = lua.create_function(|_, co: Thread| {
        let id = co.to_pointer() as usize;
        Ok(current().is_some_and(|actor| actor.slice().preempted.take(id)))
    })?;
    let mark = with_slice(|slice, here| {
        if here != slice.main_thread.get() {
            slice.preempted.mark(here);
        }
    })?;
    let clear = with_slice(|slice, here| {
        slice.preempted.take(here);
    })?;
    // `type_error(name, expected, ...)`: the message for a bad first argument.
    let type_error = lua.create_function(
        |lua, (name, expected, args): (LuaString, LuaString, MultiValue)| {
            let name = if name == "coroutine.wrap" {
                "coroutine.wrap"
            } else {
                "coroutine.resume"
            };
            let args = args.into_vec();
            Ok(Args::new(lua, &args, name).type_error(1, &expected.to_str()?))
        },
    )?;
    let coroutine = lua.globals().get::<Table>("coroutine")?;
    let (resume, close) = crate::raw::coroutine_functions(lua, &coroutine)?;
    lua.load(COROUTINES)
        .set_name("=wsrelay-lua coroutines")
        .call((
            coroutine,
            resume,
            close,
            Lua::poll_pending(),
            took_preemption,
            mark,
            clear,
            doomed,
            type_error,
        ))
}
