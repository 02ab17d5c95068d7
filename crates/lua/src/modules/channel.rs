//! The `channel` module: Go-style channels, and `channel.select` over channels, the process
//! inbox, its events and `time.after` timers.
//!
//! Channels live in one worker's Lua state and hold Lua values as they are (no copy). A channel
//! of capacity `n` buffers `n` values; a sender beyond that waits until its value is taken
//! (capacity 0 is a rendezvous). `ch:receive()` returns `value, true`, or `nil, false` once the
//! channel is closed and drained. `channel.select{cases}` returns
//! `{channel = <the channel/inbox/events object>, value = ..., ok = ...}` for the first ready
//! case in the order given.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use mlua::{
    AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, UserDataRef, Value as LuaValue,
};
use tokio::time::Instant;

use super::process::{event_table, Events, Inbox, MessageObj};
use super::time::time_value;
use crate::actor::current_process;
use crate::signal::{Changed, Signal};

/// The shared state of a channel.
pub(crate) struct ChanInner {
    capacity: usize,
    queue: RefCell<VecDeque<(u64, LuaValue)>>,
    next_ticket: Cell<u64>,
    consumed: Cell<u64>,
    closed: Cell<bool>,
    receivers_waiting: Cell<usize>,
    /// For `time.after`: when the one value (the current time) becomes available.
    deadline: Option<Instant>,
    fired: Cell<bool>,
    signal: Signal,
}

/// A channel object (`channel.new(n)`, `time.after(d)`).
#[derive(Clone)]
pub(crate) struct Chan(pub(crate) Rc<ChanInner>);

impl Chan {
    pub(crate) fn new(capacity: usize) -> Chan {
        Chan::build(capacity, None)
    }

    /// A channel that yields the time once, at `deadline`.
    pub(crate) fn timer(deadline: Instant) -> Chan {
        Chan::build(1, Some(deadline))
    }

    fn build(capacity: usize, deadline: Option<Instant>) -> Chan {
        Chan(Rc::new(ChanInner {
            capacity,
            queue: RefCell::new(VecDeque::new()),
            next_ticket: Cell::new(0),
            consumed: Cell::new(0),
            closed: Cell::new(false),
            receivers_waiting: Cell::new(0),
            deadline,
            fired: Cell::new(false),
            signal: Signal::default(),
        }))
    }

    /// Takes a value if one is ready: `Some((value, true))`, `Some((nil, false))` when closed
    /// and drained, `None` when a receiver would wait.
    fn try_receive(&self, lua: &Lua) -> mlua::Result<Option<(LuaValue, bool)>> {
        let inner = &self.0;
        if let Some(deadline) = inner.deadline {
            if !inner.fired.get() && Instant::now() >= deadline {
                inner.fired.set(true);
                return Ok(Some((time_value(lua)?, true)));
            }
        }
        let item = inner.queue.borrow_mut().pop_front();
        if let Some((_, value)) = item {
            inner.consumed.set(inner.consumed.get() + 1);
            inner.signal.notify();
            return Ok(Some((value, true)));
        }
        if inner.closed.get() {
            return Ok(Some((LuaValue::Nil, false)));
        }
        Ok(None)
    }

    /// Sends without waiting if a buffer slot (or a waiting receiver) takes the value.
    fn try_send_now(&self, value: &LuaValue) -> Result<bool, String> {
        let inner = &self.0;
        if inner.closed.get() {
            return Err("send on a closed channel".to_owned());
        }
        if inner.queue.borrow().len() < inner.capacity + inner.receivers_waiting.get() {
            self.push(value.clone());
            return Ok(true);
        }
        Ok(false)
    }

    fn push(&self, value: LuaValue) -> u64 {
        let inner = &self.0;
        let ticket = inner.next_ticket.get();
        inner.next_ticket.set(ticket + 1);
        inner.queue.borrow_mut().push_back((ticket, value));
        inner.signal.notify();
        ticket
    }

    /// A future that completes when the channel may have changed (or its timer is due).
    fn changed(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        let changed = Changed::new(self.0.clone(), |c: &ChanInner| &c.signal);
        match self.0.deadline {
            Some(deadline) if !self.0.fired.get() => Box::pin(async move {
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }),
            _ => Box::pin(changed),
        }
    }

    async fn send(&self, value: LuaValue) -> Result<(), String> {
        if self.0.closed.get() {
            return Err("send on a closed channel".to_owned());
        }
        let ticket = self.push(value);
        loop {
            let changed = self.changed();
            if ticket < self.0.consumed.get() + self.0.capacity as u64 {
                return Ok(());
            }
            if self.0.closed.get() {
                return Err("channel closed before the value was received".to_owned());
            }
            changed.await;
        }
    }

    async fn receive(&self, lua: &Lua) -> mlua::Result<(LuaValue, bool)> {
        let inner = &self.0;
        inner
            .receivers_waiting
            .set(inner.receivers_waiting.get() + 1);
        let _waiting = WaitingGuard(self.0.clone());
        // A blocked rendezvous sender may now hand over.
        inner.signal.notify();
        loop {
            let changed = self.changed();
            if let Some(got) = self.try_receive(lua)? {
                return Ok(got);
            }
            changed.await;
        }
    }

