//! The `logger` module: `logger:debug|info|warn|error(msg, fields?)`, `logger:with(fields)`
//! and `logger:named(name)`, written as `tracing` events.
//!
//! `require("logger")` returns the entry's root logger (the entry id is attached to every
//! line, so a log says which app code wrote it). Every line is one event with target
//! [`TARGET`], under the crate's own target so `RUST_LOG=wsrelay_lua=...` filters it with
//! the rest of the Lua runtime (and `RUST_LOG=wsrelay_lua::logger=warn` on its own). The
//! event carries `entry`, `pid` (empty in a function call), `logger` (the `named` path,
//! dot-joined) and `fields`.
//!
//! `tracing` field names are fixed at compile time, so the Lua fields cannot each become a
//! `tracing` field: they are rendered into the one `fields` field as `key=value` pairs (a
//! value quoted when it holds a space, `=` or `"`), in key order so equal calls give equal
//! lines.
//!
//! Bounds, so one call cannot make a huge log line or keep unbounded Rust memory in a
//! logger: a message up to [`MAX_MESSAGE`] bytes, at most [`MAX_FIELDS`] fields per logger
//! and call, keys up to [`MAX_KEY`] bytes, values up to [`MAX_VALUE`] bytes, a name path up
//! to [`MAX_NAME`] bytes. Longer text is cut on a UTF-8 boundary and marked
//! `…[truncated, N bytes in all]`; fields past the count are dropped and the line gets
//! `dropped_fields=N`. Logging never fails for size (a log call that errors would turn a
//! diagnostic into an outage); only a bad argument type or an empty name is INVALID.

use std::collections::BTreeMap;
use std::sync::Arc;

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::errors::WippyError;
use super::text_arg;

/// The `tracing` target of every line.
pub(crate) const TARGET: &str = "wsrelay_lua::logger";
/// The longest message written, in bytes.
pub(crate) const MAX_MESSAGE: usize = 8 << 10;
/// The most fields a logger or a line holds.
pub(crate) const MAX_FIELDS: usize = 32;
/// The longest field key, in bytes.
pub(crate) const MAX_KEY: usize = 64;
/// The longest field value, in bytes.
pub(crate) const MAX_VALUE: usize = 1 << 10;
/// The longest name path (`a.b.c`), in bytes.
pub(crate) const MAX_NAME: usize = 256;

/// A logger: the entry it belongs to, its name path and the fields it adds to every line.
#[derive(Debug, Clone)]
pub(crate) struct Logger {
    entry: Arc<str>,
    name: String,
    fields: Arc<BTreeMap<String, String>>,
    /// Fields `with` could not keep (past [`MAX_FIELDS`]); reported on every line.
    dropped: usize,
}

impl Logger {
    /// The root logger of `entry`.
    pub(crate) fn root(entry: &str) -> Logger {
        Logger {
            entry: Arc::from(entry),
            name: String::new(),
            fields: Arc::default(),
            dropped: 0,
        }
    }
}

/// `text` cut to at most `max` bytes on a UTF-8 boundary; when cut, marked with the size of
/// the whole (`total` bytes), so a reader knows the line is not all there was.
fn truncate(text: &str, max: usize, total: usize) -> String {
    if text.len() <= max && total <= max {
        return text.to_owned();
    }
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated, {total} bytes in all]", &text[..end])
}

/// A Lua value as log text: strings (lossy UTF-8), numbers and booleans as Lua prints them;
/// other values by their type name (a table could be huge or cyclic).
fn render(value: &LuaValue, max: usize) -> String {
    match value {
        LuaValue::String(s) => {
            let bytes = s.as_bytes();
            // Convert only the head, so a huge string is never copied whole.
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
            truncate(&head, max, bytes.len())
        }
        LuaValue::Integer(_) | LuaValue::Number(_) | LuaValue::Boolean(_) => {
            value.to_string().unwrap_or_default()
        }
        LuaValue::Nil => "nil".to_owned(),
        other => format!("<{}>", other.type_name()),
    }
}

/// Reads the fields table at `index` (optional) into `into`, within the bounds; returns how
/// many fields were dropped for the count.
fn read_fields(
    args: &MultiValue,
    index: usize,
    what: &str,
    into: &mut BTreeMap<String, String>,
) -> Result<usize, WippyError> {
    let table = match args.get(index) {
        None | Some(LuaValue::Nil) => return Ok(0),
        Some(LuaValue::Table(t)) => t,
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "{what} must be a table, got {}",
                other.type_name()
            )))
        }
    };
    let mut dropped = 0;
    // `pairs` order is unspecified; the map sorts, and the count bound is on the result.
    for pair in table.clone().pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair.map_err(|e| WippyError::invalid(format!("{what}: {e}")))?;
        let key = match &k {
            LuaValue::String(_) | LuaValue::Integer(_) | LuaValue::Number(_) => render(&k, MAX_KEY),
            other => {
                return Err(WippyError::invalid(format!(
                    "{what}: keys must be strings, got {}",
                    other.type_name()
                )))
            }
        };
        if into.len() >= MAX_FIELDS && !into.contains_key(&key) {
            dropped += 1;
            continue;
        }
        into.insert(key, render(&v, MAX_VALUE));
    }
    Ok(dropped)
}

