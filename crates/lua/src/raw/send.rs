//! `process.send` as a C function: the arguments are read straight from the stack and the
//! message is delivered without going through mlua's callback machinery (argument conversion,
//! a registry reference per table), which cost more than the send itself.

use std::ffi::c_int;
use std::panic::AssertUnwindSafe;

use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua};

use super::push_str;
use super::read::{string_bytes, type_name, Fields, Walker};
use wsrelay_process::Value;

use crate::convert::ValueBuild;

/// The longest error text returned; longer ones are cut on a character boundary.
const MAX_ERROR: usize = 480;

/// An error text in a buffer with no destructor: it must outlive pushing it, and pushing may
/// raise a memory error, which unwinds past this frame without running destructors.
struct ErrorText {
    bytes: [u8; MAX_ERROR],
    len: usize,
}

impl ErrorText {
    fn set(&mut self, text: &str) {
        let mut end = text.len().min(MAX_ERROR);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        self.len = end;
    }
}

/// `process.send` for the state `lua`.
pub(crate) fn send_function(lua: &Lua) -> mlua::Result<Function> {
    // SAFETY: `send` follows the C function protocol: it reads its arguments, pushes its
    // results and returns their count, and lets no panic unwind into Lua.
    unsafe { lua.create_c_function(send) }
}

/// `process.send(dest, topic, payload...)` → `true`, or `nil, err`.
///
/// # Safety
///
/// Called by Lua as a C function.
unsafe extern "C-unwind" fn send(state: *mut lua_State) -> c_int {
    let mut error = ErrorText {
        bytes: [0; MAX_ERROR],
        len: 0,
    };
    // Everything Rust owns lives inside this call and is dropped when it returns; a panic
    // becomes an error text instead of unwinding into Lua.
    let sent = std::panic::catch_unwind(AssertUnwindSafe(|| match read_and_send(state) {
        Ok(()) => true,
        Err(text) => {
            error.set(&text);
            false
        }
    }))
    .unwrap_or_else(|_| {
        error.set("process.send: internal error");
        false
    });
    if sent {
        ffi::lua_pushboolean(state, 1);
        return 1;
    }
    ffi::lua_pushnil(state);
    push_str(state, &error.bytes[..error.len]);
    2
}

/// Reads the arguments and sends; the error text for `nil, err` otherwise.
///
/// # Safety
///
/// As [`send`].
unsafe fn read_and_send(state: *mut lua_State) -> Result<(), String> {
    let count = ffi::lua_gettop(state);
    let dest = text_arg(state, 1, "destination")?;
    let topic = text_arg(state, 2, "topic")?;
    let limit = super::value_limit();
    // A record alone (`{type = ..., data = ...}`) is offered as it is: a relay client's
    // connection writes a `ws.send` from the table's strings, and a transport encodes it for
    // another node, with no payload built. Nothing runs in the state until the send returns.
    let fields = if count == 3 && ffi::lua_type(state, 3) == ffi::LUA_TTABLE {
        Fields::of(state, 3, limit)
    } else {
        Fields::none()
    };
    let build = || {
        let mut walker = Walker::new(ValueBuild, limit);
        let mut read = |index| {
            walker
                .walk(state, index)
                .map(|(value, _)| value)
                .map_err(|e| format!("payload: {e}"))
        };
        // The usual one payload without a vector for the others.
        let payload = if count >= 3 { read(3)? } else { Value::Null };
        let mut extra = Vec::new();
        if count > 3 {
            extra.reserve_exact((count - 3) as usize);
            for index in 4..=count {
                extra.push(read(index)?);
            }
        }
        Ok((payload, extra))
    };
    crate::modules::process::deliver(dest, topic, &fields, build)
}

/// The UTF-8 string argument at `index` named `what` (the texts of `modules::string_arg`).
///
/// # Safety
///
/// As [`send`]; the text lives while the argument is on the stack.
unsafe fn text_arg<'a>(state: *mut lua_State, index: c_int, what: &str) -> Result<&'a str, String> {
    match ffi::lua_type(state, index) {
        ffi::LUA_TSTRING => super::read::utf8(string_bytes(state, index))
            .ok_or_else(|| format!("{what} must be UTF-8 text")),
        ffi::LUA_TNIL | ffi::LUA_TNONE => Err(format!("{what} is required")),
        other => Err(format!(
            "{what} must be a string, got {}",
            type_name(state, other)
        )),
    }
}
