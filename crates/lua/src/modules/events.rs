//! The `events` module: the node's event bus (Wippy's `events`, on the runtime's
//! [`Node::subscribe_events`] and [`Node::send_event`]).
//!
//! `events.subscribe(system_pattern, kind?)` returns a subscription (`sub:channel()`,
//! `sub:close()`, see [`super::subscription`]) whose channel yields `{system, kind, path,
//! data}` for every event sent on this node whose system matches the pattern (`*` stands for
//! any run of characters: `"orders.*"`, `"*"`) and, if `kind` is given, whose kind is `kind`.
//! `events.send(system, kind, path, data?)` returns `true` once the event is handed to the
//! matching subscriptions: accepted, not delivered. Best effort: a subscriber that does not
//! keep up loses events (it reads `{system = "events", kind = "overflow", data = {Dropped =
//! n}}` in their place), and events stay on their node. Errors are INVALID (Wippy's kind
//! for this module's refusals), e.g. an empty system, or the node's subscription cap.

use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use wsrelay_process::{BusEvent, BusWatch, Fed, Node, Value};

use super::case::Changed;
use super::errors::WippyError;
use super::subscription::{subscription, Source};
use super::{string_arg, wippy_function, WippyFail};
use crate::actor::{current, current_process};
use crate::convert::{to_lua, to_value};

/// The longest system pattern, system, kind or path, in bytes.
pub(crate) const MAX_FIELD: usize = 1024;

fn invalid(text: impl std::fmt::Display) -> WippyFail {
    WippyFail::Soft(WippyError::invalid(text))
}

/// The node of the running process or call.
fn node() -> Result<Node, WippyFail> {
    current()
        .map(|actor| actor.node().clone())
        .ok_or_else(|| invalid("not running in a Lua process or function"))
}

/// The text argument `index` named `what`: at most [`MAX_FIELD`] bytes, and not empty unless
/// `empty_ok`.
fn field(args: &[LuaValue], index: usize, what: &str, empty_ok: bool) -> Result<String, WippyFail> {
    let text = string_arg(args, index, what).map_err(invalid)?;
    if text.is_empty() && !empty_ok {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if text.len() > MAX_FIELD {
        return Err(invalid(format!("{what} is longer than {MAX_FIELD} bytes")));
    }
    Ok(text)
}

/// `events.subscribe(system_pattern, kind?)`.
fn subscribe(lua: &Lua, args: MultiValue) -> Result<LuaValue, WippyFail> {
    let args = args.into_vec();
    let pattern = field(&args, 0, "system pattern", false)?;
    let kind = match args.get(1) {
        None | Some(LuaValue::Nil) => None,
        Some(_) => Some(field(&args, 1, "kind", false)?),
    };
    let watch = node()?
        .subscribe_events(&pattern, kind.as_deref())
        .map_err(invalid)?;
    let owner = current_process().ok();
    Ok(subscription(
        lua,
        watch,
        owner.as_deref().map(|p| &p.watches),
    )?)
}

/// `events.send(system, kind, path, data?)`.
fn send(lua: &Lua, args: MultiValue) -> Result<LuaValue, WippyFail> {
    let args = args.into_vec();
    let system = field(&args, 0, "system", false)?;
    let kind = field(&args, 1, "kind", false)?;
    let path = field(&args, 2, "path", true)?;
    let data = match args.get(3) {
        None => Value::Null,
        Some(v) => to_value(lua, v).map_err(|e| invalid(format!("data: {e}")))?,
    };
    let event = BusEvent {
        system: system.into(),
        kind: kind.into(),
        path: path.into(),
        data,
    };
    node()?.send_event(event).map_err(invalid)?;
    Ok(LuaValue::Boolean(true))
}

/// The Lua form of what a subscription reads.
fn event_table(lua: &Lua, fed: &Fed<std::sync::Arc<BusEvent>>) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    match fed {
        Fed::Event(event) => {
            t.raw_set("system", &*event.system)?;
            t.raw_set("kind", &*event.kind)?;
            t.raw_set("path", &*event.path)?;
            if !matches!(event.data, Value::Null) {
                t.raw_set("data", to_lua(lua, &event.data)?)?;
            }
        }
        Fed::Lost(dropped) => {
            t.raw_set("system", "events")?;
            t.raw_set("kind", "overflow")?;
            let data = lua.create_table_with_capacity(0, 1)?;
            data.raw_set("Dropped", *dropped)?;
            t.raw_set("data", data)?;
        }
    }
    Ok(t)
}

impl Source for BusWatch {
    fn next_table(&self, lua: &Lua) -> mlua::Result<Option<Table>> {
        self.try_next()
            .map(|fed| event_table(lua, &fed))
            .transpose()
    }

    fn is_finished(&self) -> bool {
        BusWatch::is_finished(self)
    }

    fn changed(self: Rc<Self>) -> Changed {
        Box::pin(async move { BusWatch::changed(&self).await })
    }

    fn close(&self, flush: bool) {
        BusWatch::close(self, flush);
    }
}

pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("subscribe", wippy_function(lua, subscribe)?)?;
    m.raw_set("send", wippy_function(lua, send)?)?;
    Ok(m)
}
