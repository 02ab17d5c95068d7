//! Standard library functions implemented in Rust: the pattern functions of `string`
//! (`find`, `match`, `gmatch`, `gsub`) with a step budget, and `math.random`/`randomseed`
//! with a generator per actor ([`random`]).
//!
//! **Patterns.** The C implementations run entirely inside one C call: the instruction hook
//! never fires there, so a pathological pattern (`("a"):rep(22):find(("a*"):rep(22) .. "b")`)
//! holds its worker for hours and no time limit applies. These replace them in each worker
//! state (in the `string` table itself, so string methods use them too) with the same Lua
//! 5.4 semantics — matches, captures, anchors, `init`, the `gsub` replacement rules and the
//! error messages — and a per-call budget of matcher steps ([`matcher`]): past it, the call
//! fails with `pattern too complex`. `tests/lua_patterns.rs` checks them against the C
//! functions on generated subjects and patterns.
//!
//! **Wrappers.** The functions Lua code calls are small Lua wrappers (`glue.lua`), because a
//! Rust function cannot raise a plain string error (mlua raises error objects): the Rust side
//! returns `false, message` and the wrapper raises the message. One difference follows: when
//! a wrapper is *tail*-called (`return s:find(p)`), its caller's frame is gone, so an error
//! raised for that call has no `chunk:line:` prefix and names the function `'string.find'`
//! with arguments counted from the subject, where C Lua (whose C functions keep the caller's
//! frame) writes `chunk:line: bad argument #1 to 'find'`. The message itself is the same.

mod args;
mod matcher;
mod patterns;
pub(crate) mod random;
pub(crate) mod xoshiro;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

pub(crate) use args::Args;
pub(crate) use patterns::Limits;

/// The Lua wrappers around the Rust functions.
const GLUE: &str = include_str!("glue.lua");

/// The results of a Rust function for its wrapper: the values, or `false, message`.
fn reply(lua: &Lua, out: Result<MultiValue, String>) -> mlua::Result<MultiValue> {
    match out {
        Ok(values) => Ok(values),
        Err(message) => Ok(MultiValue::from_iter([
            LuaValue::Boolean(false),
            LuaValue::String(lua.create_string(message)?),
        ])),
    }
}

/// A Rust library function taking any arguments, for a wrapper.
fn function(
    lua: &Lua,
    body: impl Fn(&Lua, &[LuaValue]) -> Result<MultiValue, String> + 'static,
) -> mlua::Result<Function> {
    lua.create_function(move |lua, args: MultiValue| reply(lua, body(lua, &args.into_vec())))
}

/// Replaces the pattern functions of the state's `string` table (pattern `limits`) and the
/// random functions of its `math` table.
pub(crate) fn install(lua: &Lua, limits: Limits) -> mlua::Result<()> {
    let prim = lua.create_table()?;
    prim.raw_set(
        "find",
        function(lua, move |lua, args| {
            patterns::find(lua, args, limits, true)
        })?,
    )?;
    prim.raw_set(
        "match",
        function(lua, move |lua, args| {
            patterns::find(lua, args, limits, false)
        })?,
    )?;
    prim.raw_set("gmatch", function(lua, patterns::gmatch)?)?;
    prim.raw_set(
        "scan",
        lua.create_function(move |lua, args: patterns::ScanArgs| {
            reply(lua, patterns::scan(lua, args, limits))
        })?,
    )?;
    prim.raw_set(
        "gsub",
        function(lua, move |lua, args| patterns::gsub(lua, args, limits))?,
    )?;
    prim.raw_set("random", function(lua, random::random)?)?;
    prim.raw_set("randomseed", function(lua, random::randomseed)?)?;
    let globals = lua.globals();
    let table: Table = globals.get("table")?;
    lua.load(GLUE).set_name("=wsrelay-lua stdlib").call((
        prim,
        globals.get::<Table>("string")?,
        globals.get::<Table>("math")?,
        table.get::<Function>("concat")?,
    ))
}
