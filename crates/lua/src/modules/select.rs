//! `channel.select{cases}`: waits until one of the cases is ready and performs the first ready
//! one in the order given; returns `{channel = <the object>, value = ..., ok = ...}`.

use mlua::{Lua, Table, UserDataRef, Value as LuaValue};

use super::case::Case;

/// The `channel.select` function.
pub(crate) async fn select(lua: Lua, cases: Table) -> mlua::Result<Table> {
    let cases = collect(&cases)?;
    loop {
        // Wait futures first: a change between a failed try and the wait is not missed.
        let waits = cases
            .iter()
            .map(|case| case.changed())
            .collect::<mlua::Result<Vec<_>>>()?;
        for case in &cases {
            if let Some((value, ok)) = case.try_take(&lua)? {
                let result = lua.create_table_with_capacity(0, 3)?;
                result.raw_set("channel", case.object.clone())?;
                result.raw_set("value", value)?;
                result.raw_set("ok", ok)?;
                return Ok(result);
            }
        }
        futures_util::future::select_all(waits).await;
    }
}

/// The cases of the argument table, in order.
fn collect(cases: &Table) -> mlua::Result<Vec<UserDataRef<Case>>> {
    let mut list = Vec::new();
    for value in cases.sequence_values::<LuaValue>() {
        match value? {
            LuaValue::UserData(ud) if ud.is::<Case>() => list.push(ud.borrow::<Case>()?),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "channel.select: expected cases (ch:case_receive(), ch:case_send(v)), got {}",
                    other.type_name()
                )))
            }
        }
    }
    if list.is_empty() {
        return Err(mlua::Error::runtime("channel.select: no cases given"));
    }
    Ok(list)
}
