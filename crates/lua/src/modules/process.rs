//! The `process` module (also a global): spawning, messages, monitors, links, names.
//!
//! PIDs are plain strings everywhere. Inside a `function.lua` call (an HTTP handler) there is
//! no current process: `spawn` and `send` work (the message has no sender), while functions
//! that need one (`pid`, `inbox`, `monitor`, `spawn_linked`, ...) return `nil, err`.
//!
//! Bodies are written with `?`: a failure becomes `nil, err` for Lua (see [`super::reply`]).
//! `process.listen` / `process.unlisten` (topic channels) live in [`super::listen`] and
//! return Wippy error objects.

use std::cell::RefCell;
use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};
use wsrelay_process::{Context, Message, Node, Pid, SendError, SpawnOptions, Unbuilt, Value};

use super::inbox::{Events, Inbox};
use super::{function, string_arg, Fail, SoftErr};
use crate::actor::{current, current_process, Actor};
use crate::convert::to_values;

/// The result of a function body.
type Out = Result<LuaValue, Fail>;

fn node_of(actor: &Option<Actor>) -> Result<Node, String> {
    actor
        .as_ref()
        .map(|a| a.node().clone())
        .ok_or_else(|| "not running in a Lua process or function".to_owned())
}

/// The PID of the calling process, if a process (not a function call) is running.
fn caller_pid(actor: &Option<Actor>) -> Option<Pid> {
    match actor {
        Some(Actor::Process(p)) => Some(p.ctx.pid().clone()),
        _ => None,
    }
}

/// Resolves a PID text or a registered name.
fn resolve(node: &Node, dest: &str) -> Result<Pid, String> {
    node.resolve(dest).map_err(|e| e.to_string())
}

/// Converts Lua arguments to payloads, within one budget; errors are prefixed with `what`.
fn values(lua: &Lua, args: &[LuaValue], what: &str) -> Result<Vec<Value>, Fail> {
    to_values(lua, args).map_err(|e| Fail::Soft(format!("{what}: {e}")))
}

fn pid_value(lua: &Lua, pid: &Pid) -> Out {
    Ok(LuaValue::String(lua.create_string(pid.as_str())?))
}

#[derive(Clone, Copy)]
enum SpawnKind {
    Plain,
    Monitored,
    Linked,
}

fn spawn(lua: &Lua, kind: SpawnKind, args: MultiValue) -> Out {
    let args = args.into_vec();
    let entry = string_arg(&args, 0, "process id")?;
    let host = string_arg(&args, 1, "host")?;
    let spawn_args = values(lua, args.get(2..).unwrap_or(&[]), "spawn arguments")?;
    let pid = match (&current(), kind) {
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
        _ => return Err("not running in a process".into()),
    }
    .soft()?;
    pid_value(lua, &pid)
}

/// What `process.send(dest, topic, payload, extra...)` does once its arguments are read (by
/// the C function [`crate::raw::send`]): the message goes from the calling process (none in
/// a function call) to `dest`, a PID text or a registered name. The receiver's shortcut may
/// take the payload `unbuilt`; otherwise `build` makes it and the extra payloads (`payload`
/// is `Value::Null` when none was given).
pub(crate) fn deliver(
    dest: &str,
    topic: &str,
    unbuilt: &dyn Unbuilt,
    build: impl FnOnce() -> Result<(Value, Vec<Value>), String>,
) -> Result<(), String> {
    let actor = current();
    let node = node_of(&actor)?;
    // PID texts through the thread's cache: a process sends to the same few PIDs over and
    // over (its clients). Names are looked up every time (they move between processes).
    let to = if dest.starts_with('{') {
        Pid::parse_cached(dest).map_err(|e| {
            SendError::BadDestination(dest.to_owned(), e.problem().to_owned()).to_string()
        })?
    } else {
        resolve(&node, dest)?
    };
    if topic.starts_with('@') {
        return Err(SendError::ReservedTopic(topic.to_owned()).to_string());
    }
    let from = caller_pid(&actor);
    let build = || {
        let (payload, extra) = build().map_err(Failed)?;
        Ok(Message::new(from.clone(), topic_text(topic), payload).with_extra(extra))
    };
    node.send_lazy(from.as_ref(), &to, topic, unbuilt, build)
        .map_err(|Failed(e)| e)
}

/// Why a send failed, as `process.send` reports it.
struct Failed(String);

impl From<SendError> for Failed {
    fn from(e: SendError) -> Failed {
        Failed(e.to_string())
    }
}

/// Topics recently sent from this thread, shared by their messages: a process sends the same
/// few topics over and over, and a fresh text per message was an allocation and a free.
const TOPIC_CACHE: usize = 8;

