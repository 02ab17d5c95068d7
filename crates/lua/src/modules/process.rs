//! The `process` module (also a global): spawning, messages, monitors, links, names.
//!
//! PIDs are plain strings everywhere. Inside a `function.lua` call (an HTTP handler) there is
//! no current process: `spawn` and `send` work (the message has no sender), while functions
//! that need one (`pid`, `inbox`, `monitor`, `spawn_linked`, ...) return `nil, err`.

use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use wsrelay_process::{
    Context, Event, ExitResult, Message, Node, Pid, SendError, SpawnOptions, Value,
};

use super::channel::{Case, Source};
use super::{fail, ok_true, string_arg, Ret};
use crate::actor::{current, current_process, Actor, ProcState};
use crate::convert::{to_lua, to_value};

/// The process inbox (`process.inbox()`).
pub(crate) struct Inbox;

/// The process events stream (`process.events()`).
pub(crate) struct Events;

/// A received message (`msg:topic()`, `msg:from()`, `msg:payload()`).
pub(crate) struct MessageObj(Message);

/// A message payload (`payload:data()`).
pub(crate) struct Payload(Value);

impl MessageObj {
    pub(crate) fn new(msg: Message) -> MessageObj {
        MessageObj(msg)
    }
}

impl UserData for Inbox {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("receive", |lua, _this, ()| async move {
            let process = current_process().map_err(mlua::Error::runtime)?;
            let msg = process.ctx.recv().await;
            Ok((lua.create_userdata(MessageObj(msg))?, true))
        });
        methods.add_function("case_receive", |_, ud: mlua::AnyUserData| {
            Case::new_receive(ud, Source::Inbox)
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
        methods.add_function("case_receive", |_, ud: mlua::AnyUserData| {
            Case::new_receive(ud, Source::Events)
        });
    }
}

impl UserData for MessageObj {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("topic", |_, this, ()| Ok(this.0.topic().to_owned()));
        methods.add_method("from", |_, this, ()| {
            Ok(this.0.from().map(|p| p.as_str().to_owned()))
        });
        methods.add_method("payload", |_, this, ()| {
            Ok(Payload(this.0.payload().clone()))
        });
        methods.add_method("payloads", |lua, this, ()| {
            let t = lua.create_table()?;
            t.raw_push(Payload(this.0.payload().clone()))?;
            for extra in this.0.extra() {
                t.raw_push(Payload(extra.clone()))?;
            }
            Ok(t)
        });
    }
}

