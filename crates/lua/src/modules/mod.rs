//! The Lua modules: `process`, `channel`, `time`, `json`, `http`.
//!
//! Each file builds one module table once per worker state; the sandbox then wraps it in a
//! read-only proxy. Functions that can fail return `value` or `nil, err` (Wippy's convention);
//! misuse that is a programming error (a method called on the wrong object) raises.
//!
//! The files form a tree, not a circle: `channel` and `inbox` (the inbox, events and
//! messages) build on `case` (what `channel.select` needs of an object), `select` knows only
//! `case`, `time` builds on `channel` and `clock`, and `process` on `inbox`.

mod case;
pub(crate) mod channel;
mod clock;
pub(crate) mod http;
pub(crate) mod inbox;
pub(crate) mod json;
pub(crate) mod pg;
pub(crate) mod process;
mod select;
pub(crate) mod time;

use std::fmt::Display;

use mlua::{FromLuaMulti, Function, Lua, Value as LuaValue};

/// What a fallible module function returns: `value, nil` or `nil, err`.
pub(crate) type Ret = (LuaValue, Option<String>);

/// `nil, err`.
pub(crate) fn fail(err: impl Display) -> mlua::Result<Ret> {
    Ok((LuaValue::Nil, Some(err.to_string())))
}

/// `true`.
pub(crate) fn ok_true() -> mlua::Result<Ret> {
    Ok((LuaValue::Boolean(true), None))
}

/// Why a module function produced no value: a failure the Lua code gets as `nil, err`, or an
/// error that is raised (a failure of the Lua state itself, such as an allocation).
pub(crate) enum Fail {
    /// Returned as `nil, err`.
    Soft(String),
    /// Raised.
    Raise(mlua::Error),
}

impl From<String> for Fail {
    fn from(text: String) -> Fail {
        Fail::Soft(text)
    }
}

impl From<&str> for Fail {
    fn from(text: &str) -> Fail {
        Fail::Soft(text.to_owned())
    }
}

impl From<mlua::Error> for Fail {
    fn from(e: mlua::Error) -> Fail {
        Fail::Raise(e)
    }
}

/// Turns any displayable error into a [`Fail::Soft`], so a body can use `?` on it.
pub(crate) trait SoftErr<T> {
    /// The error becomes `nil, err` text.
    fn soft(self) -> Result<T, Fail>;
}

impl<T, E: Display> SoftErr<T> for Result<T, E> {
    fn soft(self) -> Result<T, Fail> {
        self.map_err(|e| Fail::Soft(e.to_string()))
    }
}

/// The outcome of a module function body as Lua gets it: `value, nil`, `nil, err`, or raised.
pub(crate) fn reply(outcome: Result<LuaValue, Fail>) -> mlua::Result<Ret> {
    match outcome {
        Ok(value) => Ok((value, None)),
        Err(Fail::Soft(text)) => fail(text),
        Err(Fail::Raise(e)) => Err(e),
    }
}

/// A module function whose body is written with `?` (see [`reply`]).
pub(crate) fn function<A: FromLuaMulti>(
    lua: &Lua,
    body: impl Fn(&Lua, A) -> Result<LuaValue, Fail> + 'static,
) -> mlua::Result<Function> {
    lua.create_function(move |lua, args: A| reply(body(lua, args)))
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
