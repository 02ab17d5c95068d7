//! The `pg` module: process groups (Wippy's `pg`, on the runtime's [`GroupScope`]).
//!
//! `pg.open(scope)` opens a `pg.scope` entry and returns an instance with `join`, `leave`,
//! `get_members`, `get_local_members`, `which_groups`, `which_local_groups`, `broadcast`,
//! `broadcast_local`, `monitor`, `events` and `release`. A process joins a group as many times
//! as it likes and must leave it as many times (multi-join); its memberships end when it
//! exits. `monitor` and `events` return a subscription (its channel yields the membership
//! changes, see [`GroupWatch`]) with an atomic snapshot; the subscriptions a process opened
//! are closed when it ends. Errors are Wippy error objects: INVALID for bad arguments, a
//! released instance or no membership, INTERNAL for a missing scope.
//!
//! Our addition to Wippy's API: `join` and `leave` take an optional PID (or list of PIDs) of
//! a local process to join instead of the caller, as Erlang's `pg:join/3` does. A relay target
//! joins the connections it serves, and `g:broadcast(group, "ws.send", frame)` then converts
//! the frame once and encodes it once for all their sockets.
//!
//! In a cluster, groups span the nodes: `get_members`, `which_groups` and `broadcast` see
//! members on every node, the `_local` variants only this node's.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use wsrelay_process::{GroupEvent, GroupScope, GroupWatch, Message, Node, Pid, Value};

use super::case::Changed;
use super::errors::WippyError;
use super::subscription::{subscription, Source};
use super::{string_arg, WippyFail};
use crate::actor::{current, current_process, Actor};
use crate::convert::to_values;

/// An open scope (`pg.open`).
struct Instance {
    scope: GroupScope,
    released: Cell<bool>,
}

/// The result of a method body.
type Out = Result<LuaValue, WippyFail>;

/// An INVALID error from a text (argument checks).
fn invalid(text: impl std::fmt::Display) -> WippyFail {
    WippyFail::Soft(WippyError::invalid(text))
}

impl Instance {
    /// The scope, unless the instance was released.
    fn scope(&self) -> Result<&GroupScope, WippyFail> {
        if self.released.get() {
            return Err(invalid("the pg instance was released"));
        }
        Ok(&self.scope)
    }
}

/// The node of the running process or call.
fn node() -> Result<Node, WippyFail> {
    current()
        .map(|actor| actor.node().clone())
        .ok_or_else(|| invalid("not running in a Lua process or function"))
}

/// The calling process's PID (none in a function call).
fn caller() -> Option<Pid> {
    match current() {
        Some(Actor::Process(p)) => Some(p.ctx.pid().clone()),
        _ => None,
    }
}

/// The string argument `index` named `what`; INVALID if absent, empty or not a string.
fn text(args: &[LuaValue], index: usize, what: &str) -> Result<String, WippyFail> {
    let text = string_arg(args, index, what).map_err(invalid)?;
    if text.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    Ok(text)
}

/// Group names from a name or a non-empty list of names.
fn names(value: Option<&LuaValue>) -> Result<Vec<String>, WippyFail> {
    let list = match value {
        Some(v @ LuaValue::String(_)) => {
            vec![string_arg(std::slice::from_ref(v), 0, "group").map_err(invalid)?]
        }
        Some(LuaValue::Table(t)) => t
            .sequence_values::<LuaValue>()
            .map(|v| string_arg(&[v?], 0, "group").map_err(invalid))
            .collect::<Result<Vec<_>, WippyFail>>()?,
        None | Some(LuaValue::Nil) => return Err(invalid("group is required")),
        Some(other) => {
            return Err(invalid(format!(
                "group must be a string or a list, got {}",
                other.type_name()
            )))
        }
    };
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(invalid("group names must not be empty"));
    }
    Ok(list)
}

/// The processes to join or leave: the given PID(s), or the caller.
fn members(node: &Node, value: Option<&LuaValue>) -> Result<Vec<Pid>, WippyFail> {
    let texts = match value {
        None | Some(LuaValue::Nil) => {
            return caller()
                .map(|pid| vec![pid])
                .ok_or_else(|| invalid("not running in a process (give the PID to join)"))
        }
        Some(LuaValue::Table(t)) => t
            .sequence_values::<LuaValue>()
            .map(|v| string_arg(&[v?], 0, "pid").map_err(invalid))
            .collect::<Result<Vec<_>, WippyFail>>()?,
        Some(v) => vec![string_arg(std::slice::from_ref(v), 0, "pid").map_err(invalid)?],
    };
    texts
        .iter()
        .map(|text| node.resolve(text).map_err(invalid))
        .collect()
}

