//! What a process receives: the inbox (`process.inbox()`), the events stream
//! (`process.events()`), messages and their payloads, and the Lua form of events.

use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods};
use wsrelay_process::{Event, ExitResult, Message};

use super::case::{Case, CaseKind, Changed, Op};
use crate::actor::current_process;
use crate::convert::to_lua;
use crate::raw;
use crate::resume;

/// The process inbox (`process.inbox()`).
pub(crate) struct Inbox;

/// The process events stream (`process.events()`).
pub(crate) struct Events;

/// The methods of received messages and their payloads. A message is a plain table
/// `{topic, from, data, extra payloads, error}` that is also the object of its first payload
/// (`msg:payload()` is the message itself, and `:data()` its data); an extra payload is a
/// table `{data, error}`. `error` is set instead of `data` when the data did not fit the
/// process's memory: reading it raises. Built in one step by [`raw::message`]; the methods are
/// Lua functions, so reading a message costs no call into Rust.
const MESSAGE_METHODS: &str = r#"
local message = {}
message.__index = message
message.__metatable = false
function message.topic(m) return m[1] end
function message.from(m) return m[2] end
function message.payload(m) return m end
function message.data(m)
  local failed = m[5]
  if failed then error(failed, 2) end
  return m[3]
end
function message.payloads(m)
  local all, extra = { m }, m[4]
  if extra then
    for i = 1, #extra do all[i + 1] = extra[i] end
  end
  return all
end
local payload = {}
payload.__index = payload
payload.__metatable = false
function payload.data(p)
  local failed = p[2]
  if failed then error(failed, 2) end
  return p[1]
end
return message, payload
"#;

/// Creates the message and payload metatables of the state `lua`.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let (message, payload): (Table, Table) = lua
        .load(MESSAGE_METHODS)
        .set_name("=wsrelay-lua messages")
        .call(())?;
    let metas = raw::Metatables::new(lua, message, payload)?;
    lua.set_app_data(metas);
    Ok(())
}

/// The Lua form of `msg` (see [`MESSAGE_METHODS`]).
pub(crate) fn message(lua: &Lua, msg: &Message) -> mlua::Result<Table> {
    let metas = lua
        .app_data_ref::<raw::Metatables>()
        .ok_or_else(|| mlua::Error::runtime("the message metatables are not installed"))?
        .handle();
    raw::message(lua, &metas, msg)
}

/// `inbox:receive()`'s look through mlua, for what its C function leaves to it (see
/// [`raw::receive_function`]): the next inbox message, or `nil` after arranging for the task
/// to be woken by the next change of the process's queues.
fn try_receive(lua: &Lua, _: AnyUserData) -> mlua::Result<Option<Table>> {
    try_receive_again(lua)
}

/// [`try_receive`] after a wait, when its argument was checked before.
fn try_receive_again(lua: &Lua) -> mlua::Result<Option<Table>> {
    let process = current_process().map_err(mlua::Error::runtime)?;
    // Before looking: a message that arrives after the look wakes the task.
    resume::with_waker(|waker| {
        process.ctx.wake_on_change(waker);
        process.mailbox.wake_on_change(waker);
    });
    match process.mailbox.next_inbox(&process.ctx) {
        Some(msg) => Ok(Some(message(lua, &msg)?)),
        None => Ok(None),
    }
}

impl UserData for Inbox {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        // Looked up after the methods below: holds `receive`, a C closure (`raw::receive_function`).
        fields.add_meta_field_with(MetaMethod::Index, |lua| {
            let (message_meta, payload_meta, strings) = lua
                .app_data_ref::<raw::Metatables>()
                .ok_or_else(|| mlua::Error::runtime("the message metatables are not installed"))?
                .tables();
            let receive = raw::receive_function(
                lua,
                message_meta,
                payload_meta,
                strings,
                raw::SlowPath {
                    first: lua.create_function(try_receive)?,
                    again: lua.create_function(|lua, ()| try_receive_again(lua))?,
                },
            )?;
            let index = lua.create_table_with_capacity(0, 1)?;
            index.raw_set("receive", receive)?;
            Ok(index)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function("case_receive", |_, ud: AnyUserData| {
            Case::new::<Inbox>(ud, Op::Receive, &INBOX_CASE)
        });
    }
}

impl UserData for Events {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("receive", |lua, _this, ()| async move {
            let process = current_process().map_err(mlua::Error::runtime)?;
            let event = process.ctx.next_event().await;
            Ok((event_table(&lua, &event)?, true))
        });
        methods.add_function("case_receive", |_, ud: AnyUserData| {
            Case::new::<Events>(ud, Op::Receive, &EVENTS_CASE)
        });
    }
}

/// The Lua form of an event: `{kind, from, result = {value, error}}`, or for a cancel
/// `{kind = "pid.cancel", from, reason}`.
pub(crate) fn event_table(lua: &Lua, event: &Event) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 3)?;
    t.raw_set("kind", event.kind())?;
    if let Some(from) = event.from() {
        t.raw_set("from", from.as_str())?;
    }
    match event {
        Event::Exit { result, .. } | Event::LinkDown { result, .. } => {
            t.raw_set("result", result_table(lua, result)?)?;
        }
        Event::Cancel { reason, .. } => t.raw_set("reason", to_lua(lua, reason)?)?,
    }
    Ok(t)
}

fn result_table(lua: &Lua, result: &ExitResult) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("value", to_lua(lua, &result.value)?)?;
    if let Some(error) = &result.error {
        t.raw_set("error", &**error)?;
    }
    Ok(t)
}

/// Any change of the running process's queues (a message or an event arrived).
fn process_changed(_: &AnyUserData) -> mlua::Result<Changed> {
    // Created now, before `channel.select` checks the cases.
    Ok(Box::pin(
        current_process()
            .map_err(mlua::Error::runtime)?
            .ctx
            .changed(),
    ))
}

/// The inbox in `channel.select`: ready when a message is queued.
static INBOX_CASE: CaseKind = CaseKind {
    try_take: |lua, _, _| {
        let process = current_process().map_err(mlua::Error::runtime)?;
        match process.mailbox.next_inbox(&process.ctx) {
            Some(msg) => Ok(Some((mlua::Value::Table(message(lua, &msg)?), true))),
            None => Ok(None),
        }
    },
    changed: queue_or_sorted_changed,
};

/// Any change of the running process's queue, or a move by its mailbox's sorting (another
/// reader of the process took messages out of the queue for the inbox or a listen channel).
pub(crate) fn queue_or_sorted_changed(_: &AnyUserData) -> mlua::Result<Changed> {
    message_wait()
}

/// Completes at the next change of the running process's queue or its mailbox's sorting
/// (created before the queues are checked).
pub(crate) fn message_wait() -> mlua::Result<Changed> {
    let process = current_process().map_err(mlua::Error::runtime)?;
    let queue = process.ctx.changed();
    let sorted = process.mailbox.changed();
    Ok(Box::pin(async move {
        futures_util::future::select(queue, sorted).await;
    }))
}

/// The events stream in `channel.select`: ready when an event is queued.
static EVENTS_CASE: CaseKind = CaseKind {
    try_take: |lua, _, _| {
        let process = current_process().map_err(mlua::Error::runtime)?;
        match process.ctx.try_next_event() {
            Some(event) => Ok(Some((mlua::Value::Table(event_table(lua, &event)?), true))),
            None => Ok(None),
        }
    },
    changed: process_changed,
};
