//! Subscription objects, as `pg`'s `g:monitor`/`g:events` and the `events` module return
//! them: `sub:channel()` (a channel with `receive()` and `case_receive()`, as other channels)
//! and `sub:close({flush = bool}?)`. What they read from is a [`Source`]: a group watch or an
//! event bus subscription. A subscription a process opened is closed when the process ends,
//! not when the Lua collector gets to it (subscriptions are capped, per scope, per node): the
//! process keeps its subscriptions in [`Watches`].

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};

use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::case::{Case, CaseKind, Changed, Op, Taken};

/// What a subscription reads from.
pub(crate) trait Source: 'static {
    /// The next event as Lua gets it, if one is ready.
    fn next_table(&self, lua: &Lua) -> mlua::Result<Option<Table>>;
    /// Whether the source is closed and has nothing left to read.
    fn is_finished(&self) -> bool;
    /// Completes when an event may be ready (or the source was closed).
    fn changed(self: Rc<Self>) -> Changed;
    /// Stops the source; with `flush` what it buffered stays readable.
    fn close(&self, flush: bool);
}

/// A subscription object (`sub:channel()`, `sub:close()`).
struct Subscription {
    source: Rc<dyn Source>,
    channel: OnceCell<AnyUserData>,
}

/// The channel of a subscription.
#[derive(Clone)]
struct SubscriptionChannel(Rc<dyn Source>);

/// The subscriptions a process opened (its `ProcState`'s), closed when the process ends,
/// so that a cap counts live subscriptions only.
#[derive(Default)]
pub(crate) struct Watches(RefCell<Vec<Weak<dyn Source>>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for watch in self.0.get_mut().drain(..) {
            if let Some(watch) = watch.upgrade() {
                watch.close(false);
            }
        }
    }
}

/// A subscription object for `source`; with `owner` (the opening process's [`Watches`]),
/// closed when that process ends.
pub(crate) fn subscription(
    lua: &Lua,
    source: impl Source,
    owner: Option<&Watches>,
) -> mlua::Result<LuaValue> {
    let source: Rc<dyn Source> = Rc::new(source);
    if let Some(owner) = owner {
        let mut list = owner.0.borrow_mut();
        list.retain(|w| w.strong_count() > 0);
        list.push(Rc::downgrade(&source));
    }
    let sub = Subscription {
        source,
        channel: OnceCell::new(),
    };
    Ok(LuaValue::UserData(lua.create_userdata(sub)?))
}

impl SubscriptionChannel {
    fn try_take(&self, lua: &Lua) -> mlua::Result<Taken> {
        if let Some(event) = self.0.next_table(lua)? {
            return Ok(Some((LuaValue::Table(event), true)));
        }
        if self.0.is_finished() {
            return Ok(Some((LuaValue::Nil, false)));
        }
        Ok(None)
    }
}

static SUBSCRIPTION_CASE: CaseKind = CaseKind {
    try_take: |lua, object, _| {
        object
            .borrow::<SubscriptionChannel>()?
            .clone()
            .try_take(lua)
    },
    changed: |object| Ok(object.borrow::<SubscriptionChannel>()?.0.clone().changed()),
};

impl UserData for SubscriptionChannel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("receive", |lua, this, ()| async move {
            loop {
                if let Some(got) = this.try_take(&lua)? {
                    return Ok(got);
                }
                // A change between the look and the wait leaves a wake-up behind.
                this.0.clone().changed().await;
            }
        });
        methods.add_function("case_receive", |_, ud: AnyUserData| {
            Case::new::<SubscriptionChannel>(ud, Op::Receive, &SUBSCRIPTION_CASE)
        });
    }
}

impl UserData for Subscription {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("channel", |lua, this, ()| {
            if this.channel.get().is_none() {
                let chan = lua.create_userdata(SubscriptionChannel(this.source.clone()))?;
                let _ = this.channel.set(chan);
            }
            Ok(this.channel.get().cloned())
        });
        methods.add_method("close", |_, this, options: Option<Table>| {
            let flush = match options {
                Some(t) => t.get::<Option<bool>>("flush")?.unwrap_or(false),
                None => false,
            };
            this.source.close(flush);
            Ok(true)
        });
    }
}
