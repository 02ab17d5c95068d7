//! The `json` module: `json.encode(v)` → text or `nil, err`; `json.decode(s)` → value or
//! `nil, err`.
//!
//! Encoding: a table whose keys are exactly `1..n` (n ≥ 1) is an array; every other table,
//! including the empty table, is an object (so `metadata = {}` stays an object). Object keys
//! are sorted, numbers keep their Lua type (integer or float), and strings that are not UTF-8
//! have their invalid bytes replaced by U+FFFD, as Go's encoder does. NaN and infinities are
//! errors. Decoding is binary-safe (`"\u0000"` gives a string with a NUL byte); `null` becomes
//! `nil`.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use serde_json::Value as Json;

use super::{fail, Ret};
use crate::convert::{array_len, key_text};

const MAX_DEPTH: usize = 100;

/// Converts a Lua value to JSON.
pub(crate) fn to_json(value: &LuaValue) -> Result<Json, String> {
    to_json_at(value, 0)
}

fn to_json_at(value: &LuaValue, depth: usize) -> Result<Json, String> {
    Ok(match value {
        LuaValue::Nil => Json::Null,
        LuaValue::Boolean(b) => Json::Bool(*b),
        LuaValue::Integer(i) => Json::from(*i),
        LuaValue::Number(n) => serde_json::Number::from_f64(*n)
            .map(Json::Number)
            .ok_or_else(|| format!("cannot encode {n} as JSON"))?,
        LuaValue::String(s) => Json::String(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        LuaValue::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err("table nested too deeply (or contains a cycle)".to_owned());
            }
            if let Some(n) = array_len(t) {
                let mut items = Vec::with_capacity(n);
                for i in 1..=n {
                    let v: LuaValue = t.raw_get(i).map_err(|e| e.to_string())?;
                    items.push(to_json_at(&v, depth + 1)?);
                }
                Json::Array(items)
            } else {
                let mut map = serde_json::Map::new();
                for pair in t.pairs::<LuaValue, LuaValue>() {
                    let (k, v) = pair.map_err(|e| e.to_string())?;
                    map.insert(key_text(&k)?, to_json_at(&v, depth + 1)?);
                }
                Json::Object(map)
            }
        }
        LuaValue::LightUserData(_) if value.is_null() => Json::Null,
        other => return Err(format!("cannot encode a {} as JSON", other.type_name())),
    })
}

/// Converts JSON to a fresh Lua value.
pub(crate) fn from_json(lua: &Lua, json: &Json) -> mlua::Result<LuaValue> {
    Ok(match json {
        Json::Null => LuaValue::Nil,
        Json::Bool(b) => LuaValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => LuaValue::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                t.raw_set(k.as_str(), from_json(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Encodes a Lua value as JSON text.
pub(crate) fn encode(value: &LuaValue) -> Result<String, String> {
    let json = to_json(value)?;
    serde_json::to_string(&json).map_err(|e| e.to_string())
}

/// Builds the `json` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "encode",
        lua.create_function(|lua, args: MultiValue| -> mlua::Result<Ret> {
            match encode(args.front().unwrap_or(&LuaValue::Nil)) {
                Ok(text) => Ok((LuaValue::String(lua.create_string(text)?), None)),
                Err(e) => fail(format!("json.encode: {e}")),
            }
        })?,
    )?;
    m.raw_set(
        "decode",
        lua.create_function(|lua, args: MultiValue| -> mlua::Result<Ret> {
            let Some(LuaValue::String(text)) = args.front() else {
                let got = args.front().map_or("nothing", |v| v.type_name());
                return fail(format!("json.decode: expected a string, got {got}"));
            };
            match serde_json::from_slice::<Json>(&text.as_bytes()) {
                Ok(json) => Ok((from_json(lua, &json)?, None)),
                Err(e) => fail(format!("json.decode: {e}")),
            }
        })?,
    )?;
    Ok(m)
}
