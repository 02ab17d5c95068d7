//! The `pg` module: process groups (Wippy's `pg`, on the runtime's [`GroupScope`]).
//!
//! `pg.open(scope)` opens a `pg.scope` entry and returns an instance with `join`, `leave`,
//! `get_members`, `get_local_members`, `which_groups`, `which_local_groups`, `broadcast`,
//! `broadcast_local` and `release`. A process joins a group as many times as it likes and must
//! leave it as many times (multi-join); its memberships end when it exits.
//!
//! Our addition to Wippy's API: `join` and `leave` take an optional PID (or list of PIDs) of
//! a local process to join instead of the caller, as Erlang's `pg:join/3` does. A relay target
//! joins the connections it serves, and `g:broadcast(group, "ws.send", frame)` then converts
//! the frame once and encodes it once for all their sockets.
//!
//! In a cluster, groups span the nodes: `get_members`, `which_groups` and `broadcast` see
//! members on every node, the `_local` variants only this node's.

use std::cell::Cell;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use wsrelay_process::{GroupScope, Node, Pid, Value};

use super::{reply, string_arg, Fail, SoftErr};
use crate::actor::{current, Actor};
use crate::convert::to_values;

/// An open scope (`pg.open`).
struct Instance {
    scope: GroupScope,
    released: Cell<bool>,
}

impl Instance {
    /// The scope, unless the instance was released.
    fn scope(&self) -> Result<&GroupScope, Fail> {
        if self.released.get() {
            return Err("the pg instance was released".into());
        }
        Ok(&self.scope)
    }
}

/// The node of the running process or call.
fn node() -> Result<Node, Fail> {
    current()
        .map(|actor| actor.node().clone())
        .ok_or_else(|| "not running in a Lua process or function".into())
}

/// The calling process's PID (none in a function call).
fn caller() -> Option<Pid> {
    match current() {
        Some(Actor::Process(p)) => Some(p.ctx.pid().clone()),
        _ => None,
    }
}

/// Group names from a name or a non-empty list of names.
fn names(value: Option<&LuaValue>) -> Result<Vec<String>, Fail> {
    let list = match value {
        Some(v @ LuaValue::String(_)) => vec![string_arg(std::slice::from_ref(v), 0, "group")?],
        Some(LuaValue::Table(t)) => t
            .sequence_values::<LuaValue>()
            .map(|v| string_arg(&[v?], 0, "group").map_err(Fail::from))
            .collect::<Result<Vec<_>, Fail>>()?,
        None | Some(LuaValue::Nil) => return Err("group is required".into()),
        Some(other) => {
            return Err(format!(
                "group must be a string or a list, got {}",
                other.type_name()
            )
            .into())
        }
    };
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err("group names must not be empty".into());
    }
    Ok(list)
}

/// The processes to join or leave: the given PID(s), or the caller.
fn members(node: &Node, value: Option<&LuaValue>) -> Result<Vec<Pid>, Fail> {
    let texts = match value {
        None | Some(LuaValue::Nil) => {
            return caller()
                .map(|pid| vec![pid])
                .ok_or_else(|| "not running in a process (give the PID to join)".into())
        }
        Some(LuaValue::Table(t)) => t
            .sequence_values::<LuaValue>()
            .map(|v| string_arg(&[v?], 0, "pid").map_err(Fail::from))
            .collect::<Result<Vec<_>, Fail>>()?,
        Some(v) => vec![string_arg(std::slice::from_ref(v), 0, "pid")?],
    };
    texts.iter().map(|text| node.resolve(text).soft()).collect()
}

/// A Lua array of PID strings.
fn pid_list(lua: &Lua, pids: Vec<Pid>) -> mlua::Result<Table> {
    lua.create_sequence_from(pids.iter().map(|p| p.as_str().to_owned()))
}

fn join(this: &Instance, args: &[LuaValue]) -> Result<LuaValue, Fail> {
    let scope = this.scope()?;
    let groups = names(args.first())?;
    let pids = members(&node()?, args.get(1))?;
    for group in &groups {
        for pid in &pids {
            scope.join(group, pid).soft()?;
        }
    }
    Ok(LuaValue::Boolean(true))
}

/// Best effort over a list (Wippy): an error only if no membership was left at all.
fn leave(this: &Instance, args: &[LuaValue]) -> Result<LuaValue, Fail> {
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
        (0, Some(error)) => Err(error.into()),
        _ => Ok(LuaValue::Boolean(true)),
    }
}

/// `broadcast` (members on every node) or `broadcast_local` (this node's only).
fn broadcast(lua: &Lua, this: &Instance, args: &[LuaValue], local: bool) -> Result<LuaValue, Fail> {
    let scope = this.scope()?;
    let group = string_arg(args, 0, "group")?;
    let topic = string_arg(args, 1, "topic")?;
    if topic.starts_with('@') {
        return Err(format!("topic {topic:?} is reserved (starts with '@')").into());
    }
    let mut payloads = to_values(lua, args.get(2..).unwrap_or(&[]))
        .map_err(|e| Fail::Soft(format!("payload: {e}")))?;
    let payload = if payloads.is_empty() {
        Value::Null
    } else {
        payloads.remove(0)
    };
    if local {
        scope.broadcast_local(&group, caller(), &topic, payload, payloads);
    } else {
        scope.broadcast(&group, caller(), &topic, payload, payloads);
    }
    Ok(LuaValue::Boolean(true))
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
                    let group = string_arg(&args.into_vec(), 0, "group")?;
                    let scope = this.scope()?;
                    let pids = if local {
                        scope.local_members(&group)
                    } else {
                        scope.members(&group)
                    };
                    Ok(LuaValue::Table(pid_list(lua, pids)?))
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
        methods.add_method("release", |_, this, ()| {
            this.released.set(true);
            Ok(true)
        });
    }
}

/// `pg.open(scope)`.
fn open(lua: &Lua, args: MultiValue) -> mlua::Result<super::Ret> {
    let out = (|| {
        let id = string_arg(&args.into_vec(), 0, "scope")?;
        let scope = node()?
            .group_scope(&id)
            .ok_or_else(|| Fail::Soft(format!("no pg.scope entry {id:?}")))?;
        let instance = Instance {
            scope,
            released: Cell::new(false),
        };
        Ok(LuaValue::UserData(lua.create_userdata(instance)?))
    })();
    reply(out)
}

pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("open", lua.create_function(open)?)?;
    Ok(m)
}
