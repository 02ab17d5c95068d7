//! The look into the inbox of `inbox:receive()` as a C function: the next message is built
//! straight on the caller's stack, without mlua's callback machinery (a few hundred
//! instructions per call, and `receive` calls twice per message: once to find it, once to
//! find the queue empty) and without the protected call of `exec_raw` (~1.5k instructions).

use std::ffi::c_int;
use std::mem::ManuallyDrop;
use std::panic::AssertUnwindSafe;

use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua};
use wsrelay_process::Message;

use super::build::{message_estimate, push_message, Meta};
use super::headroom_raw;
use crate::actor::current_process;
use crate::resume;

/// The C function `look(inbox, message_meta, payload_meta, strings)` for the state `lua`.
pub(crate) fn receive_function(lua: &Lua) -> mlua::Result<Function> {
    // SAFETY: `look` follows the C function protocol: it reads its arguments, pushes one
    // result and returns 1, and lets no panic unwind into Lua.
    unsafe { lua.create_c_function(look) }
}

/// What [`take`] found.
enum Taken {
    /// A message, and the state has room to build it.
    Message(Message),
    /// Nothing queued; the running resume's waker is registered.
    Empty,
    /// Not handled here: the mlua path (`modules::inbox::try_receive`) does it (and raises
    /// its errors). No message was taken.
    Elsewhere,
}

/// `look(inbox, message_meta, payload_meta, strings)` → the next message of the running process (a
/// table with `message_meta`, see `modules/inbox.rs`), `nil` when there is none (the running
/// resume's waker will be woken by the next change of the process's queues), or `false`:
/// call the mlua path, which handles what this does not (no running process, a bad argument,
/// a state near its memory limit).
///
/// # Safety
///
/// Called by Lua as a C function.
unsafe extern "C-unwind" fn look(state: *mut lua_State) -> c_int {
    let taken = std::panic::catch_unwind(AssertUnwindSafe(|| take(state)));
    // Held without a destructor while the stack is built: pushing raises nothing (`take`
    // checked the room), and even if it did, skipping this frame would leak, not free twice.
    let msg = match taken {
        Ok(Taken::Message(msg)) => ManuallyDrop::new(msg),
        Ok(Taken::Empty) => {
            ffi::lua_pushnil(state);
            return 1;
        }
        Ok(Taken::Elsewhere) | Err(_) => {
            ffi::lua_pushboolean(state, 0);
            return 1;
        }
    };
    let top = ffi::lua_gettop(state);
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
        push_message(state, &msg, Meta::Stack(2), Meta::Stack(3), 4);
    }));
    let msg = ManuallyDrop::into_inner(msg);
    if built.is_ok() && ffi::lua_gettop(state) == top + 1 {
        drop(msg);
        return 1;
    }
    // The stack could not grow, or a panic: the message goes back to the head of the inbox
    // and the mlua path takes it (and reports what fails).
    ffi::lua_settop(state, top);
    give_back(msg);
    ffi::lua_pushboolean(state, 0);
    1
}

/// Takes the next inbox message if it can be built here (see [`look`]).
///
/// # Safety
///
/// As [`look`].
unsafe fn take(state: *mut lua_State) -> Taken {
    if ffi::lua_type(state, 1) != ffi::LUA_TUSERDATA
        || ffi::lua_type(state, 2) != ffi::LUA_TTABLE
        || ffi::lua_type(state, 3) != ffi::LUA_TTABLE
        || ffi::lua_type(state, 4) != ffi::LUA_TTABLE
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
