//! The state of one process: inbox, events, monitors, links, names.
//!
//! Each process has one `Cell`, shared by the node table and by whoever holds its
//! [`Context`](crate::Context). All state sits behind one short-lived lock that is never held
//! across an await and never held together with another cell's lock: every operation that
//! involves two processes locks them one after the other, and the `alive` flag (cleared once,
//! under the lock, when the process exits) decides every race.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, Waker};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::host::HostState;
use crate::pid_set::PidSet;
use crate::{Event, ExitResult, Message, Pid, Shortcut, Unbuilt};

pub(crate) struct Cell {
    pub(crate) pid: Pid,
    pub(crate) host: Arc<HostState>,
    pub(crate) state: Mutex<State>,
    /// Wakes the process: a message, an event or a kill arrived.
    pub(crate) ready: Ready,
    /// Wakes the driver of the process when it must stop.
    pub(crate) killed: Notify,
    /// Wakes senders waiting for the inbox to drain below its high-water mark.
    pub(crate) space: Notify,
    pub(crate) inbox_len: AtomicUsize,
    pub(crate) inbox_bytes: AtomicUsize,
    /// What `state` holds of events and a stop request ([`HAS_EVENTS`], [`KILLED`]), for a
    /// look without the lock: changed under it, read with `Acquire`. A driver looks for both
    /// on every wake (a relay connection several times per frame), and both are almost
    /// always absent. A look that misses one set a moment later is followed by the wake-up
    /// that comes with it.
    flags: AtomicU8,
    /// Offered each message while the inbox is empty (`shortcut.rs`); set once.
    pub(crate) shortcut: OnceLock<Arc<dyn Shortcut>>,
}

/// [`Cell::flags`]: the event queue is not empty.
const HAS_EVENTS: u8 = 1;
/// [`Cell::flags`]: a stop was requested (it stays requested).
const KILLED: u8 = 2;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) alive: bool,
    pub(crate) inbox: VecDeque<(Message, usize)>,
    pub(crate) events: VecDeque<Event>,
    /// Boxed: rarely set, and an idle process should stay small.
    pub(crate) kill: Option<Box<ExitResult>>,
    pub(crate) trap_links: bool,
    /// Monitors, links and names; most processes have none, so they cost a pointer until used.
    pub(crate) rel: Option<Box<Relations>>,
    pub(crate) inbox_peak: usize,
    pub(crate) inbox_bytes: usize,
}

/// A process's relations to others; what it leaves behind when it exits, taken under its
/// lock in one step.
#[derive(Default)]
pub(crate) struct Relations {
    /// Processes that monitor this one.
    pub(crate) watchers: PidSet,
    /// Processes this one monitors.
    pub(crate) monitoring: PidSet,
    pub(crate) links: PidSet,
    pub(crate) names: Vec<String>,
    /// Group memberships, one per join (`groups.rs`).
    pub(crate) groups: Vec<Membership>,
}

/// A membership as the member's relations record it (one per join, see `groups.rs`).
pub(crate) struct Membership {
    pub(crate) scope: Arc<dyn GroupExit>,
    pub(crate) group: Arc<str>,
}

impl Membership {
    /// Ends this membership of `pid` (the member exited).
    pub(crate) fn end(self, pid: &Pid) {
        self.scope.remove_member(&self.group, pid);
    }
}

/// What a group scope does when a member exits. The cell records memberships without
/// knowing group scopes (`groups.rs` implements this), so the runtime's layers depend one
/// way: groups on cells, never cells on groups.
pub(crate) trait GroupExit: Send + Sync {
    /// Removes one membership of `pid` in `group`.
    fn remove_member(&self, group: &str, pid: &Pid);
}

/// One of the sets of [`Relations`], for the operations that treat them alike.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// Processes that monitor this one.
    Watchers,
    /// Processes this one monitors.
    Monitoring,
    /// Processes linked to this one.
    Links,
}

