//! The one module of this crate that uses `unsafe`: moving values between Rust and Lua with the
//! C API inside a single protected call, `process.send` as a C function, the signal that
//! arms the instruction hook of a resume that runs long ([`preempt`]), and the worker states'
//! allocator with their memory count and limit ([`alloc`]).
//!
//! Under a memory limit mlua makes every value it creates, and every field it sets, a protected
//! call of its own (a `lua_pcall` with its bookkeeping, a few hundred instructions), because
//! an allocation may fail. A relayed frame becomes a message table, a payload object and a
//! payload table of four fields: about a dozen protected calls per frame, more than the rest
//! of the frame's way through the relay. Here one `exec_raw` builds all of it.
//!
//! # Soundness
//!
//! Inside `exec_raw` the Lua C API may raise an error, which unwinds with `longjmp` through
//! the Rust frames of the closure, running no destructors. The functions here therefore never
//! let the API raise:
//!
//! - the only errors the calls used here can raise are memory errors (no metamethods run:
//!   only `raw` accessors, and keys are never `nil` or NaN);
//! - before building, [`headroom`] checks that the state can grow by twice a generous estimate
//!   of what the build allocates ([`estimate`]) without reaching its memory limit; when it
//!   cannot, the safe builder of [`crate::convert`] (mlua, one protected call per step) is
//!   used instead, and its errors are ordinary `Result`s;
//! - the stack is grown with `lua_checkstack`, which reports failure instead of raising, and
//!   the build stops (leaving `nil`) if it cannot grow.
//!
//! The finalizers a collection step may run during an allocation are mlua's userdata
//! destructors; Lua calls them in protected mode, and Lua code cannot install others
//! (`setmetatable` refuses `__gc`, see [`crate::bounds`]).
//!
//! Reading (Lua to Rust, [`read`]) raises nothing either: it uses only raw accessors
//! (`lua_rawgeti`, `lua_next` on a table it does not modify, `lua_tolstring` on values that
//! are already strings), none of which allocates, and `lua_checkstack`, which reports failure.
//!
//! Every entry point is tested against the safe path it replaces.
#![allow(unsafe_code)]

mod alloc;
mod build;
mod preempt;
mod read;
mod receive;
mod send;

use std::cell::Cell;
use std::ffi::{c_char, c_int};

use mlua::ffi::{self, lua_State};
use mlua::Lua;

pub(crate) use alloc::{install as install_allocator, Memory};
pub(crate) use build::{environment, message, value, Metatables};
pub(crate) use preempt::{coroutine_functions, disarm, take_hook, Running, SliceTimer};
pub(crate) use read::{read, utf8, Scalar, Sink};
pub(crate) use receive::{receive_function, SlowPath};
pub(crate) use send::send_function;

/// Stack slots kept free above the current nesting (a table, a key and a value at each level).
const STACK_MARGIN: c_int = 8;

thread_local! {
    /// The memory limit of the Lua state in use on this thread: the slice's during a resume,
    /// the state's own between resumes; 0 before any (then the safe builders are used).
    /// A thread runs one engine's state at a time; with several engines on one thread
    /// (tests), the value between resumes is that of the engine that ran last.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
    /// The conversion budget (`max_value_size`) of that state.
    static VALUE_LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// A resume starts on this thread: its state's memory limit and conversion budget.
pub(crate) fn enter(memory_limit: usize, value_limit: usize) {
    LIMIT.with(|l| l.set(memory_limit));
    VALUE_LIMIT.with(|l| l.set(value_limit));
}

/// The resume ended; the state is back under its own limit.
pub(crate) fn leave(state_limit: usize) {
    LIMIT.with(|l| l.set(state_limit));
}

/// The conversion budget of the state running on this thread.
fn value_limit() -> usize {
    VALUE_LIMIT.with(Cell::get)
}

#[cfg(test)]
pub(crate) fn set_limit(limit: usize) {
    enter(limit, usize::MAX);
}

/// Whether `lua` can grow by `needed` bytes now without reaching its limit.
fn headroom(lua: &Lua, needed: usize) -> bool {
    let limit = LIMIT.with(Cell::get);
    limit != 0 && alloc::used(lua).saturating_add(needed.saturating_mul(2)) < limit
}

/// [`headroom`] from inside a C function, where mlua's handle is not at hand: Lua's own count
/// of the bytes in use, which is the allocator's count too, mlua's or [`alloc`]'s (each adds
/// every allocation's new size and takes every freed block's size, and [`alloc`] starts from
/// mlua's count when it takes over).
///
/// # Safety
///
/// `state` is a valid Lua state, not inside a finalizer.
unsafe fn headroom_raw(state: *mut lua_State, needed: usize) -> bool {
    let limit = LIMIT.with(Cell::get);
    let kbytes = ffi::lua_gc(state, ffi::LUA_GCCOUNT, 0);
    let bytes = ffi::lua_gc(state, ffi::LUA_GCCOUNTB, 0);
    let (Ok(kbytes), Ok(bytes)) = (usize::try_from(kbytes), usize::try_from(bytes)) else {
        // -1: the collector cannot answer now (a finalizer runs).
        return false;
    };
    let used = kbytes.saturating_mul(1024).saturating_add(bytes);
    limit != 0 && used.saturating_add(needed.saturating_mul(2)) < limit
}

/// Pushes `bytes` as a Lua string.
///
/// # Safety
///
/// `state` is a valid Lua state with a free stack slot, inside a protected call or a C
/// function (a memory error raises).
unsafe fn push_str(state: *mut lua_State, bytes: &[u8]) {
    ffi::lua_pushlstring(state, bytes.as_ptr() as *const c_char, bytes.len());
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, LuaOptions, StdLib};

    /// [`super::headroom_raw`] relies on Lua's count of the memory in use being mlua's.
    #[test]
    fn lua_counts_memory_as_mlua_does() {
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING, LuaOptions::new()).unwrap();
        lua.set_memory_limit(64 << 20).unwrap();
        let keep = lua
            .load("local t = {} for i = 1, 1000 do t[i] = string.rep('x', i) end return t")
            .eval::<mlua::Table>()
            .unwrap();
        for _ in 0..3 {
            // SAFETY: reads the counters of a valid state, outside any finalizer.
            let counted = unsafe {
                lua.exec_raw::<usize>((), |state| {
                    let kbytes = super::ffi::lua_gc(state, super::ffi::LUA_GCCOUNT, 0);
                    let bytes = super::ffi::lua_gc(state, super::ffi::LUA_GCCOUNTB, 0);
                    super::ffi::lua_pushinteger(state, i64::from(kbytes) * 1024 + i64::from(bytes));
                })
            }
            .unwrap();
            // The conversion of the result allocates nothing; the call's own frame is freed.
            assert_eq!(counted, lua.used_memory());
            lua.gc_collect().unwrap();
        }
        drop(keep);
    }
}