/// `key=value` pairs, a value quoted when it would be ambiguous.
fn format_fields(fields: &BTreeMap<String, String>, dropped: usize) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        if v.is_empty() || v.contains([' ', '=', '"']) {
            out.push_str(&format!("{v:?}"));
        } else {
            out.push_str(v);
        }
    }
    if dropped > 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("dropped_fields={dropped}"));
    }
    out
}

/// The log levels of the four methods.
#[derive(Clone, Copy)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one line.
fn emit(logger: &Logger, level: Level, args: &MultiValue) -> Result<(), WippyError> {
    let message = match args.front() {
        None | Some(LuaValue::Nil) => String::new(),
        Some(v @ (LuaValue::String(_) | LuaValue::Integer(_) | LuaValue::Number(_))) => {
            render(v, MAX_MESSAGE)
        }
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "logger: message must be a string, got {}",
                other.type_name()
            )))
        }
    };
    let mut fields = (*logger.fields).clone();
    let dropped = logger.dropped + read_fields(args, 1, "logger: fields", &mut fields)?;
    let fields = format_fields(&fields, dropped);
    let pid = match crate::actor::current() {
        Some(crate::actor::Actor::Process(p)) => p.ctx.pid().to_string(),
        _ => String::new(),
    };
    let entry = &*logger.entry;
    let name = logger.name.as_str();
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(target: TARGET, $level, entry, pid = %pid, logger = name,
                fields = %fields, "{message}")
        };
    }
    match level {
        Level::Debug => line!(tracing::Level::DEBUG),
        Level::Info => line!(tracing::Level::INFO),
        Level::Warn => line!(tracing::Level::WARN),
        Level::Error => line!(tracing::Level::ERROR),
    }
    Ok(())
}

impl UserData for Logger {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        for (method, level) in [
            ("debug", Level::Debug),
            ("info", Level::Info),
            ("warn", Level::Warn),
            ("error", Level::Error),
        ] {
            methods.add_method(method, move |_, logger, args: MultiValue| {
                Ok(match emit(logger, level, &args) {
                    Ok(()) => (true, None),
                    Err(e) => (false, Some(e)),
                })
            });
        }
        methods.add_method("with", |lua, logger, args: MultiValue| {
            let mut fields = (*logger.fields).clone();
            let dropped = match read_fields(&args, 0, "logger:with: fields", &mut fields) {
                Ok(n) => n,
                Err(e) => return Ok((LuaValue::Nil, Some(e))),
            };
            let child = Logger {
                fields: Arc::new(fields),
                dropped: logger.dropped + dropped,
                ..logger.clone()
            };
            Ok((LuaValue::UserData(lua.create_userdata(child)?), None))
        });
        methods.add_method("named", |lua, logger, args: MultiValue| {
            let name = match text_arg(&args, 0, "logger:named: name", MAX_NAME) {
                Ok(n) if n.is_empty() => {
                    return Ok((
                        LuaValue::Nil,
                        Some(WippyError::invalid("logger:named: name must not be empty")),
                    ))
                }
                Ok(n) => n,
                Err(e) => return Ok((LuaValue::Nil, Some(e))),
            };
            let path = if logger.name.is_empty() {
                name
            } else {
                {
                    let path = format!("{}.{name}", logger.name);
                    truncate(&path, MAX_NAME, path.len())
                }
            };
            let child = Logger {
                name: path,
                ..logger.clone()
            };
            Ok((LuaValue::UserData(lua.create_userdata(child)?), None))
        });
    }
}

/// The function the sandbox calls once per entry: `make_logger(entry)` → the entry's root
/// logger.
pub(crate) fn maker(lua: &Lua) -> mlua::Result<mlua::Function> {
    lua.create_function(|lua, entry: mlua::LuaString| -> mlua::Result<AnyUserData> {
        lua.create_userdata(Logger::root(&entry.to_string_lossy()))
    })
}

/// A placeholder table under the name `logger` in the module list, so `require` finds the
/// name; the sandbox returns the entry's logger in its place.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    lua.create_table()
}
