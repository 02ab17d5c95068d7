//! The `uuid` module (RFC 9562, which replaced RFC 4122): generation, validation, parsing and
//! formatting, on the `uuid` crate.
//!
//! - `v1()`, `v4()`, `v7()` → string. v7 IDs made by one wsrelay process sort by creation
//!   (the crate's shared counter orders IDs within a millisecond). v1 uses a random node ID,
//!   chosen once per process with the multicast bit set (RFC 9562 §6.10): the MAC address
//!   would name the host to every client that sees an ID.
//! - `v3(ns, name)` (MD5) and `v5(ns, name)` (SHA-1) are deterministic; `ns` is a UUID in any
//!   accepted form.
//! - `validate(any)` → boolean, never an error. `version(id)` → integer. `variant(id)` →
//!   `"RFC4122"`, `"Microsoft"`, `"Future"` or `"NCS"`.
//! - `parse(id)` → `{version, variant, timestamp?, node?}`: `timestamp` (Unix seconds, with
//!   a fraction) for v1, v6 and v7, `node` (12 hex digits) for v1 and v6.
//! - `format(id, "standard"|"simple"|"urn")`.
//!
//! Accepted input: hyphenated, simple (32 hex digits), `urn:uuid:` and braced forms. Errors:
//! INVALID for anything else (the text is named in the message, cut to 64 bytes).

use std::sync::OnceLock;

use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use uuid::{Uuid, Variant};

use super::errors::WippyError;
use super::{bytes_arg, hex, wippy_function, WippyFail};

/// Longer than any accepted form (`urn:uuid:` + 36), so longer input is refused unread.
const MAX_TEXT: usize = 64;

/// Parses the argument `index` as a UUID.
fn uuid_arg(args: &MultiValue, index: usize, what: &str) -> Result<Uuid, WippyError> {
    let text = bytes_arg(args, index, what, MAX_TEXT)?;
    let bytes = text.as_bytes();
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(|| {
            WippyError::invalid(format!(
                "{what}: not a UUID: {:?}",
                String::from_utf8_lossy(&bytes)
            ))
        })
}

/// This process's v1 node ID: random, multicast bit set.
fn node_id() -> [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    *NODE.get_or_init(|| {
        let mut id = [0u8; 6];
        // Without randomness a fixed ID still gives unique v1 IDs (time + clock sequence).
        let _ = getrandom::getrandom(&mut id);
        id[0] |= 0x01;
        id
    })
}

/// The variant's name as Wippy spells it.
fn variant_name(id: &Uuid) -> &'static str {
    match id.get_variant() {
        Variant::NCS => "NCS",
        Variant::RFC4122 => "RFC4122",
        Variant::Microsoft => "Microsoft",
        _ => "Future",
    }
}

/// A new ID as a Lua string (standard form).
fn text(lua: &Lua, id: Uuid) -> mlua::Result<LuaValue> {
    Ok(LuaValue::String(lua.create_string(
        id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
    )?))
}

/// `v3`/`v5`: a name-based ID in namespace `ns`.
fn named(
    lua: &Lua,
    args: &MultiValue,
    which: &str,
    make: fn(&Uuid, &[u8]) -> Uuid,
) -> Result<LuaValue, WippyFail> {
    let ns = uuid_arg(args, 0, &format!("uuid.{which}: namespace"))?;
    let name = bytes_arg(
        args,
        1,
        &format!("uuid.{which}: name"),
        crate::convert::limit(lua),
    )?;
    Ok(text(lua, make(&ns, &name.as_bytes()))?)
}

/// Builds the `uuid` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "v1",
        wippy_function(lua, |lua, ()| Ok(text(lua, Uuid::now_v1(&node_id()))?))?,
    )?;
    m.raw_set(
        "v4",
        wippy_function(lua, |lua, ()| Ok(text(lua, Uuid::new_v4())?))?,
    )?;
    m.raw_set(
        "v7",
        wippy_function(lua, |lua, ()| Ok(text(lua, Uuid::now_v7())?))?,
    )?;
    m.raw_set(
        "v3",
        wippy_function(lua, |lua, args: MultiValue| {
            named(lua, &args, "v3", Uuid::new_v3)
        })?,
    )?;
    m.raw_set(
        "v5",
        wippy_function(lua, |lua, args: MultiValue| {
            named(lua, &args, "v5", Uuid::new_v5)
        })?,
    )?;
    m.raw_set(
        "validate",
        lua.create_function(|_, args: MultiValue| {
            Ok(matches!(args.front(), Some(LuaValue::String(s))
                if s.as_bytes().len() <= MAX_TEXT
                    && std::str::from_utf8(&s.as_bytes()).is_ok_and(|t| Uuid::parse_str(t).is_ok())))
        })?,
    )?;
    m.raw_set(
        "version",
        wippy_function(lua, |_, args: MultiValue| {
            let id = uuid_arg(&args, 0, "uuid.version: id")?;
            Ok(LuaValue::Integer(id.get_version_num() as i64))
        })?,
    )?;
    m.raw_set(
        "variant",
        wippy_function(lua, |lua, args: MultiValue| {
            let id = uuid_arg(&args, 0, "uuid.variant: id")?;
            Ok(LuaValue::String(lua.create_string(variant_name(&id))?))
        })?,
    )?;
    m.raw_set(
        "parse",
        wippy_function(lua, |lua, args: MultiValue| {
            let id = uuid_arg(&args, 0, "uuid.parse: id")?;
            let t = lua.create_table()?;
            t.raw_set("version", id.get_version_num() as i64)?;
            t.raw_set("variant", variant_name(&id))?;
            if let Some(ts) = id.get_timestamp() {
                let (secs, nanos) = ts.to_unix();
                t.raw_set("timestamp", secs as f64 + f64::from(nanos) / 1e9)?;
            }
            if let Some(node) = id.get_node_id() {
                t.raw_set("node", hex(&node))?;
            }
            Ok(LuaValue::Table(t))
        })?,
    )?;
    m.raw_set(
        "format",
        wippy_function(lua, |lua, args: MultiValue| {
            let id = uuid_arg(&args, 0, "uuid.format: id")?;
            let form = bytes_arg(&args, 1, "uuid.format: format", 16)?;
            let mut buf = Uuid::encode_buffer();
            let out = match &*form.as_bytes() {
                b"standard" => id.hyphenated().encode_lower(&mut buf).to_owned(),
                b"simple" => id.simple().encode_lower(&mut buf).to_owned(),
                b"urn" => id.urn().encode_lower(&mut buf).to_owned(),
                other => {
                    return Err(WippyError::invalid(format!(
                        "uuid.format: format must be \"standard\", \"simple\" or \"urn\", got {:?}",
                        String::from_utf8_lossy(other)
                    ))
                    .into())
                }
            };
            Ok(LuaValue::String(lua.create_string(out)?))
        })?,
    )?;
    Ok(m)
}
