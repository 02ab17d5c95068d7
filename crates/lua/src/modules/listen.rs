//! `process.listen(topic, {message = bool})` / `process.unlisten(ch)`: messages sent to the
//! process on a topic go to a channel instead of the inbox (Wippy's semantics). The sorting
//! between the inbox and the channels is the process's [`Mailbox`](crate::mailbox::Mailbox).

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use wsrelay_process::Message;

use super::case::{Case, CaseKind, Op, Taken};
use super::errors::WippyError;
use super::inbox::{message_wait, queue_or_sorted_changed};
use super::WippyFail;
use crate::actor::current_process;
use crate::mailbox::ListenChan;

impl ListenChan {
    /// What the Lua code gets for `msg`: the message object, or its payload's data.
    fn value(&self, lua: &Lua, msg: &Message) -> mlua::Result<LuaValue> {
        let table = super::inbox::message(lua, msg)?;
        if self.0.whole {
            return Ok(LuaValue::Table(table));
        }
        let failed: LuaValue = table.raw_get(5)?;
        if let LuaValue::String(why) = failed {
            return Err(mlua::Error::runtime(why.to_string_lossy()));
        }
        table.raw_get(3)
    }

    fn try_take(&self, lua: &Lua) -> mlua::Result<Taken> {
        let process = current_process().map_err(mlua::Error::runtime)?;
        Ok(match process.mailbox.next_of(&process.ctx, &self.0) {
            Some(Some(msg)) => Some((self.value(lua, &msg)?, true)),
            Some(None) => Some((LuaValue::Nil, false)),
            None => None,
        })
    }
}

static LISTEN_CASE: CaseKind = CaseKind {
    try_take: |lua, object, _| object.borrow::<ListenChan>()?.clone().try_take(lua),
    changed: queue_or_sorted_changed,
};

impl UserData for ListenChan {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("receive", |lua, this, ()| async move {
            loop {
                let wait = message_wait()?;
                if let Some(got) = this.try_take(&lua)? {
                    return Ok(got);
                }
                wait.await;
            }
        });
        methods.add_function("case_receive", |_, ud: AnyUserData| {
            Case::new::<ListenChan>(ud, Op::Receive, &LISTEN_CASE)
        });
    }
}

/// `process.listen(topic, {message = bool}?)`.
pub(crate) fn listen(lua: &Lua, args: MultiValue) -> Result<LuaValue, WippyFail> {
    let topic = super::text_arg(&args, 0, "topic", 1024)?;
    if topic.is_empty() {
        return Err(WippyError::invalid("topic must not be empty").into());
    }
    if topic.starts_with('@') {
        return Err(
            WippyError::invalid(format!("topic {topic:?} is reserved (starts with '@')")).into(),
        );
    }
    let whole = match args.get(1) {
        None | Some(LuaValue::Nil) => false,
        Some(LuaValue::Table(options)) => options_message(options)?,
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "options must be a table, got {}",
                other.type_name()
            ))
            .into())
        }
    };
    let process = current_process().map_err(WippyError::invalid)?;
    let chan = process.mailbox.listen(topic, whole)?;
    Ok(LuaValue::UserData(lua.create_userdata(chan)?))
}

/// The `message` option (a boolean; absent is `false`).
fn options_message(options: &Table) -> Result<bool, WippyError> {
    let mut whole = false;
    for pair in options.pairs::<LuaValue, LuaValue>() {
        let (key, value) = pair.map_err(|e| WippyError::invalid(e.to_string()))?;
        match (key.to_string().unwrap_or_default().as_str(), value) {
            ("message", LuaValue::Boolean(b)) => whole = b,
            ("message", other) => {
                return Err(WippyError::invalid(format!(
                    "option message must be a boolean, got {}",
                    other.type_name()
                )))
            }
            (name, _) => {
                return Err(WippyError::invalid(format!("unknown option {name:?}")));
            }
        }
    }
    Ok(whole)
}

/// `process.unlisten(ch)`: `true`, also for a channel stopped before.
pub(crate) fn unlisten(_: &Lua, args: MultiValue) -> Result<LuaValue, WippyFail> {
    let Some(LuaValue::UserData(ud)) = args.front() else {
        return Err(WippyError::invalid("unlisten: expected a channel from process.listen").into());
    };
    let Ok(chan) = ud.borrow::<ListenChan>() else {
        return Err(WippyError::invalid("unlisten: expected a channel from process.listen").into());
    };
    let process = current_process().map_err(WippyError::invalid)?;
    process.mailbox.unlisten(&process.ctx, &chan.0);
    Ok(LuaValue::Boolean(true))
}
