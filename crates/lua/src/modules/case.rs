//! One case of `channel.select`: an object (a channel, the inbox, the events stream), what to
//! do with it (receive, or send a value), and how to do it.
//!
//! The select loop ([`super::select`]) knows no object type: each object's module hands over
//! a [`CaseKind`] with the two operations a select needs, so adding a selectable object does
//! not touch the loop and the modules do not import each other.

use std::future::Future;
use std::pin::Pin;

use mlua::{AnyUserData, Lua, UserData, Value as LuaValue};

/// A future that completes when a case's object may have changed.
pub(crate) type Changed = Pin<Box<dyn Future<Output = ()>>>;

/// What a ready case produced: the value and the `ok` flag (`false`: closed).
pub(crate) type Taken = Option<(LuaValue, bool)>;

/// What a case does with its object.
pub(crate) enum Op {
    /// Take a value.
    Receive,
    /// Hand over this value.
    Send(LuaValue),
}

/// The operations of one kind of selectable object.
pub(crate) struct CaseKind {
    /// Performs the case if it is ready now (`None`: it would wait).
    pub(crate) try_take: fn(&Lua, &AnyUserData, &Op) -> mlua::Result<Taken>,
    /// Completes when the object may have changed, so the select tries again. Created before
    /// `try_take` runs, so that no change between the two is missed.
    pub(crate) changed: fn(&AnyUserData) -> mlua::Result<Changed>,
}

/// A case (`ch:case_receive()`, `ch:case_send(v)`, `inbox:case_receive()`,
/// `events:case_receive()`).
pub(crate) struct Case {
    pub(crate) object: AnyUserData,
    pub(crate) op: Op,
    pub(crate) kind: &'static CaseKind,
}

impl Case {
    /// A case on `object`, which must be a `T` (the method may be called on another object
    /// with `T.case_receive(other)`).
    pub(crate) fn new<T: 'static>(
        object: AnyUserData,
        op: Op,
        kind: &'static CaseKind,
    ) -> mlua::Result<Case> {
        if !object.is::<T>() {
            return Err(mlua::Error::runtime("case: expected a channel object"));
        }
        Ok(Case { object, op, kind })
    }

    /// Performs the case if it is ready now.
    pub(crate) fn try_take(&self, lua: &Lua) -> mlua::Result<Taken> {
        (self.kind.try_take)(lua, &self.object, &self.op)
    }

    /// Completes when the case may have become ready.
    pub(crate) fn changed(&self) -> mlua::Result<Changed> {
        (self.kind.changed)(&self.object)
    }
}

impl UserData for Case {}
