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
use crate::convert::{self, to_json};

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

/// Encodes a Lua value as JSON text (within the conversion budget, see [`crate::convert`]).
pub(crate) fn encode(lua: &Lua, value: &LuaValue) -> Result<String, String> {
    let json = to_json(lua, value).map_err(|e| e.to_string())?;
    serde_json::to_string(&json).map_err(|e| e.to_string())
}

/// Builds the `json` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "encode",
        lua.create_function(|lua, args: MultiValue| -> mlua::Result<Ret> {
            match encode(lua, args.front().unwrap_or(&LuaValue::Nil)) {
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
            let limit = convert::limit(lua);
            if text.as_bytes().len() > limit {
                // The parsed form is Rust memory, a few times the text: bounded as a value.
                return fail(format!(
                    "json.decode: text over {limit} bytes (max_value_size)"
                ));
            }
            match serde_json::from_slice::<Json>(&text.as_bytes()) {
                Ok(json) => Ok((from_json(lua, &json)?, None)),
                Err(e) => fail(format!("json.decode: {e}")),
            }
        })?,
    )?;
    Ok(m)
}