/// A Lua array of PID strings.
fn pid_list(lua: &Lua, pids: &[Pid]) -> mlua::Result<Table> {
    lua.create_sequence_from(pids.iter().map(|p| p.as_str().to_owned()))
}

fn join(this: &Instance, args: &[LuaValue]) -> Out {
    let scope = this.scope()?;
    let groups = names(args.first())?;
    let pids = members(&node()?, args.get(1))?;
    for group in &groups {
        for pid in &pids {
            scope.join(group, pid).map_err(invalid)?;
        }
    }
    Ok(LuaValue::Boolean(true))
}

/// Best effort over a list (Wippy): an error only if no membership was left at all.
fn leave(this: &Instance, args: &[LuaValue]) -> Out {
    let scope = this.scope()?;
    let groups = names(args.first())?;
    let pids = members(&node()?, args.get(1))?;
    let mut left = 0usize;
    let mut first_error = None;
    for group in &groups {
        for pid in &pids {
            match scope.leave(group, pid) {
                Ok(()) => left += 1,
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    match (left, first_error) {
        (0, Some(error)) => Err(invalid(error)),
        _ => Ok(LuaValue::Boolean(true)),
    }
}

/// `broadcast` (members on every node) or `broadcast_local` (this node's only).
fn broadcast(lua: &Lua, this: &Instance, args: &[LuaValue], local: bool) -> Out {
    let scope = this.scope()?;
    let group = text(args, 0, "group")?;
    let topic = text(args, 1, "topic")?;
    if topic.starts_with('@') {
        return Err(invalid(format!(
            "topic {topic:?} is reserved (starts with '@')"
        )));
    }
    let mut payloads = to_values(lua, args.get(2..).unwrap_or(&[]))
        .map_err(|e| invalid(format!("payload: {e}")))?;
    let payload = if payloads.is_empty() {
        Value::Null
    } else {
        payloads.remove(0)
    };
    if local {
        scope.broadcast_local(
            &group,
            Message::new(caller(), topic, payload).with_extra(payloads),
        );
    } else {
        scope.broadcast(&group, caller(), &topic, payload, payloads);
    }
    Ok(LuaValue::Boolean(true))
}

/// `g:monitor(group)` → subscription, members.
fn monitor(
    lua: &Lua,
    this: &Instance,
    args: &[LuaValue],
) -> Result<(LuaValue, LuaValue), WippyFail> {
    let scope = this.scope()?;
    let group = text(args, 0, "group")?;
    let (watch, pids) = scope.monitor(&group).map_err(invalid)?;
    let sub = subscription(
        lua,
        watch,
        current_process().ok().as_deref().map(|p| &p.watches),
    )?;
    Ok((sub, LuaValue::Table(pid_list(lua, &pids)?)))
}

/// `g:events()` → subscription, `{group → members}`.
fn events(lua: &Lua, this: &Instance) -> Result<(LuaValue, LuaValue), WippyFail> {
    let scope = this.scope()?;
    let (watch, all) = scope.watch_all().map_err(invalid)?;
    let sub = subscription(
        lua,
        watch,
        current_process().ok().as_deref().map(|p| &p.watches),
    )?;
    let groups = lua.create_table_with_capacity(0, all.len())?;
    for (group, pids) in all {
        groups.raw_set(group, pid_list(lua, &pids)?)?;
    }
    Ok((sub, LuaValue::Table(groups)))
}

/// The two-value methods (`monitor`, `events`) as Lua gets them: `sub, snapshot` or
/// `nil, nil, err`.
type Ret3 = (LuaValue, LuaValue, Option<WippyError>);

fn reply3(outcome: Result<(LuaValue, LuaValue), WippyFail>) -> mlua::Result<Ret3> {
    match outcome {
        Ok((a, b)) => Ok((a, b, None)),
        Err(WippyFail::Soft(e)) => Ok((LuaValue::Nil, LuaValue::Nil, Some(e))),
        Err(WippyFail::Raise(e)) => Err(e),
    }
}

fn reply(outcome: Out) -> mlua::Result<(LuaValue, Option<WippyError>)> {
    match outcome {
        Ok(value) => Ok((value, None)),
        Err(WippyFail::Soft(e)) => Ok((LuaValue::Nil, Some(e))),
        Err(WippyFail::Raise(e)) => Err(e),
    }
}

impl UserData for Instance {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("join", |_, this, args: MultiValue| {
            reply(join(this, &args.into_vec()))
        });
        methods.add_method("leave", |_, this, args: MultiValue| {
            reply(leave(this, &args.into_vec()))
        });
        for (name, local) in [("get_members", false), ("get_local_members", true)] {
            methods.add_method(name, move |lua, this, args: MultiValue| {
                let out = (|| {
                    let group = text(&args.into_vec(), 0, "group")?;
                    let scope = this.scope()?;
                    let pids = if local {
                        scope.local_members(&group)
                    } else {
                        scope.members(&group)
                    };
                    Ok(LuaValue::Table(pid_list(lua, &pids)?))
                })();
                reply(out)
            });
        }
        for (name, local) in [("which_groups", false), ("which_local_groups", true)] {
            methods.add_method(name, move |lua, this, ()| {
                let out = (|| {
                    let scope = this.scope()?;
                    let groups = if local {
                        scope.local_groups()
                    } else {
                        scope.groups()
                    };
                    Ok(LuaValue::Table(lua.create_sequence_from(groups)?))
                })();
                reply(out)
            });
        }
        for (name, local) in [("broadcast", false), ("broadcast_local", true)] {
            methods.add_method(name, move |lua, this, args: MultiValue| {
                reply(broadcast(lua, this, &args.into_vec(), local))
            });
        }
        methods.add_method("monitor", |lua, this, args: MultiValue| {
            reply3(monitor(lua, this, &args.into_vec()))
        });
        methods.add_method("events", |lua, this, ()| reply3(events(lua, this)));
        methods.add_method("release", |_, this, ()| {
            this.released.set(true);
            Ok(true)
        });
    }
}

/// The Lua form of a membership event: `{system = "pg", kind = "member.joined" |
/// "member.left", path = group, data = {Group = group, PIDs = {...}}}`, or the overflow
/// marker `{system = "pg", kind = "overflow", data = {Dropped = n}}`.
fn event_table(lua: &Lua, event: &GroupEvent) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    t.raw_set("system", "pg")?;
    let data = lua.create_table_with_capacity(0, 2)?;
    match event {
        GroupEvent::Joined { group, pids } | GroupEvent::Left { group, pids } => {
            let kind = if matches!(event, GroupEvent::Joined { .. }) {
                "member.joined"
            } else {
                "member.left"
            };
            t.raw_set("kind", kind)?;
            t.raw_set("path", &**group)?;
            data.raw_set("Group", &**group)?;
            data.raw_set("PIDs", pid_list(lua, pids)?)?;
        }
        GroupEvent::Overflow { dropped } => {
            t.raw_set("kind", "overflow")?;
            data.raw_set("Dropped", *dropped)?;
        }
        _ => t.raw_set("kind", "unknown")?,
    }
    t.raw_set("data", data)?;
    Ok(t)
}

impl Source for GroupWatch {
    fn next_table(&self, lua: &Lua) -> mlua::Result<Option<Table>> {
        self.try_next().map(|e| event_table(lua, &e)).transpose()
    }

    fn is_finished(&self) -> bool {
        GroupWatch::is_finished(self)
    }

    fn changed(self: Rc<Self>) -> Changed {
        Box::pin(async move { GroupWatch::changed(&self).await })
    }

    fn close(&self, flush: bool) {
        GroupWatch::close(self, flush);
    }
}

/// `pg.open(scope)`.
fn open(lua: &Lua, args: MultiValue) -> Out {
    let id = text(&args.into_vec(), 0, "scope")?;
    let scope = node()?.group_scope(&id).ok_or_else(|| {
        WippyFail::Soft(WippyError::internal(format!("no pg.scope entry {id:?}")))
    })?;
    let instance = Instance {
        scope,
        released: Cell::new(false),
    };
    Ok(LuaValue::UserData(lua.create_userdata(instance)?))
}

pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("open", super::wippy_function(lua, open)?)?;
    Ok(m)
}