impl Relations {
    fn side(&mut self, side: Side) -> &mut PidSet {
        match side {
            Side::Watchers => &mut self.watchers,
            Side::Monitoring => &mut self.monitoring,
            Side::Links => &mut self.links,
        }
    }
}

impl State {
    /// The relations, created on first use.
    pub(crate) fn rel(&mut self) -> &mut Relations {
        self.rel.get_or_insert_with(Box::default)
    }
}

/// Queue slots an emptied inbox (or events queue) keeps. A queue never shrinks by itself, so a
/// process that once had a burst (a shared target during a connect storm: one `ws.join` per
/// connection) would hold its peak for the rest of its life; freeing the storage when the
/// queue empties past this size returns it. Small queues keep theirs, so the steady state of a
/// busy process (one or two messages waiting) never reallocates.
pub(crate) const QUEUE_KEEP: usize = 32;

/// Frees the storage of an empty `queue` that grew past [`QUEUE_KEEP`].
fn release_burst<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > QUEUE_KEEP {
        *queue = VecDeque::new();
    }
}

/// Something a process received, events first.
#[derive(Debug)]
pub enum Received {
    /// A system event (exit of a monitored process, link down, cancel).
    Event(Event),
    /// An inbox message.
    Message(Message),
}

impl Cell {
    pub(crate) fn new(pid: Pid, host: Arc<HostState>) -> Cell {
        Cell {
            pid,
            host,
            state: Mutex::new(State {
                alive: true,
                ..State::default()
            }),
            ready: Ready::default(),
            killed: Notify::new(),
            space: Notify::new(),
            inbox_len: AtomicUsize::new(0),
            inbox_bytes: AtomicUsize::new(0),
            flags: AtomicU8::new(0),
            shortcut: OnceLock::new(),
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.state.lock().alive
    }

    /// Appends a message; returns the new inbox length, or `None` if the process is gone.
    /// A process with a [`Shortcut`] is offered the message first while its inbox is empty
    /// (then the length is 0).
    pub(crate) fn push_message(&self, msg: Message) -> Option<usize> {
        let msg = match self.shortcut_now() {
            Some(shortcut) => match shortcut.offer(msg) {
                Ok(()) => return Some(0),
                Err(msg) => msg,
            },
            None => msg,
        };
        let size = msg_size(&msg);
        let len = {
            let mut st = self.state.lock();
            if !st.alive {
                return None;
            }
            st.inbox.push_back((msg, size));
            st.inbox_bytes += size;
            let len = st.inbox.len();
            if len > st.inbox_peak {
                st.inbox_peak = len;
            }
            // The mirrors are written under the lock, so a racing push and pop can never leave
            // a stale length behind (a waiter would then miss the wake-up for good).
            self.inbox_len.store(len, Ordering::Release);
            self.inbox_bytes.store(st.inbox_bytes, Ordering::Release);
            len
        };
        self.ready.notify();
        Some(len)
    }

    /// Offers a message whose payload is not built yet to the process's shortcut, when one
    /// may take a message now (see [`Cell::shortcut_now`]); `true` if it took it.
    pub(crate) fn offer_unbuilt(&self, topic: &str, payload: &dyn Unbuilt) -> bool {
        self.shortcut_now()
            .is_some_and(|shortcut| shortcut.offer_unbuilt(topic, payload))
    }

    /// The process's shortcut, if a message may be offered to it now: only past an empty
    /// inbox (what this sender queued before is taken already), and not while an event or a
    /// stop request waits (the process acts on those first).
    fn shortcut_now(&self) -> Option<&Arc<dyn Shortcut>> {
        self.shortcut.get().filter(|_| {
            self.inbox_len.load(Ordering::Acquire) == 0 && self.flags.load(Ordering::Acquire) == 0
        })
    }

    /// Appends an event; `false` if the process is gone.
    pub(crate) fn push_event(&self, event: Event) -> bool {
        {
            let mut st = self.state.lock();
            if !st.alive {
                return false;
            }
            if let Event::Exit { from, .. } = &event {
                // The monitor has fired: it is no longer held (exactly one EXIT per monitor).
                if let Some(rel) = st.rel.as_mut() {
                    rel.monitoring.remove(from);
                }
            }
            st.events.push_back(event);
            self.flags.fetch_or(HAS_EVENTS, Ordering::Release);
        }
        self.ready.notify();
        true
    }

    pub(crate) fn pop_message(&self) -> Option<Message> {
        let (msg, size, len, bytes) = {
            let mut st = self.state.lock();
            let (msg, size) = st.inbox.pop_front()?;
            st.inbox_bytes -= size;
            let len = st.inbox.len();
            if len == 0 {
                release_burst(&mut st.inbox);
            }
            self.inbox_len.store(len, Ordering::Release);
            self.inbox_bytes.store(st.inbox_bytes, Ordering::Release);
            (msg, size, len, st.inbox_bytes)
        };
        // Senders wait while the inbox is at or above its mark: wake them when it drops below.
        let mark = &self.host.high_water;
        let was_congested = len + 1 >= mark.messages || bytes + size >= mark.bytes;
        let is_congested = len >= mark.messages || bytes >= mark.bytes;
        if was_congested && !is_congested {
            self.space.notify_waiters();
        }
        Some(msg)
    }

    pub(crate) fn pop_event(&self) -> Option<Event> {
        if self.flags.load(Ordering::Acquire) & HAS_EVENTS == 0 {
            return None;
        }
        let mut st = self.state.lock();
        let event = st.events.pop_front()?;
        if st.events.is_empty() {
            release_burst(&mut st.events);
            self.flags.fetch_and(!HAS_EVENTS, Ordering::Release);
        }
        Some(event)
    }

    pub(crate) fn pop_any(&self) -> Option<Received> {
        if let Some(e) = self.pop_event() {
            return Some(Received::Event(e));
        }
        self.pop_message().map(Received::Message)
    }

    /// Whether the inbox is at or above its high-water mark.
    pub(crate) fn is_congested(&self) -> bool {
        self.inbox_len.load(Ordering::Acquire) >= self.host.high_water.messages
            || self.inbox_bytes.load(Ordering::Acquire) >= self.host.high_water.bytes
    }

    /// Waits until the inbox is below its high-water mark or the process is gone.
    pub(crate) async fn wait_for_space(&self) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_congested() || !self.is_alive() {
                return;
            }
            notified.await;
        }
    }

    /// Asks the process to stop with `result`; the first request wins.
    pub(crate) fn kill(&self, result: ExitResult) {
        {
            let mut st = self.state.lock();
            if !st.alive || st.kill.is_some() {
                return;
            }
            st.kill = Some(Box::new(result));
            self.flags.fetch_or(KILLED, Ordering::Release);
        }
        // Every waiter: a driver and the process itself (or a blocked write in it) may wait.
        self.killed.notify_waiters();
        self.ready.notify();
    }

    pub(crate) fn kill_requested(&self) -> Option<ExitResult> {
        if self.flags.load(Ordering::Acquire) & KILLED == 0 {
            return None;
        }
        self.state.lock().kill.as_deref().cloned()
    }

    /// Waits until the process is asked to stop.
    pub(crate) async fn wait_killed(&self) -> ExitResult {
        loop {
            // Registered before the check: `kill` wakes the waiters present, it stores no permit.
            let notified = self.killed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.kill_requested() {
                return result;
            }
            notified.await;
        }
    }

    /// Adds `peer` to one of the relation sets, if the process is alive: `None` if it is not,
    /// otherwise whether `peer` was new there. Checking `alive` under the same lock as the
    /// insert is what orders the relation with the exit protocol.
    pub(crate) fn relate(&self, side: Side, peer: &Pid) -> Option<bool> {
        let mut st = self.state.lock();
        if !st.alive {
            return None;
        }
        Some(st.rel().side(side).insert(peer.clone()))
    }

    /// Removes `peer` from one of the relation sets; whether it was there.
    pub(crate) fn unrelate(&self, side: Side, peer: &Pid) -> bool {
        let mut st = self.state.lock();
        st.rel
            .as_mut()
            .is_some_and(|rel| rel.side(side).remove(peer))
    }

    /// Marks the process dead and takes what must be notified. `None` if it already was.
    pub(crate) fn take_remains(&self) -> Option<Relations> {
        let mut st = self.state.lock();
        if !st.alive {
            return None;
        }
        st.alive = false;
        // Taken, not cleared: a stale handle may keep the cell alive, not its storage.
        st.inbox = VecDeque::new();
        st.inbox_bytes = 0;
        st.events = VecDeque::new();
        self.inbox_len.store(0, Ordering::Release);
        self.inbox_bytes.store(0, Ordering::Release);
        Some(st.rel.take().map_or_else(Relations::default, |rel| *rel))
    }
}

