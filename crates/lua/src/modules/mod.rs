//! The Lua modules: `process`, `channel`, `time`, `json`, `http`.
//!
//! Each file builds one module table once per worker state; the sandbox then wraps it in a
//! read-only proxy. Functions that can fail return `value` or `nil, err` (Wippy's convention);
//! misuse that is a programming error (a method called on the wrong object) raises.

pub(crate) mod channel;
pub(crate) mod http;
pub(crate) mod json;
pub(crate) mod process;
pub(crate) mod time;

use mlua::Value as LuaValue;

/// What a fallible module function returns: `value, nil` or `nil, err`.
pub(crate) type Ret = (LuaValue, Option<String>);

/// `nil, err`.
pub(crate) fn fail(err: impl std::fmt::Display) -> mlua::Result<Ret> {
    Ok((LuaValue::Nil, Some(err.to_string())))
}

/// `true`.
pub(crate) fn ok_true() -> mlua::Result<Ret> {
    Ok((LuaValue::Boolean(true), None))
}

/// The string argument `index` (0-based) named `what`, or the error text for `nil, err`.
pub(crate) fn string_arg(args: &[LuaValue], index: usize, what: &str) -> Result<String, String> {
    match args.get(index) {
        Some(LuaValue::String(s)) => Ok(s
            .to_str()
            .map_err(|_| format!("{what} must be UTF-8 text"))?
            .to_owned()),
        None | Some(LuaValue::Nil) => Err(format!("{what} is required")),
        Some(other) => Err(format!(
            "{what} must be a string, got {}",
            other.type_name()
        )),
    }
}
