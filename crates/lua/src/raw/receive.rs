//! `inbox:receive()` as a C function: the next message is built straight on the caller's
//! stack, and when there is none the function yields mlua's "pending" marker itself and
//! continues where it was when the coroutine is resumed. A Lua wrapper around an mlua
//! callback cost more than the message: the callback machinery on each look (twice per
//! message: once to find it, once to find the queue empty), the protected call of
//! `exec_raw`, and the wrapper's own call and instructions, each counted by the hook.
//!
//! # Jumps over this frame
//!
//! Yielding (`lua_yieldk`) and an error raised by the mlua path (`lua_callk`) leave this
//! function with a `longjmp`. At those calls nothing Rust owns is alive in it (the message
//! is built or given back before), so the jump skips no destructor.

use std::ffi::c_int;
use std::mem::ManuallyDrop;
use std::panic::AssertUnwindSafe;

use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua, Table};
use wsrelay_process::Message;

use super::build::{message_estimate, push_message, Meta};
use super::headroom_raw;
use crate::actor::current_process;
use crate::resume;

/// The upvalues of `receive`: the message and payload metatables, the string cache, the mlua
/// path with and without the inbox argument, and mlua's "pending" marker.
const MESSAGE_META: c_int = ffi::lua_upvalueindex(1);
const PAYLOAD_META: c_int = ffi::lua_upvalueindex(2);
const STRINGS: c_int = ffi::lua_upvalueindex(3);
const SLOW_PATH: c_int = ffi::lua_upvalueindex(4);
const SLOW_PATH_AGAIN: c_int = ffi::lua_upvalueindex(5);
const PENDING: c_int = ffi::lua_upvalueindex(6);

/// The look through mlua (`modules::inbox::try_receive`), for what the C function leaves to
/// it (no running process, a bad argument, a state near its memory limit): it returns the
/// message or `nil`. `first` takes the inbox argument (and raises mlua's error for a bad
/// one); `again` takes none: after a yield the function's stack is gone (mlua clears a
/// yielded thread's stack), and the argument was checked before.
pub(crate) struct SlowPath {
    pub(crate) first: Function,
    pub(crate) again: Function,
}

/// `inbox:receive()` for the state `lua`.
pub(crate) fn receive_function(
    lua: &Lua,
    message_meta: Table,
    payload_meta: Table,
    strings: Table,
    slow: SlowPath,
) -> mlua::Result<Function> {
    // SAFETY: the six arguments (slots 1 to 6) become the closure's upvalues;
    // `lua_pushcclosure` allocates, and a memory error is caught by `exec_raw`'s protected
    // call. `receive` follows the C function protocol.
    unsafe {
        lua.exec_raw::<Function>(
            (
                message_meta,
                payload_meta,
                strings,
                slow.first,
                slow.again,
                Lua::poll_pending(),
            ),
            |state| ffi::lua_pushcclosure(state, receive, 6),
        )
    }
}

/// What [`take`] found.
enum Taken {
    /// A message, and the state has room to build it.
    Message(Message),
    /// Nothing queued; the running resume's waker is registered.
    Empty,
    /// Left to the mlua path; no message was taken.
    Elsewhere,
}

/// `inbox:receive()` → `msg, true`, waiting (yielding "pending") until a message comes.
///
/// # Safety
///
/// Called by Lua as a C function, with the upvalues of [`receive_function`].
unsafe extern "C-unwind" fn receive(state: *mut lua_State) -> c_int {
    // Only `self` counts.
    ffi::lua_settop(state, 1);
    next(state, false)
}

/// The continuation of [`receive`] after a yield: looks again.
///
/// # Safety
///
/// As [`receive`].
unsafe extern "C-unwind" fn resumed(
    state: *mut lua_State,
    _status: c_int,
    _ctx: ffi::lua_KContext,
) -> c_int {
    // Whatever is left of the stack (nothing when mlua drove the resume, `self` when a
    // coroutine of the Lua code passed the wait up and resumed this one) is not needed.
    ffi::lua_settop(state, 0);
    next(state, true)
}