impl UserData for Payload {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("data", |lua, this, ()| to_lua(lua, &this.0));
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

// ===== functions =====

fn node_of(actor: &Option<Actor>) -> Result<Node, String> {
    actor
        .as_ref()
        .map(|a| a.node().clone())
        .ok_or_else(|| "not running in a Lua process or function".to_owned())
}

/// Resolves a PID text or a registered name.
fn resolve(node: &Node, dest: &str) -> Result<Pid, String> {
    node.resolve(dest).map_err(|e| e.to_string())
}

fn values(args: &[LuaValue]) -> Result<Vec<Value>, String> {
    args.iter().map(to_value).collect()
}

#[derive(Clone, Copy)]
enum SpawnKind {
    Plain,
    Monitored,
    Linked,
}

fn spawn(lua: &Lua, kind: SpawnKind, args: MultiValue) -> mlua::Result<Ret> {
    let args = args.into_vec();
    let entry = match string_arg(&args, 0, "process id") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let host = match string_arg(&args, 1, "host") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let spawn_args = match values(&args[2..]) {
        Ok(v) => v,
        Err(e) => return fail(format!("spawn arguments: {e}")),
    };
    let actor = current();
    let result = match (&actor, kind) {
        (Some(Actor::Process(p)), SpawnKind::Plain) => p.ctx.spawn_entry(&entry, &host, spawn_args),
        (Some(Actor::Process(p)), SpawnKind::Monitored) => {
            p.ctx.spawn_monitored(&entry, &host, spawn_args)
        }
        (Some(Actor::Process(p)), SpawnKind::Linked) => {
            p.ctx.spawn_linked(&entry, &host, spawn_args)
        }
        (Some(Actor::Call(c)), SpawnKind::Plain) => {
            c.node
                .spawn_entry(&entry, &host, SpawnOptions::new(), spawn_args)
        }
        _ => return fail("not running in a process"),
    };
    match result {
        Ok(pid) => Ok((LuaValue::String(lua.create_string(pid.as_str())?), None)),
        Err(e) => fail(e),
    }
}

fn send(args: MultiValue) -> mlua::Result<Ret> {
    let args = args.into_vec();
    let dest = match string_arg(&args, 0, "destination") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let topic = match string_arg(&args, 1, "topic") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut payloads = match values(args.get(2..).unwrap_or(&[])) {
        Ok(v) => v,
        Err(e) => return fail(format!("payload: {e}")),
    };
    let actor = current();
    let node = match node_of(&actor) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let to = match resolve(&node, &dest) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let payload = if payloads.is_empty() {
        Value::Null
    } else {
        payloads.remove(0)
    };
    let from = match &actor {
        Some(Actor::Process(p)) => Some(p.ctx.pid().clone()),
        _ => None,
    };
    if topic.starts_with('@') {
        return fail(SendError::ReservedTopic(topic));
    }
    let msg = Message::new(from, topic, payload).with_extra(payloads);
    match node.send(&to, msg) {
        Ok(()) => ok_true(),
        Err(e) => fail(e),
    }
}

/// Runs `op` with the current process and the PID (or name) in argument 0.
/// An operation of the calling process on one other process.
type TargetOp = fn(&Context, &Pid) -> Result<(), String>;

/// `process.monitor/unmonitor/link/unlink(pid)`: same arguments, same `true` or `nil, err`.
const TARGET_OPS: [(&str, TargetOp); 4] = [
    ("monitor", |ctx, pid| {
        ctx.monitor(pid).map_err(|e| e.to_string())
    }),
    ("unmonitor", |ctx, pid| {
        ctx.unmonitor(pid);
        Ok(())
    }),
    ("link", |ctx, pid| ctx.link(pid).map_err(|e| e.to_string())),
    ("unlink", |ctx, pid| {
        ctx.unlink(pid);
        Ok(())
    }),
];

fn with_target(
    args: MultiValue,
    op: impl FnOnce(&Context, &Pid) -> Result<(), String>,
) -> mlua::Result<Ret> {
    let args = args.into_vec();
    let process = match current_process() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let dest = match string_arg(&args, 0, "pid") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let target = match resolve(process.ctx.node(), &dest) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match op(&process.ctx, &target) {
        Ok(()) => ok_true(),
        Err(e) => fail(e),
    }
}

fn cancel(args: MultiValue) -> mlua::Result<Ret> {
    let args = args.into_vec();
    let actor = current();
    let node = match node_of(&actor) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let target = match string_arg(&args, 0, "pid").and_then(|d| resolve(&node, &d)) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let reason = match args.get(1).map(to_value).transpose() {
        Ok(r) => r.unwrap_or(Value::Null),
        Err(e) => return fail(format!("reason: {e}")),
    };
    let from = match &actor {
        Some(Actor::Process(p)) => Some(p.ctx.pid().clone()),
        _ => None,
    };
    match node.cancel(from.as_ref(), &target, reason) {
        Ok(()) => ok_true(),
        Err(e) => fail(e),
    }
}

fn terminate(args: MultiValue) -> mlua::Result<Ret> {
    let args = args.into_vec();
    let node = match node_of(&current()) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match string_arg(&args, 0, "pid")
        .and_then(|d| resolve(&node, &d))
        .and_then(|pid| node.terminate(&pid).map_err(|e| e.to_string()))
    {
        Ok(()) => ok_true(),
        Err(e) => fail(e),
    }
}

fn set_options(args: MultiValue) -> mlua::Result<Ret> {
    let process = match current_process() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Some(LuaValue::Table(options)) = args.front() else {
        return fail("set_options: expected a table of options");
    };
    let mut trap = None;
    for pair in options.pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        match (k.to_string()?.as_str(), v) {
            ("trap_links", LuaValue::Boolean(b)) => trap = Some(b),
            ("trap_links", other) => {
                return fail(format!(
                    "set_options: trap_links must be a boolean, got {}",
                    other.type_name()
                ))
            }
            (name, _) => return fail(format!("set_options: unknown option {name:?}")),
        }
    }
    if let Some(trap) = trap {
        process.trap_links.set(trap);
        process.ctx.set_trap_links(trap);
    }
    ok_true()
}