    fn close(&self) {
        self.0.closed.set(true);
        self.0.signal.notify();
    }
}

struct WaitingGuard(Rc<ChanInner>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0
            .receivers_waiting
            .set(self.0.receivers_waiting.get() - 1);
    }
}

impl UserData for Chan {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("send", |_, this, value: LuaValue| async move {
            this.send(value).await.map_err(mlua::Error::runtime)?;
            Ok(true)
        });
        methods.add_async_method("receive", |lua, this, ()| async move {
            this.receive(&lua).await
        });
        methods.add_method("close", |_, this, ()| {
            this.close();
            Ok(true)
        });
        methods.add_function("case_receive", |_, ud: AnyUserData| {
            Case::new(ud, Source::Chan, Op::Receive)
        });
        methods.add_function("case_send", |_, (ud, value): (AnyUserData, LuaValue)| {
            Case::new(ud, Source::Chan, Op::Send(value))
        });
    }
}

// ===== select =====

/// What a case reads from or writes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Chan,
    Inbox,
    Events,
}

enum Op {
    Receive,
    Send(LuaValue),
}

/// One case of `channel.select` (`ch:case_receive()`, `ch:case_send(v)`,
/// `inbox:case_receive()`, `events:case_receive()`).
pub(crate) struct Case {
    object: AnyUserData,
    source: Source,
    op: Op,
}

impl Case {
    pub(crate) fn new_receive(object: AnyUserData, source: Source) -> mlua::Result<Case> {
        Case::new(object, source, Op::Receive)
    }

    fn new(object: AnyUserData, source: Source, op: Op) -> mlua::Result<Case> {
        let valid = match source {
            Source::Chan => object.is::<Chan>(),
            Source::Inbox => object.is::<Inbox>(),
            Source::Events => object.is::<Events>(),
        };
        if !valid {
            return Err(mlua::Error::runtime("case: expected a channel object"));
        }
        Ok(Case { object, source, op })
    }
}

impl UserData for Case {}

/// Tries one case; `Some((value, ok))` if it was ready.
fn try_case(lua: &Lua, case: &Case) -> mlua::Result<Option<(LuaValue, bool)>> {
    match (case.source, &case.op) {
        (Source::Chan, op) => {
            let chan = case.object.borrow::<Chan>()?.clone();
            match op {
                Op::Receive => chan.try_receive(lua),
                Op::Send(value) => match chan.try_send_now(value) {
                    Ok(true) => Ok(Some((LuaValue::Nil, true))),
                    Ok(false) => Ok(None),
                    Err(_) => Ok(Some((LuaValue::Nil, false))),
                },
            }
        }
        (Source::Inbox, _) => {
            let process = current_process().map_err(mlua::Error::runtime)?;
            match process.ctx.try_recv() {
                Some(msg) => Ok(Some((
                    LuaValue::UserData(lua.create_userdata(MessageObj::new(msg))?),
                    true,
                ))),
                None => Ok(None),
            }
        }
        (Source::Events, _) => {
            let process = current_process().map_err(mlua::Error::runtime)?;
            match process.ctx.try_next_event() {
                Some(event) => Ok(Some((LuaValue::Table(event_table(lua, &event)?), true))),
                None => Ok(None),
            }
        }
    }
}

async fn select(lua: Lua, cases: Table) -> mlua::Result<Table> {
    let mut list = Vec::new();
    for value in cases.sequence_values::<LuaValue>() {
        match value? {
            LuaValue::UserData(ud) if ud.is::<Case>() => list.push(ud),
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
    let cases: Vec<UserDataRef<Case>> = list
        .iter()
        .map(|ud| ud.borrow::<Case>())
        .collect::<mlua::Result<_>>()?;
    let needs_process = cases.iter().any(|c| c.source != Source::Chan);
    let ctx = if needs_process {
        Some(current_process().map_err(mlua::Error::runtime)?.ctx.clone())
    } else {
        None
    };
    loop {
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::with_capacity(cases.len());
        for case in &cases {
            if case.source == Source::Chan {
                waits.push(case.object.borrow::<Chan>()?.changed());
            }
        }
        if let Some(ctx) = &ctx {
            let ctx = ctx.clone();
            waits.push(Box::pin(async move { ctx.changed().await }));
        }
        for case in &cases {
            if let Some((value, ok)) = try_case(&lua, case)? {
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

/// Builds the `channel` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "new",
        lua.create_function(|lua, args: MultiValue| {
            let capacity = match args.front() {
                None | Some(LuaValue::Nil) => 0,
                Some(LuaValue::Integer(n)) if *n >= 0 => *n as usize,
                Some(LuaValue::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => *n as usize,
                Some(other) => {
                    return Ok((
                        LuaValue::Nil,
                        Some(format!(
                            "channel.new: capacity must be a non-negative integer, got {}",
                            other.type_name()
                        )),
                    ))
                }
            };
            Ok((
                LuaValue::UserData(lua.create_userdata(Chan::new(capacity))?),
                None,
            ))
        })?,
    )?;
    m.raw_set("select", lua.create_async_function(select)?)?;
    Ok(m)
}