thread_local! {
    static TOPICS: RefCell<(Vec<Arc<str>>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// `topic` as a shared text, from [`TOPICS`] when it was sent lately (the oldest entry makes
/// way for a new one).
fn topic_text(topic: &str) -> Arc<str> {
    TOPICS.with(|topics| {
        let mut topics = topics.borrow_mut();
        let (cached, next) = &mut *topics;
        if let Some(hit) = cached.iter().find(|t| ***t == *topic) {
            return hit.clone();
        }
        let text: Arc<str> = Arc::from(topic);
        if cached.len() < TOPIC_CACHE {
            cached.push(text.clone());
        } else {
            cached[*next] = text.clone();
            *next = (*next + 1) % TOPIC_CACHE;
        }
        text
    })
}

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

/// Runs `op` with the current process and the PID (or name) in argument 0.
fn with_target(args: MultiValue, op: TargetOp) -> Out {
    let args = args.into_vec();
    let process = current_process()?;
    let target = resolve(process.ctx.node(), &string_arg(&args, 0, "pid")?)?;
    op(&process.ctx, &target)?;
    Ok(LuaValue::Boolean(true))
}

fn cancel(lua: &Lua, args: MultiValue) -> Out {
    let args = args.into_vec();
    let actor = current();
    let node = node_of(&actor)?;
    let target = resolve(&node, &string_arg(&args, 0, "pid")?)?;
    let reason = values(lua, args.get(1..2).unwrap_or(&[]), "reason")?
        .pop()
        .unwrap_or(Value::Null);
    node.cancel(caller_pid(&actor).as_ref(), &target, reason)
        .soft()?;
    Ok(LuaValue::Boolean(true))
}

fn terminate(args: MultiValue) -> Out {
    let args = args.into_vec();
    let node = node_of(&current())?;
    let pid = resolve(&node, &string_arg(&args, 0, "pid")?)?;
    node.terminate(&pid).soft()?;
    Ok(LuaValue::Boolean(true))
}

fn set_options(args: MultiValue) -> Out {
    let process = current_process()?;
    let Some(LuaValue::Table(options)) = args.front() else {
        return Err("set_options: expected a table of options".into());
    };
    let mut trap = None;
    for pair in options.pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        match (k.to_string()?.as_str(), v) {
            ("trap_links", LuaValue::Boolean(b)) => trap = Some(b),
            ("trap_links", other) => {
                return Err(format!(
                    "set_options: trap_links must be a boolean, got {}",
                    other.type_name()
                )
                .into())
            }
            (name, _) => return Err(format!("set_options: unknown option {name:?}").into()),
        }
    }
    if let Some(trap) = trap {
        process.trap_links.set(trap);
        process.ctx.set_trap_links(trap);
    }
    Ok(LuaValue::Boolean(true))
}

fn get_options(lua: &Lua) -> Out {
    let process = current_process()?;
    let t = lua.create_table()?;
    t.raw_set("trap_links", process.trap_links.get())?;
    Ok(LuaValue::Table(t))
}

/// The name argument of a `process.registry` function.
fn name_arg(args: MultiValue) -> Result<String, String> {
    string_arg(&args.into_vec(), 0, "name")
}

fn registry(lua: &Lua) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.raw_set(
        "register",
        function(lua, |_, args: MultiValue| {
            current_process()?.ctx.register(&name_arg(args)?).soft()?;
            Ok(LuaValue::Boolean(true))
        })?,
    )?;
    r.raw_set(
        "lookup",
        function(lua, |lua, args: MultiValue| {
            let node = node_of(&current())?;
            let name = name_arg(args)?;
            match node.lookup(&name) {
                Some(pid) => pid_value(lua, &pid),
                None => Err(format!("no process registered as {name:?}").into()),
            }
        })?,
    )?;
    r.raw_set(
        "unregister",
        function(lua, |_, args: MultiValue| {
            current_process()?.ctx.unregister(&name_arg(args)?).soft()?;
            Ok(LuaValue::Boolean(true))
        })?,
    )?;
    Ok(r)
}

/// Builds the `process` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    for (name, kind) in [
        ("spawn", SpawnKind::Plain),
        ("spawn_monitored", SpawnKind::Monitored),
        ("spawn_linked", SpawnKind::Linked),
    ] {
        m.raw_set(
            name,
            function(lua, move |lua, a: MultiValue| spawn(lua, kind, a))?,
        )?;
    }
    m.raw_set("send", crate::raw::send_function(lua)?)?;
    m.raw_set(
        "pid",
        lua.create_function(|_, ()| Ok(caller_pid(&current()).map(|p| p.as_str().to_owned())))?,
    )?;
    // The inbox and the events stream carry no process (their methods look at the running
    // one), so one object of each serves every process of the state. `process.inbox()` is a
    // Lua function returning it: the same object on every call (`result.channel == inbox`
    // works after a select), with no call into Rust and nothing kept per process.
    let constant: Function = lua
        .load("local value = ... return function() return value end")
        .set_name("=wsrelay-lua process streams")
        .into_function()?;
    m.raw_set(
        "inbox",
        constant.call::<Function>(lua.create_userdata(Inbox)?)?,
    )?;
    m.raw_set(
        "events",
        constant.call::<Function>(lua.create_userdata(Events)?)?,
    )?;
    for (name, op) in TARGET_OPS {
        m.raw_set(
            name,
            function(lua, move |_, a: MultiValue| with_target(a, op))?,
        )?;
    }
    m.raw_set("listen", super::wippy_function(lua, super::listen::listen)?)?;
    m.raw_set(
        "unlisten",
        super::wippy_function(lua, super::listen::unlisten)?,
    )?;
    m.raw_set("cancel", function(lua, cancel)?)?;
    m.raw_set("terminate", function(lua, |_, a: MultiValue| terminate(a))?)?;
    m.raw_set(
        "set_options",
        function(lua, |_, a: MultiValue| set_options(a))?,
    )?;
    m.raw_set("get_options", function(lua, |lua, ()| get_options(lua))?)?;
    m.raw_set("registry", registry(lua)?)?;
    let event = lua.create_table()?;
    event.raw_set("EXIT", "pid.exit")?;
    event.raw_set("LINK_DOWN", "pid.link.down")?;
    event.raw_set("CANCEL", "pid.cancel")?;
    m.raw_set("event", event)?;
    Ok(m)
}
