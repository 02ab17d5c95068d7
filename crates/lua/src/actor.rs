//! Who is running: the Lua process or function call whose coroutine a worker is resuming.
//!
//! Module functions are shared by every process of a worker's Lua state, so they do not
//! capture a process: they ask [`current`]. The worker sets it around every resume of a
//! coroutine ([`Scoped`]), and only one coroutine of a state runs at a time, so it is always
//! the caller. The same record carries what the instruction hook needs to judge the running
//! slice (start time, memory at start, stop and failure flags).

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use mlua::{AnyUserData, Lua};
use wsrelay_process::{Context, ExitResult, Node};

use crate::http_types::{HttpRequest, HttpResponse};

thread_local! {
    static CURRENT: RefCell<Option<Actor>> = const { RefCell::new(None) };
}

/// The running Lua process or call.
#[derive(Clone)]
pub(crate) enum Actor {
    /// A `process.lua` process.
    Process(Rc<ProcState>),
    /// A `function.lua` call (HTTP handler or plain function).
    Call(Rc<CallState>),
}

/// The caller of a module function, if a Lua process or call is running on this thread.
pub(crate) fn current() -> Option<Actor> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The running process, or the error text Lua gets outside of one.
pub(crate) fn current_process() -> Result<Rc<ProcState>, String> {
    match current() {
        Some(Actor::Process(p)) => Ok(p),
        _ => Err("not running in a process".to_owned()),
    }
}

/// What a slice of execution has used so far (reset at every resume).
#[derive(Default)]
pub(crate) struct Slice {
    pub(crate) started: Cell<Option<Instant>>,
    pub(crate) memory_at_start: Cell<usize>,
    /// Why the hook decided the actor must end (`cpu budget exceeded`, `out of memory`).
    pub(crate) failure: RefCell<Option<String>>,
    /// The thread of the actor's main coroutine (`lua_State` address), the only one the hook
    /// may preempt: a yield inside a coroutine the Lua code resumes itself would be taken as
    /// that coroutine's own yield.
    pub(crate) main_thread: Cell<usize>,
    /// Set when the hook asked for a yield to stop the actor; a second check in the same
    /// slice means the yield was impossible there.
    pub(crate) yield_refused: Cell<bool>,
}

/// A Lua process.
pub(crate) struct ProcState {
    pub(crate) ctx: Context,
    pub(crate) trap_links: Cell<bool>,
    /// `process.inbox()` / `process.events()` return the same object every time, so that
    /// `result.channel == inbox` works after a select.
    pub(crate) inbox: OnceCell<AnyUserData>,
    pub(crate) events: OnceCell<AnyUserData>,
    pub(crate) slice: Slice,
}

/// A function call: an HTTP handler (with its request and response) or a plain function.
pub(crate) struct CallState {
    pub(crate) node: Node,
    pub(crate) request: Option<HttpRequest>,
    pub(crate) response: RefCell<HttpResponse>,
    pub(crate) slice: Slice,
}

impl ProcState {
    pub(crate) fn new(ctx: Context) -> ProcState {
        ProcState {
            ctx,
            trap_links: Cell::new(false),
            inbox: OnceCell::new(),
            events: OnceCell::new(),
            slice: Slice::default(),
        }
    }
}

impl Actor {
    pub(crate) fn slice(&self) -> &Slice {
        match self {
            Actor::Process(p) => &p.slice,
            Actor::Call(c) => &c.slice,
        }
    }

    pub(crate) fn node(&self) -> &Node {
        match self {
            Actor::Process(p) => p.ctx.node(),
            Actor::Call(c) => &c.node,
        }
    }

    /// Whether the runtime asked this actor to stop (terminate, failed link, shutdown).
    pub(crate) fn stop_requested(&self) -> Option<ExitResult> {
        match self {
            Actor::Process(p) => p.ctx.stop_requested(),
            Actor::Call(_) => None,
        }
    }
}

/// Runs `inner` (the actor's coroutine) with [`current`] set to `actor` during each poll, and
/// ends it as soon as the hook has marked it failed or the runtime asked it to stop.
pub(crate) struct Scoped<F> {
    actor: Actor,
    lua: Lua,
    inner: Pin<Box<F>>,
}

impl<F> Scoped<F> {
    pub(crate) fn new(actor: Actor, lua: Lua, inner: F) -> Scoped<F> {
        Scoped {
            actor,
            lua,
            inner: Box::pin(inner),
        }
    }
}

/// How a [`Scoped`] run ended.
pub(crate) enum Outcome<T> {
    /// The coroutine finished.
    Done(T),
    /// The hook failed it (budget, memory).
    Failed(String),
    /// The runtime asked it to stop.
    Stopped(ExitResult),
}

impl<F: Future> Future for Scoped<F> {
    type Output = Outcome<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let slice = this.actor.slice();
        slice.started.set(Some(Instant::now()));
        slice.memory_at_start.set(this.lua.used_memory());
        slice.yield_refused.set(false);
        let previous = CURRENT.with(|c| c.replace(Some(this.actor.clone())));
        let polled = this.inner.as_mut().poll(cx);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        slice.started.set(None);
        if let Some(failure) = slice.failure.borrow().clone() {
            return Poll::Ready(Outcome::Failed(failure));
        }
        if let Some(stop) = this.actor.stop_requested() {
            return Poll::Ready(Outcome::Stopped(stop));
        }
        polled.map(Outcome::Done)
    }
}
