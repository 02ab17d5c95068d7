//! The sorting of a Lua process's messages between its inbox and its `process.listen`
//! channels (the Lua side of the module is `crate::modules::listen`).
//!
//! The process has one queue of messages (its inbox in the runtime). While the process listens
//! on some topic, its [`Mailbox`] sorts that queue on the Lua side: each reader (the inbox, a
//! listen channel) first moves messages from the runtime queue to their destination: the
//! listen channel of their topic, or the inbox's own queue here. Each destination holds at
//! most [`LISTEN_CAPACITY`] messages. When the next message's destination is full, it is held
//! back (one message) and sorting stops: later messages stay in the runtime queue, where they
//! count against the inbox's high-water mark, so the relay stops reading from clients
//! (the inbox's backpressure rule). Nothing is dropped; a channel nobody reads holds back
//! the process's later messages, as a full inbox would.
//!
//! Without listeners the inbox takes messages straight from the runtime queue: the sorting
//! costs nothing to processes that do not use `listen`.
//!
//! It is part of a process's state ([`crate::actor::ProcState`]), so it knows nothing of the
//! running actor: the module functions find the process and hand its mailbox what it needs.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::Waker;

use wsrelay_process::{Context, Message};

use crate::modules::errors::{Kind, WippyError};
use crate::signal::Signal;

/// The most messages a listen channel (and the inbox's sorted queue) holds.
pub(crate) const LISTEN_CAPACITY: usize = 256;

/// The most topics one process listens on at once.
pub(crate) const MAX_LISTENERS: usize = 64;

/// The sorting of one process's messages between its inbox and its listen channels.
#[derive(Default)]
pub(crate) struct Mailbox {
    listeners: RefCell<HashMap<String, Rc<Listener>>>,
    /// Inbox messages taken from the runtime queue while sorting.
    inbox: RefCell<VecDeque<Message>>,
    /// The message whose destination was full.
    held: RefCell<Option<Message>>,
    /// Notified when sorting moved messages, for waiters on another destination. Shared with
    /// the waits, which must not keep the process's state alive.
    signal: Rc<Signal>,
}

/// A listen channel's state.
pub(crate) struct Listener {
    /// `true`: the channel yields message objects; `false`: payload data.
    pub(crate) whole: bool,
    queue: RefCell<VecDeque<Message>>,
    closed: Cell<bool>,
}

/// The Lua object of a listen channel.
#[derive(Clone)]
pub(crate) struct ListenChan(pub(crate) Rc<Listener>);

impl Mailbox {
    /// Whether messages are sorted (some topic is listened to, or sorted messages wait).
    fn active(&self) -> bool {
        !self.listeners.borrow().is_empty()
            || !self.inbox.borrow().is_empty()
            || self.held.borrow().is_some()
    }

    /// Moves messages from the runtime queue to their destinations until it is empty or the
    /// next destination is full.
    fn sort(&self, ctx: &Context) {
        let listeners = self.listeners.borrow();
        let mut inbox = self.inbox.borrow_mut();
        let mut held = self.held.borrow_mut();
        let mut moved = false;
        loop {
            let Some(msg) = held.take().or_else(|| ctx.try_recv()) else {
                break;
            };
            let full = match listeners.get(msg.topic()) {
                Some(listener) => {
                    let mut q = listener.queue.borrow_mut();
                    if q.len() < LISTEN_CAPACITY {
                        q.push_back(msg);
                        None
                    } else {
                        Some(msg)
                    }
                }
                None => {
                    if inbox.len() < LISTEN_CAPACITY {
                        inbox.push_back(msg);
                        None
                    } else {
                        Some(msg)
                    }
                }
            };
            match full {
                None => moved = true,
                Some(msg) => {
                    *held = Some(msg);
                    break;
                }
            }
        }
        drop((listeners, inbox, held));
        if moved {
            self.signal.notify();
        }
    }

    /// The next inbox message (for `inbox:receive()` and the inbox case of a select).
    pub(crate) fn next_inbox(&self, ctx: &Context) -> Option<Message> {
        if !self.active() {
            return ctx.try_recv();
        }
        self.sort(ctx);
        let msg = self.inbox.borrow_mut().pop_front();
        if msg.is_some() {
            // A message held back for the inbox may move now.
            self.sort(ctx);
        }
        msg
    }

    /// Puts `msg`, just taken by [`next_inbox`](Mailbox::next_inbox), back at the head of
    /// the inbox: the next reader takes it first.
    pub(crate) fn give_back(&self, msg: Message) {
        self.inbox.borrow_mut().push_front(msg);
    }

    /// Also wakes `waker` when sorting moves messages (another reader of the process sorted
    /// them out of the runtime queue).
    pub(crate) fn wake_on_change(&self, waker: &Waker) {
        if self.active() {
            self.signal.register(waker);
        }
    }

    /// Completes at the next move by the sorting after this call.
    pub(crate) fn changed(&self) -> crate::signal::Changed<Signal> {
        crate::signal::Changed::new(self.signal.clone(), |s: &Signal| s)
    }

    /// The next message of `listener`: `Some(Some(msg))`, `Some(None)` when it is closed and
    /// drained, `None` when a reader would wait.
    pub(crate) fn next_of(&self, ctx: &Context, listener: &Listener) -> Option<Option<Message>> {
        if !listener.closed.get() {
            self.sort(ctx);
        }
        let msg = listener.queue.borrow_mut().pop_front();
        match msg {
            Some(msg) => {
                self.sort(ctx);
                Some(Some(msg))
            }
            None if listener.closed.get() => Some(None),
            None => None,
        }
    }

    pub(crate) fn listen(&self, topic: String, whole: bool) -> Result<ListenChan, WippyError> {
        let mut listeners = self.listeners.borrow_mut();
        if listeners.contains_key(&topic) {
            return Err(WippyError::new(
                Kind::AlreadyExists,
                format!("the process listens on topic {topic:?} already"),
            ));
        }
        if listeners.len() >= MAX_LISTENERS {
            return Err(WippyError::invalid(format!(
                "the process listens on {MAX_LISTENERS} topics already"
            )));
        }
        let listener = Rc::new(Listener {
            whole,
            queue: RefCell::new(VecDeque::new()),
            closed: Cell::new(false),
        });
        listeners.insert(topic, listener.clone());
        Ok(ListenChan(listener))
    }

    /// Stops `listener`: its topic goes to the inbox again, and the messages it still holds
    /// go to the inbox (none is lost). `false` if it was stopped before.
    pub(crate) fn unlisten(&self, ctx: &Context, listener: &Rc<Listener>) -> bool {
        let removed = {
            let mut listeners = self.listeners.borrow_mut();
            let topic = listeners
                .iter()
                .find(|(_, l)| Rc::ptr_eq(l, listener))
                .map(|(t, _)| t.clone());
            topic.and_then(|t| listeners.remove(&t))
        };
        if removed.is_none() {
            return false;
        }
        listener.closed.set(true);
        let queued = std::mem::take(&mut *listener.queue.borrow_mut());
        self.inbox.borrow_mut().extend(queued);
        self.signal.notify();
        self.sort(ctx);
        true
    }
}
