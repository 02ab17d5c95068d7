//! Lua values to and from runtime [`Value`]s (and to JSON), with a size budget.
//!
//! Payloads cross between processes as [`Value`]s, so a table sent by one process arrives as
//! a fresh copy in the other. The mapping:
//!
//! | Lua | Value |
//! |---|---|
//! | `nil` | `Null` |
//! | boolean, integer, float | `Bool`, `Int`, `Float` |
//! | string | `String` if it is UTF-8, `Bytes` otherwise (binary-safe both ways) |
//! | table with keys `1..n` only (n ≥ 1) | `Array` |
//! | any other table (including the empty table) | `Map` (number keys become text) |
//! | function, userdata, thread | error |
//!
//! **Budget.** A converted value lives in Rust memory, outside the Lua state's limits, so
//! every conversion out of Lua (message payloads, spawn arguments, cancel reasons, return
//! values, `json.encode`, `res:write_json`) counts what it produces against
//! `EngineConfig::max_value_size`: each value counts [`NODE_COST`] bytes plus the bytes of its
//! string, each map key its bytes. Past the limit the conversion fails (`nil, err` for the
//! Lua caller).
//!
//! **Shared subtables** (the same table reached twice) are converted once: the second time
//! it is met its conversion is kept, and later occurrences copy it, each occurrence counting
//! against the budget. So `t = {t, t}` repeated 25 times costs 25 table walks and fails on
//! the budget long before its 2^25 copies would fill memory. A table that contains itself
//! (a cycle) is an error.

use std::collections::HashMap;

use mlua::{Lua, Table, Value as LuaValue};
use serde_json::Value as Json;
use wsrelay_process::{Map, Value};

pub(crate) use crate::budget::ConvertError;
use crate::raw::{self, Scalar, Sink};

/// Map keys up to this length are kept as Lua strings, see [`KeyCache`].
const CACHED_KEY_LEN: usize = 32;
/// At most this many keys are kept per Lua state.
const CACHED_KEYS: usize = 1024;

/// The Lua strings of map keys already seen, per Lua state (its app data).
///
/// Under a memory limit every string mlua creates is a protected call; payloads repeat their
/// keys (`client_pid`, `type`, `data`, `metadata` on every relayed frame), so pushing a kept
/// string instead saves a protected call per field (measured: about 10% of the instructions
/// of a Lua echo round trip).
#[derive(Default)]
struct KeyCache(HashMap<Box<str>, mlua::LuaString>);

/// The size budget of conversions in a Lua state (its app data), from
/// `EngineConfig::max_value_size`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueLimit(pub(crate) usize);

/// The budget of the state `lua` (unlimited if none was set).
pub(crate) fn limit(lua: &Lua) -> usize {
    lua.app_data_ref::<ValueLimit>().map_or(usize::MAX, |l| l.0)
}

/// Converts a Lua value into a payload.
pub(crate) fn to_value(lua: &Lua, value: &LuaValue) -> Result<Value, ConvertError> {
    let mut out = raw::read(lua, std::slice::from_ref(value), ValueBuild, limit(lua))?;
    Ok(out.pop().unwrap_or_default())
}

/// Converts the values of one call (the payloads of a send, spawn arguments) within one
/// budget.
pub(crate) fn to_values(lua: &Lua, values: &[LuaValue]) -> Result<Vec<Value>, ConvertError> {
    raw::read(lua, values, ValueBuild, limit(lua))
}

/// Converts a Lua value into JSON (see the `json` module for the rules).
pub(crate) fn to_json(lua: &Lua, value: &LuaValue) -> Result<Json, ConvertError> {
    let mut out = raw::read(lua, std::slice::from_ref(value), JsonBuild, limit(lua))?;
    Ok(out.pop().unwrap_or(Json::Null))
}

/// To payload [`Value`]s.
pub(crate) struct ValueBuild;

impl Sink for ValueBuild {
    type Out = Value;

    fn scalar(&self, value: Scalar<'_>) -> Result<Value, String> {
        Ok(match value {
            Scalar::Nil | Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::Int(i),
            Scalar::Float(n) => Value::Float(n),
            Scalar::Str(bytes) => match crate::raw::utf8(bytes) {
                Some(text) => Value::String(text.to_owned()),
                None => Value::Bytes(bytes::Bytes::copy_from_slice(bytes)),
            },
            Scalar::Other(name) => {
                return Err(format!("cannot convert a {name} to a message value"))
            }
        })
    }

    fn array(&self, items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn map(&self, entries: Vec<(String, Value)>) -> Value {
        Value::Map(Map::from(entries))
    }
}

/// To JSON: non-finite numbers are errors, invalid UTF-8 is replaced (as Go's encoder does).
struct JsonBuild;

impl Sink for JsonBuild {
    type Out = Json;

    fn scalar(&self, value: Scalar<'_>) -> Result<Json, String> {
        Ok(match value {
            Scalar::Nil | Scalar::Null => Json::Null,
            Scalar::Bool(b) => Json::Bool(b),
            Scalar::Int(i) => Json::from(i),
            Scalar::Float(n) => serde_json::Number::from_f64(n)
                .map(Json::Number)
                .ok_or_else(|| format!("cannot encode {n} as JSON"))?,
            Scalar::Str(bytes) => Json::String(String::from_utf8_lossy(bytes).into_owned()),
            Scalar::Other(name) => return Err(format!("cannot encode a {name} as JSON")),
        })
    }

    fn array(&self, items: Vec<Json>) -> Json {
        Json::Array(items)
    }

    fn map(&self, entries: Vec<(String, Json)>) -> Json {
        Json::Object(entries.into_iter().collect())
    }
}

/// Converts a payload into a fresh Lua value: in one protected call when the state has room
/// for it ([`crate::raw::value`]), else step by step ([`to_lua_stepwise`]).
pub(crate) fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    crate::raw::value(lua, value)
}

/// [`to_lua`] through mlua's API, one protected call per table and field: safe at any
/// memory level, since each step reports its own allocation failure.
pub(crate) fn to_lua_stepwise(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(f) => LuaValue::Number(*f),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Bytes(b) => LuaValue::String(lua.create_string(b)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua_stepwise(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Map(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map.iter() {
                set_field(lua, &t, k, to_lua_stepwise(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Opaque(o) => to_lua_stepwise(lua, &o.to_value())?,
    })
}

/// `t[key] = value`, with `key` from the state's [`KeyCache`] when it is short.
fn set_field(lua: &Lua, t: &Table, key: &str, value: LuaValue) -> mlua::Result<()> {
    if key.len() > CACHED_KEY_LEN {
        return t.raw_set(key, value);
    }
    if let Some(cache) = lua.app_data_ref::<KeyCache>() {
        if let Some(cached) = cache.0.get(key) {
            return t.raw_set(cached, value);
        }
    }
    let interned = lua.create_string(key)?;
    t.raw_set(&interned, value)?;
    match lua.app_data_mut::<KeyCache>() {
        Some(mut cache) => {
            if cache.0.len() < CACHED_KEYS {
                cache.0.insert(key.into(), interned);
            }
        }
        None => {
            let mut cache = KeyCache::default();
            cache.0.insert(key.into(), interned);
            lua.set_app_data(cache);
        }
    }
    Ok(())
}
