//! The Lua modules: `process`, `channel`, `time`, `json`, `http`, `pg`, and the Wippy
//! utility modules `errors`, `base64`, `hash`, `uuid`, `env`, `crypto`, `logger`, `store`, `metrics`, `http_client` and `events`.
//!
//! Each file builds one module table once per worker state; the sandbox then wraps it in a
//! read-only proxy. Functions that can fail return `value` or `nil, err` (Wippy's convention);
//! misuse that is a programming error (a method called on the wrong object) raises. The
//! utility modules return Wippy error objects ([`errors::WippyError`], built with
//! [`wippy_function`]); the older ones still return strings.
//!
//! The files form a tree, not a circle: `channel` and `inbox` (the inbox, events and
//! messages) build on `case` (what `channel.select` needs of an object), `select` knows only
//! `case`, `time` builds on `channel` and `clock`, and `process` on `inbox` and `listen`
//! (`process.listen` channels; the inbox reads through the process's `crate::mailbox::Mailbox`).

pub(crate) mod base64;
mod case;
pub(crate) mod channel;
mod clock;
pub(crate) mod crypto;
pub(crate) mod env;
pub(crate) mod errors;
pub(crate) mod events;
pub(crate) mod hash;
pub(crate) mod http;
pub(crate) mod http_client;
pub(crate) mod inbox;
pub(crate) mod json;
pub(crate) mod listen;
pub(crate) mod logger;
pub(crate) mod metrics;
pub(crate) mod pg;
pub(crate) mod process;
mod select;
pub(crate) mod store;
pub(crate) mod subscription;
pub(crate) mod time;
pub(crate) mod uuid;

use std::fmt::Display;

use mlua::{FromLuaMulti, Function, Lua, MultiValue, Value as LuaValue};

use self::errors::WippyError;

/// What the modules of every shard of one engine share: the `env` variables, the `store`
/// stores, the `metrics` series and the `http_client` transport.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The `env` module's variables.
    pub(crate) env: std::sync::Arc<env::EnvStore>,
    /// The `store` module's stores.
    pub(crate) stores: std::sync::Arc<store::Stores>,
    /// The `metrics` module's series.
    pub(crate) metrics: std::sync::Arc<metrics::AppMetrics>,
    /// The `http_client` module's transport and policies.
    pub(crate) http: std::sync::Arc<http_client::HttpClients>,
}

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

/// Why a utility module function produced no value: a Wippy error returned as `nil, err`, or
/// an error of the Lua state itself (an allocation), raised.
pub(crate) enum WippyFail {
    /// Returned as `nil, err` with an error object.
    Soft(WippyError),
    /// Raised.
    Raise(mlua::Error),
}

impl From<WippyError> for WippyFail {
    fn from(e: WippyError) -> WippyFail {
        WippyFail::Soft(e)
    }
}

impl From<mlua::Error> for WippyFail {
    fn from(e: mlua::Error) -> WippyFail {
        WippyFail::Raise(e)
    }
}

/// A utility module function: `value, nil` or `nil, err` with a Wippy error object; `body`
/// is written with `?`.
pub(crate) fn wippy_function<A: FromLuaMulti>(
    lua: &Lua,
    body: impl Fn(&Lua, A) -> Result<LuaValue, WippyFail> + 'static,
) -> mlua::Result<Function> {
    lua.create_function(
        move |lua, args: A| -> mlua::Result<(LuaValue, Option<WippyError>)> {
            match body(lua, args) {
                Ok(value) => Ok((value, None)),
                Err(WippyFail::Soft(e)) => Ok((LuaValue::Nil, Some(e))),
                Err(WippyFail::Raise(e)) => Err(e),
            }
        },
    )
}

/// The string argument `index` (0-based) named `what`, binary-safe, at most `max` bytes (so a
/// hash or cipher never works on more than the engine lets Lua hand to Rust); INVALID
/// otherwise.
pub(crate) fn bytes_arg(
    args: &MultiValue,
    index: usize,
    what: &str,
    max: usize,
) -> Result<mlua::LuaString, WippyError> {
    match args.get(index) {
        Some(LuaValue::String(s)) => {
            let len = s.as_bytes().len();
            if len > max {
                return Err(WippyError::invalid(format!(
                    "{what} is {len} bytes, over the limit of {max}"
                )));
            }
            Ok(s.clone())
        }
        None | Some(LuaValue::Nil) => Err(WippyError::invalid(format!("{what} is required"))),
        Some(other) => Err(WippyError::invalid(format!(
            "{what} must be a string, got {}",
            other.type_name()
        ))),
    }
}

/// The UTF-8 text argument `index` named `what`, at most `max` bytes; INVALID otherwise.
pub(crate) fn text_arg(
    args: &MultiValue,
    index: usize,
    what: &str,
    max: usize,
) -> Result<String, WippyError> {
    let s = bytes_arg(args, index, what, max)?;
    let text = s
        .to_str()
        .map_err(|_| WippyError::invalid(format!("{what} must be UTF-8 text")))?
        .to_owned();
    Ok(text)
}

/// The optional boolean argument `index` named `what` (nil is `false`); INVALID if it is
/// another type.
pub(crate) fn flag_arg(args: &MultiValue, index: usize, what: &str) -> Result<bool, WippyError> {
    match args.get(index) {
        None | Some(LuaValue::Nil) => Ok(false),
        Some(LuaValue::Boolean(b)) => Ok(*b),
        Some(other) => Err(WippyError::invalid(format!(
            "{what} must be a boolean, got {}",
            other.type_name()
        ))),
    }
}

/// The integer argument `index` named `what` within `range`; INVALID otherwise (a float with
/// no fraction counts as an integer, as Lua's own functions accept it).
pub(crate) fn int_arg(
    args: &MultiValue,
    index: usize,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, WippyError> {
    let n = match args.get(index) {
        Some(LuaValue::Integer(n)) => *n,
        Some(LuaValue::Number(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
        None | Some(LuaValue::Nil) => {
            return Err(WippyError::invalid(format!("{what} is required")))
        }
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "{what} must be an integer, got {}",
                other.type_name()
            )))
        }
    };
    if !range.contains(&n) {
        return Err(WippyError::invalid(format!(
            "{what} must be between {} and {}, got {n}",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
