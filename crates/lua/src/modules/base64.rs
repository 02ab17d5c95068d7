//! The `base64` module: `base64.encode(s)` and `base64.decode(s)` → string, or `nil, err`
//! (INVALID), in the standard alphabet of RFC 4648 §4 with padding.
//!
//! Decoding is strict: padding is required and must be canonical, and whitespace is an
//! error, so one text has one meaning (a lenient decoder lets two different tokens decode to
//! the same bytes). The URL-safe alphabet (JWT segments) is not offered: Wippy's module has
//! none, and `crypto.jwt` decodes tokens itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::errors::WippyError;
use super::{bytes_arg, wippy_function};
use crate::convert;

/// Builds the `base64` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "encode",
        wippy_function(lua, |lua, args: MultiValue| {
            // The text is 4/3 of the input: bound the input so the text stays in the budget.
            let max = convert::limit(lua) / 4 * 3;
            let data = bytes_arg(&args, 0, "base64.encode: data", max)?;
            let text = STANDARD.encode(&*data.as_bytes());
            Ok(LuaValue::String(lua.create_string(text)?))
        })?,
    )?;
    m.raw_set(
        "decode",
        wippy_function(lua, |lua, args: MultiValue| {
            let text = bytes_arg(&args, 0, "base64.decode: text", convert::limit(lua))?;
            let bytes = STANDARD
                .decode(&*text.as_bytes())
                .map_err(|e| WippyError::invalid(format!("base64.decode: {e}")))?;
            Ok(LuaValue::String(lua.create_string(bytes)?))
        })?,
    )?;
    Ok(m)
}