/// Returns the next message (`msg, true`) or yields until there may be one. On the first
/// look `self` is the only value on the stack; after a yield (`again`) the stack is empty.
///
/// # Safety
///
/// As [`receive`].
unsafe fn next(state: *mut lua_State, again: bool) -> c_int {
    // A panic's payload is dropped here, before anything below may jump over this frame.
    let taken = std::panic::catch_unwind(AssertUnwindSafe(|| take(state, again)))
        .unwrap_or(Taken::Elsewhere);
    // Held without a destructor while the stack is built: pushing raises nothing (`take`
    // checked the room), and even if it did, skipping this frame would leak, not free twice.
    let msg = match taken {
        Taken::Message(msg) => ManuallyDrop::new(msg),
        Taken::Empty => return wait(state),
        Taken::Elsewhere => return slow(state, again),
    };
    let top = ffi::lua_gettop(state);
    // `is_ok` drops a panic's payload at once, before `slow` may jump over this frame.
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
        push_message(
            state,
            &msg,
            Meta::Stack(MESSAGE_META),
            Meta::Stack(PAYLOAD_META),
            STRINGS,
        );
    }))
    .is_ok();
    let msg = ManuallyDrop::into_inner(msg);
    if built && ffi::lua_gettop(state) == top + 1 {
        drop(msg);
        ffi::lua_pushboolean(state, 1);
        return 2;
    }
    // The stack could not grow, or a panic: the message goes back to the head of the inbox
    // and the mlua path takes it (and reports what fails).
    ffi::lua_settop(state, top);
    give_back(msg);
    slow(state, again)
}

/// The mlua path ([`SlowPath`]): its message, or a wait when it found none (its errors are
/// raised as they were).
///
/// # Safety
///
/// As [`next`].
unsafe fn slow(state: *mut lua_State, again: bool) -> c_int {
    let top = ffi::lua_gettop(state);
    if again {
        ffi::lua_pushvalue(state, SLOW_PATH_AGAIN);
        ffi::lua_callk(state, 0, 1, 0, None);
    } else {
        ffi::lua_pushvalue(state, SLOW_PATH);
        ffi::lua_pushvalue(state, 1);
        ffi::lua_callk(state, 1, 1, 0, None);
    }
    if ffi::lua_type(state, -1) != ffi::LUA_TNIL {
        ffi::lua_pushboolean(state, 1);
        return 2;
    }
    ffi::lua_settop(state, top);
    wait(state)
}

/// Yields "pending": the task sleeps until the waker registered by the look fires, then
/// [`resumed`] looks again.
///
/// # Safety
///
/// As [`receive`].
unsafe fn wait(state: *mut lua_State) -> c_int {
    ffi::lua_pushvalue(state, PENDING);
    ffi::lua_yieldk(state, 1, 0, Some(resumed))
}

/// Takes the next inbox message if it can be built here.
///
/// # Safety
///
/// As [`receive`].
unsafe fn take(state: *mut lua_State, again: bool) -> Taken {
    if (!again && ffi::lua_type(state, 1) != ffi::LUA_TUSERDATA)
        || ffi::lua_checkstack(state, 1) == 0
    {
        return Taken::Elsewhere;
    }
    let Ok(process) = current_process() else {
        return Taken::Elsewhere;
    };
    // Before looking: a message that arrives after the look wakes the task.
    resume::with_waker(|waker| {
        process.ctx.wake_on_change(waker);
        process.mailbox.wake_on_change(waker);
    });
    let Some(msg) = process.mailbox.next_inbox(&process.ctx) else {
        return Taken::Empty;
    };
    if headroom_raw(state, message_estimate(&msg)) {
        Taken::Message(msg)
    } else {
        process.mailbox.give_back(msg);
        Taken::Elsewhere
    }
}

/// Puts `msg` back at the head of the running process's inbox.
fn give_back(msg: Message) {
    if let Ok(process) = current_process() {
        process.mailbox.give_back(msg);
    }
}
