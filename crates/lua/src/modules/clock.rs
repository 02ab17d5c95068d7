//! Points in time as Lua sees them: what `time.now()` returns and what a `time.after` channel
//! yields. Objects with `:unix()`, `:unix_milli()` and `:unix_nano()`, as in Wippy.

use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Lua, UserData, UserDataMethods, Value as LuaValue};

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