/// Wakes the task that drives a process when something arrives.
///
/// A process is driven by one task (its body, a relay connection, a Lua worker's task), so
/// one waker slot is enough; it costs an atomic swap where a `Notify` took a lock and walked a
/// waiter list on every message. Each change also bumps a version, so a wait created *before*
/// a check of the queues (see [`Changed`]) completes even if the change lands between the
/// check and the wait's first poll.
#[derive(Default)]
pub(crate) struct Ready {
    waker: AtomicWaker,
    version: AtomicU64,
    /// The shard of the thread that registered the waker ([`shard::here`]): a driver task
    /// stays on its shard, so that is where a wake-up lands, and a [`WakeBatch`] open on
    /// another thread hands it over with the others for that shard.
    ///
    /// [`shard::here`]: crate::shard::here
    /// [`WakeBatch`]: crate::WakeBatch
    home: AtomicU64,
}

impl Ready {
    /// Something changed: wake the driver.
    pub(crate) fn notify(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        let home = self.home.load(Ordering::Relaxed);
        if home != 0 && crate::wakes::batching() {
            if let Some(waker) = self.waker.take().and_then(|w| crate::wakes::keep(home, w)) {
                waker.wake();
            }
        } else {
            self.waker.wake();
        }
    }

    /// Wakes `waker` at the next change (replacing the waker registered before).
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
        let here = crate::shard::here();
        if self.home.load(Ordering::Relaxed) != here {
            self.home.store(here, Ordering::Relaxed);
        }
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// Completes at the first change (a message, an event or a stop request) made after it was
/// created; see [`Context::changed`](crate::Context::changed).
#[must_use = "futures do nothing unless polled"]
pub struct Changed {
    cell: Arc<Cell>,
    seen: u64,
}

impl std::fmt::Debug for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changed")
            .field("pid", &self.cell.pid)
            .finish()
    }
}

impl Changed {
    pub(crate) fn new(cell: Arc<Cell>) -> Changed {
        let seen = cell.ready.version();
        Changed { cell, seen }
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        // Registered before the check: a change after the check wakes this waker.
        self.cell.ready.register(cx.waker());
        if self.cell.ready.version() != self.seen {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// An estimate of the memory a queued message holds, for the inbox byte mark.
fn msg_size(msg: &Message) -> usize {
    fn size(v: &crate::Value) -> usize {
        use crate::Value;
        match v {
            Value::String(s) => 32 + s.len(),
            Value::Bytes(b) => 32 + b.len(),
            Value::Array(items) => 32 + items.iter().map(size).sum::<usize>(),
            Value::Map(m) => 32 + m.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>(),
            Value::Opaque(o) => 64 + o.size_hint(),
            _ => 32,
        }
    }
    64 + msg.topic().len() + size(msg.payload()) + msg.extra().iter().map(size).sum::<usize>()
}
