//! The `time` module: `time.after(d)` (a channel that yields the time once), `time.sleep(d)`,
//! `time.now()`.
//!
//! Durations are text (`"500ms"`, `"5s"`, `"1m30s"`) or a number of milliseconds. Times are
//! objects with `:unix()`, `:unix_milli()` and `:unix_nano()`, as in Wippy.

use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::channel::Chan;
use super::{fail, Ret};
use crate::duration;

/// A point in time.
pub(crate) struct Time(SystemTime);

impl Time {
    fn nanos(&self) -> i128 {
        match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }
}

impl UserData for Time {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("unix", |_, this, ()| {
            Ok((this.nanos() / 1_000_000_000) as i64)
        });
        methods.add_method("unix_milli", |_, this, ()| {
            Ok((this.nanos() / 1_000_000) as i64)
        });
        methods.add_method("unix_nano", |_, this, ()| Ok(this.nanos() as i64));
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            let n = this.nanos();
            Ok(format!(
                "{}.{:09}",
                n / 1_000_000_000,
                (n % 1_000_000_000).abs()
            ))
        });
    }
}

/// The current time as a Lua value.
pub(crate) fn time_value(lua: &Lua) -> mlua::Result<LuaValue> {
    Ok(LuaValue::UserData(
        lua.create_userdata(Time(SystemTime::now()))?,
    ))
}

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
