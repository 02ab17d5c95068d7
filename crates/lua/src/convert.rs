//! Lua values to and from runtime [`Value`]s.
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

use std::collections::HashMap;

use mlua::{Lua, Table, Value as LuaValue};
use wsrelay_process::{Map, Value};

/// Tables nested deeper than this are rejected (it also catches cycles).
const MAX_DEPTH: usize = 100;

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

/// Converts a Lua value into a payload.
pub(crate) fn to_value(value: &LuaValue) -> Result<Value, String> {
    to_value_at(value, 0)
}

fn to_value_at(value: &LuaValue, depth: usize) -> Result<Value, String> {
    Ok(match value {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Int(*i),
        LuaValue::Number(n) => Value::Float(*n),
        LuaValue::String(s) => {
            let bytes = s.as_bytes();
            match std::str::from_utf8(&bytes) {
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => Value::Bytes(bytes::Bytes::copy_from_slice(&bytes)),
            }
        }
        LuaValue::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err("table nested too deeply (or contains a cycle)".to_owned());
            }
            table_to_value(t, depth + 1)?
        }
        LuaValue::LightUserData(_) if value.is_null() => Value::Null,
        other => {
            return Err(format!(
                "cannot convert a {} to a message value",
                other.type_name()
            ))
        }
    })
}

/// The length of `t` if it is a sequence `1..n` with no other keys, else `None`.
pub(crate) fn array_len(t: &Table) -> Option<usize> {
    let n = t.raw_len();
    if n == 0 {
        return None;
    }
    // `for_each` walks the table in one protected call; `pairs` makes one per step.
    let mut count = 0usize;
    let walked = t.for_each::<LuaValue, LuaValue>(|k, _| match k {
        LuaValue::Integer(i) if i >= 1 && (i as usize) <= n => {
            count += 1;
            Ok(())
        }
        _ => Err(mlua::Error::runtime("not a sequence")),
    });
    (walked.is_ok() && count == n).then_some(n)
}

fn table_to_value(t: &Table, depth: usize) -> Result<Value, String> {
    if let Some(n) = array_len(t) {
        let mut items = Vec::with_capacity(n);
        for i in 1..=n {
            let v: LuaValue = t.raw_get(i).map_err(|e| e.to_string())?;
            items.push(to_value_at(&v, depth)?);
        }
        return Ok(Value::Array(items));
    }
    let mut map = Map::new();
    let mut failure = None;
    let walked = t.for_each::<LuaValue, LuaValue>(|k, v| {
        let converted = key_text(&k).and_then(|key| Ok((key, to_value_at(&v, depth)?)));
        match converted {
            Ok((key, value)) => {
                map.insert(key, value);
                Ok(())
            }
            Err(problem) => {
                failure = Some(problem);
                Err(mlua::Error::runtime("stop"))
            }
        }
    });
    if let Some(problem) = failure {
        return Err(problem);
    }
    walked.map_err(|e| e.to_string())?;
    Ok(Value::Map(map))
}

/// A table key as object key text.
pub(crate) fn key_text(key: &LuaValue) -> Result<String, String> {
    match key {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        LuaValue::Integer(i) => Ok(i.to_string()),
        LuaValue::Number(n) => Ok(n.to_string()),
        LuaValue::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "cannot use a {} as an object key",
            other.type_name()
        )),
    }
}

/// Converts a payload into a fresh Lua value.
pub(crate) fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
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
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Map(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map.iter() {
                set_field(lua, &t, k, to_lua(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Opaque(o) => to_lua(lua, &o.to_value())?,
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
