//! The `channel` module: Go-style channels (`channel.new(n)`, `time.after(d)` timers) and
//! `channel.select` (the loop is in [`super::select`]).
//!
//! Channels live in one worker's Lua state and hold Lua values as they are (no copy). A channel
//! of capacity `n` buffers `n` values; a sender beyond that waits until its value is taken
//! (capacity 0 is a rendezvous). `ch:receive()` returns `value, true`, or `nil, false` once the
//! channel is closed and drained. `channel.select{cases}` returns
//! `{channel = <the channel/inbox/events object>, value = ..., ok = ...}` for the first ready
//! case in the order given.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use tokio::time::Instant;

use super::case::{Case, CaseKind, Op, Taken};
use super::clock::time_value;
use super::select::select;
use crate::signal::{Changed, Signal};

thread_local! {
    /// The values the channels of this worker hold (a worker's channels live on its thread),
    /// and the most they may hold (`EngineConfig::max_channel_values`). The values are Lua
    /// values, but the queues holding them are Rust memory, outside the Lua limits: without
    /// this bound `channel.new(math.maxinteger)` and a send loop would grow one until the
    /// server runs out of memory.
    static BUFFERED: Cell<(usize, usize)> = const { Cell::new((0, usize::MAX)) };
}

/// Sets the bound of this worker's channels (at worker start).
pub(crate) fn set_max_values(max: usize) {
    BUFFERED.with(|b| b.set((b.get().0, max)));
}

/// Counts one more held value, if the worker's bound allows it.
fn reserve_slot() -> Result<(), String> {
    BUFFERED.with(|b| {
        let (held, max) = b.get();
        if held >= max {
            return Err(format!(
                "the channels of this worker hold {max} values already (max_channel_values)"
            ));
        }
        b.set((held + 1, max));
        Ok(())
    })
}

/// `n` held values were taken or dropped.
fn release_slots(n: usize) {
    BUFFERED.with(|b| {
        let (held, max) = b.get();
        b.set((held.saturating_sub(n), max));
    });
}

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
            release_slots(1);
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
            // Over the worker's bound the case is not ready (it waits, as a full channel).
            return Ok(self.push(value.clone()).is_ok());
        }
        Ok(false)
    }

    fn push(&self, value: LuaValue) -> Result<u64, String> {
        reserve_slot()?;
        let inner = &self.0;
        let ticket = inner.next_ticket.get();
        inner.next_ticket.set(ticket + 1);
        inner.queue.borrow_mut().push_back((ticket, value));
        inner.signal.notify();
        Ok(ticket)
    }

    /// A future that completes when the channel may have changed (or its timer is due).
    fn changed(&self) -> super::case::Changed {
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
        let ticket = self.push(value)?;
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

impl Drop for ChanInner {
    fn drop(&mut self) {
        release_slots(self.queue.get_mut().len());
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
            Case::new::<Chan>(ud, Op::Receive, &CHAN_CASE)
        });
        methods.add_function("case_send", |_, (ud, value): (AnyUserData, LuaValue)| {
            Case::new::<Chan>(ud, Op::Send(value), &CHAN_CASE)
        });
    }
}

/// Channels in `channel.select`: a send case is ready when a buffer slot or a waiting receiver
/// takes the value, and reports `ok = false` on a closed channel.
static CHAN_CASE: CaseKind = CaseKind {
    try_take: |lua, object, op| {
        let chan = object.borrow::<Chan>()?.clone();
        let taken: Taken = match op {
            Op::Receive => chan.try_receive(lua)?,
            Op::Send(value) => match chan.try_send_now(value) {
                Ok(true) => Some((LuaValue::Nil, true)),
                Ok(false) => None,
                Err(_) => Some((LuaValue::Nil, false)),
            },
        };
        Ok(taken)
    },
    changed: |object| Ok(object.borrow::<Chan>()?.changed()),
};

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