fn get_options(lua: &Lua, _: ()) -> mlua::Result<Ret> {
    let process = match current_process() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let t = lua.create_table()?;
    t.raw_set("trap_links", process.trap_links.get())?;
    Ok((LuaValue::Table(t), None))
}

/// `process.inbox()` / `process.events()`: the same object on every call.
fn stream(
    lua: &Lua,
    pick: fn(&ProcState) -> &std::cell::OnceCell<mlua::AnyUserData>,
    make: fn(&Lua) -> mlua::Result<mlua::AnyUserData>,
) -> mlua::Result<Ret> {
    let process: Rc<ProcState> = match current_process() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let cell = pick(&process);
    if cell.get().is_none() {
        let _ = cell.set(make(lua)?);
    }
    let ud = cell.get().cloned().map(LuaValue::UserData);
    Ok((ud.unwrap_or(LuaValue::Nil), None))
}

fn registry(lua: &Lua) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.raw_set(
        "register",
        lua.create_function(|_, args: MultiValue| {
            let args = args.into_vec();
            let process = match current_process() {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            match string_arg(&args, 0, "name")
                .and_then(|name| process.ctx.register(&name).map_err(|e| e.to_string()))
            {
                Ok(()) => ok_true(),
                Err(e) => fail(e),
            }
        })?,
    )?;
    r.raw_set(
        "lookup",
        lua.create_function(|lua, args: MultiValue| {
            let args = args.into_vec();
            let node = match node_of(&current()) {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            let name = match string_arg(&args, 0, "name") {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            match node.lookup(&name) {
                Some(pid) => Ok((LuaValue::String(lua.create_string(pid.as_str())?), None)),
                None => fail(format!("no process registered as {name:?}")),
            }
        })?,
    )?;
    r.raw_set(
        "unregister",
        lua.create_function(|_, args: MultiValue| {
            let args = args.into_vec();
            let process = match current_process() {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            match string_arg(&args, 0, "name")
                .and_then(|name| process.ctx.unregister(&name).map_err(|e| e.to_string()))
            {
                Ok(()) => ok_true(),
                Err(e) => fail(e),
            }
        })?,
    )?;
    Ok(r)
}

/// Builds the `process` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "spawn",
        lua.create_function(|lua, a: MultiValue| spawn(lua, SpawnKind::Plain, a))?,
    )?;
    m.raw_set(
        "spawn_monitored",
        lua.create_function(|lua, a: MultiValue| spawn(lua, SpawnKind::Monitored, a))?,
    )?;
    m.raw_set(
        "spawn_linked",
        lua.create_function(|lua, a: MultiValue| spawn(lua, SpawnKind::Linked, a))?,
    )?;
    m.raw_set("send", lua.create_function(|_, a: MultiValue| send(a))?)?;
    m.raw_set(
        "pid",
        lua.create_function(|_, ()| {
            Ok(match current() {
                Some(Actor::Process(p)) => Some(p.ctx.pid().as_str().to_owned()),
                _ => None,
            })
        })?,
    )?;
    m.raw_set(
        "inbox",
        lua.create_function(|lua, ()| stream(lua, |p| &p.inbox, |lua| lua.create_userdata(Inbox)))?,
    )?;
    m.raw_set(
        "events",
        lua.create_function(|lua, ()| {
            stream(lua, |p| &p.events, |lua| lua.create_userdata(Events))
        })?,
    )?;
    for (name, op) in TARGET_OPS {
        m.raw_set(
            name,
            lua.create_function(move |_, a: MultiValue| with_target(a, op))?,
        )?;
    }
    m.raw_set("cancel", lua.create_function(|_, a: MultiValue| cancel(a))?)?;
    m.raw_set(
        "terminate",
        lua.create_function(|_, a: MultiValue| terminate(a))?,
    )?;
    m.raw_set(
        "set_options",
        lua.create_function(|_, a: MultiValue| set_options(a))?,
    )?;
    m.raw_set("get_options", lua.create_function(get_options)?)?;
    m.raw_set("registry", registry(lua)?)?;
    let event = lua.create_table()?;
    event.raw_set("EXIT", "pid.exit")?;
    event.raw_set("LINK_DOWN", "pid.link.down")?;
    event.raw_set("CANCEL", "pid.cancel")?;
    m.raw_set("event", event)?;
    Ok(m)
}
