//! The `time` module: `time.after(d)` (a channel that yields the time once), `time.sleep(d)`,
//! `time.now()`.
//!
//! Durations are text (`"500ms"`, `"5s"`, `"1m30s"`) or a number of milliseconds. Times are
//! objects with `:unix()`, `:unix_milli()` and `:unix_nano()`, as in Wippy.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::channel::Chan;
use super::clock::time_value;
use super::{fail, Ret};
use crate::duration;

/// Builds the `time` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "after",
        lua.create_function(|lua, args: MultiValue| -> mlua::Result<Ret> {
            let d = match duration::from_lua(args.front().unwrap_or(&LuaValue::Nil)) {
                Ok(d) => d,
                Err(e) => return fail(format!("time.after: {e}")),
            };
            let chan = Chan::timer(tokio::time::Instant::now() + d);
            Ok((LuaValue::UserData(lua.create_userdata(chan)?), None))
        })?,
    )?;
    m.raw_set(
        "sleep",
        lua.create_async_function(|_, args: MultiValue| async move {
            let d = match duration::from_lua(args.front().unwrap_or(&LuaValue::Nil)) {
                Ok(d) => d,
                Err(e) => return fail(format!("time.sleep: {e}")),
            };
            tokio::time::sleep(d).await;
            super::ok_true()
        })?,
    )?;
    m.raw_set("now", lua.create_function(|lua, ()| time_value(lua))?)?;
    Ok(m)
}
