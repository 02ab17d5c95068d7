//! Who is running: the Lua process or function call whose coroutine a worker is resuming.
//!
//! Module functions are shared by every process of a worker's Lua state, so they do not
//! capture a process: they ask [`current`]. The worker sets it around every resume of a
//! coroutine ([`Scoped`](crate::resume::Scoped)), and only one coroutine of a state runs at a time, so it is always
//! the caller. The same record carries what the instruction hook needs to judge the running
//! slice (start time, stop and failure flags).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use wsrelay_process::{Context, ExitResult, Node};

use crate::http_types::{HttpRequest, HttpResponse};
use crate::modules::subscription::Watches;
use crate::stdlib::xoshiro::Xoshiro;

thread_local! {
    /// The actor being resumed on this thread (set by [`crate::resume::Scoped`]).
    pub(crate) static CURRENT: RefCell<Option<Actor>> = const { RefCell::new(None) };
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
    /// Why the hook decided the actor must end (`cpu budget exceeded`, `out of memory`).
    pub(crate) failure: RefCell<Option<String>>,
    /// The thread of the actor's main coroutine (`lua_State` address): a yield of any other
    /// thread goes to a resumer in the Lua code, which must be told it was a preemption.
    pub(crate) main_thread: Cell<usize>,
    /// Set when the hook asked for a yield to stop the actor; a second check in the same
    /// slice means the yield was impossible there.
    pub(crate) yield_refused: Cell<bool>,
    /// Set when the hook asked for a yield because the resume ran a whole time slice (a
    /// preemption); the driver counts the resume as preempted if it then yields.
    pub(crate) sliced: Cell<bool>,
    /// The coroutines of the Lua code (`lua_State` addresses) the hook preempted and whose
    /// resumers have not taken the mark yet (see [`crate::preempt`]).
    pub(crate) preempted: Marks,
}

/// A small set of thread addresses: one per coroutine nested in another, so a handful.
#[derive(Default)]
pub(crate) struct Marks(RefCell<Vec<usize>>);

impl Marks {
    /// A set never holds more: a mark left by a thread that died before its resumer looked
    /// (it could not yield where it was preempted) is dropped eventually.
    const MAX: usize = 64;

    pub(crate) fn mark(&self, thread: usize) {
        let mut marks = self.0.borrow_mut();
        if !marks.contains(&thread) {
            if marks.len() == Marks::MAX {
                marks.remove(0);
            }
            marks.push(thread);
        }
    }

    /// Removes the mark of `thread`; whether it had one.
    pub(crate) fn take(&self, thread: usize) -> bool {
        let mut marks = self.0.borrow_mut();
        match marks.iter().position(|&t| t == thread) {
            Some(at) => {
                marks.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

/// A Lua process.
pub(crate) struct ProcState {
    pub(crate) ctx: Context,
    /// `math.random`'s generator, seeded on first use.
    pub(crate) rng: RefCell<Option<Xoshiro>>,
    pub(crate) trap_links: Cell<bool>,
    pub(crate) slice: Slice,
    /// The sorting of messages between the inbox and `process.listen` channels.
    pub(crate) mailbox: crate::mailbox::Mailbox,
    /// The subscriptions (`pg`, `events`) the process opened, closed when it ends (not when
    /// the Lua collector gets to them): subscriptions are capped.
    pub(crate) watches: Watches,
}

/// A function call: an HTTP handler (with its request and response) or a plain function.
pub(crate) struct CallState {
    pub(crate) node: Node,
    pub(crate) request: Option<HttpRequest>,
    /// Status and headers; the body is gathered in `body` (appending to `Bytes` would copy
    /// the whole body at every write).
    pub(crate) response: RefCell<HttpResponse>,
    pub(crate) body: RefCell<bytes::BytesMut>,
    /// `math.random`'s generator, seeded on first use.
    pub(crate) rng: RefCell<Option<Xoshiro>>,
    pub(crate) slice: Slice,
}

impl CallState {
    /// A call of a function (with `request` if it is an HTTP handler).
    pub(crate) fn new(node: Node, request: Option<HttpRequest>) -> CallState {
        CallState {
            node,
            request,
            response: RefCell::new(HttpResponse::default()),
            body: RefCell::default(),
            rng: RefCell::default(),
            slice: Slice::default(),
        }
    }

    /// The bytes of the response so far: headers (names and values) and body.
    pub(crate) fn response_size(&self) -> usize {
        let headers: usize = self
            .response
            .borrow()
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        headers + self.body.borrow().len()
    }

    /// The finished response.
    pub(crate) fn take_response(&self) -> HttpResponse {
        let mut response = self.response.borrow().clone();
        response.body = self.body.take().freeze();
        response
    }
}

impl ProcState {
    pub(crate) fn new(ctx: Context) -> ProcState {
        ProcState {
            ctx,
            rng: RefCell::default(),
            trap_links: Cell::new(false),
            slice: Slice::default(),
            mailbox: Default::default(),
            watches: Default::default(),
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

    /// The actor's own `math.random` generator.
    pub(crate) fn rng(&self) -> &RefCell<Option<Xoshiro>> {
        match self {
            Actor::Process(p) => &p.rng,
            Actor::Call(c) => &c.rng,
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
