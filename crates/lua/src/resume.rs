//! Driving an actor's coroutine: every poll of [`Scoped`] is one resume, one slice.
//!
//! Around each resume it sets [`current`](crate::actor::current) to the actor (module
//! functions ask it who calls), starts the slice (time, the per-slice memory limit, the busy
//! mark the dispatcher reads), and afterwards ends the actor if the hook marked it failed or
//! the runtime asked it to stop.
//!
//! **Taking turns.** A coroutine preempted by the hook asks to run again at once (mlua wakes
//! its task before returning `Pending`). The worker's `LocalSet` would then poll it again
//! before the tasks woken from other threads — it looks at those only every 31 polls — so
//! one busy process could hold back the messages of the others on its worker for 31 slices
//! and more (measured: 126 ms with 2 ms slices). A task that wakes itself during its resume
//! therefore waits for one turn of the runtime (`tokio::task::yield_now`) before its next
//! slice, behind everything that became ready meanwhile.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Instant;

use wsrelay_process::ExitResult;

use crate::actor::{Actor, CURRENT};
use crate::dispatch::Busy;

/// What every resume on one worker shares: its state's memory count and limits and the mark
/// the dispatcher reads to skip a stuck worker.
#[derive(Clone)]
pub(crate) struct Resumes {
    /// The state's memory count and limit.
    pub(crate) memory: crate::raw::Memory,
    /// The most one process may add to the state in one slice.
    pub(crate) process_memory_limit: usize,
    /// The limit of the whole state.
    pub(crate) worker_memory_limit: usize,
    /// The conversion budget (`max_value_size`).
    pub(crate) value_limit: usize,
    pub(crate) busy: Arc<Busy>,
    /// Instructions between two checks of the hook, once armed.
    pub(crate) hook_interval: u32,
}

impl Resumes {
    /// A resume starts: the state may grow by the per-process limit during it. Enforced by
    /// the allocator, so an allocation inside a C function (`string.rep`, a `string.pack`
    /// padding, a `table.concat` buffer) fails at once instead of after its work; Lua runs
    /// a full collection before failing an allocation, so another process's garbage is not
    /// counted.
    fn enter(&self, now: Instant) {
        self.busy.enter(now);
        let limit = self
            .memory
            .used()
            .saturating_add(self.process_memory_limit)
            .min(self.worker_memory_limit);
        self.memory.set_limit(limit);
        crate::raw::enter(limit, self.value_limit);
    }

    /// The resume ended: code outside the slices (setting up a process) is bounded by the
    /// worker's limit only.
    fn leave(&self) {
        self.memory.set_limit(self.worker_memory_limit);
        crate::raw::leave(self.worker_memory_limit);
        self.busy.record_heap(self.memory.used());
        self.busy.leave();
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

/// Runs `inner` (the actor's coroutine) one slice per poll (see the module docs), and ends it
/// as soon as the hook has marked it failed or the runtime asked it to stop.
pub(crate) struct Scoped<F> {
    actor: Actor,
    resumes: Resumes,
    inner: Pin<Box<F>>,
    /// The turn a task that woke itself waits for before its next slice.
    turn: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The waker resumes run with, kept from one resume to the next while the task's waker
    /// stays the same (one allocation per process instead of one per message).
    wake: Option<(Arc<SelfWake>, Waker)>,
    /// The last resume ended in a wait: the coroutine yields until something else wakes it
    /// (not preempted, not asking to run again).
    waiting: bool,
}

thread_local! {
    /// The waker of the resume running on this thread, for module functions that wait by
    /// hand (see [`with_waker`]).
    static WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Calls `f` with the waker of the running resume, if one runs. A module function that finds
/// nothing to take registers it where the change will come from, then yields mlua's "pending"
/// marker: the task sleeps until that waker fires.
pub(crate) fn with_waker(f: impl FnOnce(&Waker)) {
    WAKER.with(|w| {
        if let Some(waker) = w.borrow().as_ref() {
            f(waker);
        }
    });
}

impl<F> Scoped<F> {
    pub(crate) fn new(actor: Actor, resumes: Resumes, inner: F) -> Scoped<F> {
        Scoped {
            actor,
            resumes,
            inner: Box::pin(inner),
            turn: None,
            wake: None,
            waiting: false,
        }
    }

    /// Whether the last resume ended in a wait (see [`Scoped::waiting`]'s field): a process
    /// that comes to its first one has set itself up.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting
    }

    /// The resume's waker for the task waker `task`, with its flags reset.
    fn resume_waker(&mut self, task: &Waker) -> (Arc<SelfWake>, Waker) {
        match &self.wake {
            Some((wake, waker)) if wake.task.will_wake(task) => {
                wake.start();
                (wake.clone(), waker.clone())
            }
            _ => {
                let wake = Arc::new(SelfWake::new(task.clone()));
                let waker = Waker::from(wake.clone());
                self.wake = Some((wake.clone(), waker.clone()));
                (wake, waker)
            }
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = Outcome<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(turn) = &mut this.turn {
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.turn = None;
        }
        let (wake, waker) = this.resume_waker(cx.waker());
        let slice = this.actor.slice();
        let now = Instant::now();
        slice.started.set(Some(now));
        slice.yield_refused.set(false);
        slice.sliced.set(false);
        this.resumes.enter(now);
        let previous = CURRENT.with(|c| c.replace(Some(this.actor.clone())));
        let outer = WAKER.with(|w| w.replace(Some(waker.clone())));
        // The actor's coroutine (held by `inner`) is the thread a preemption signal arms.
        let running =
            crate::raw::Running::enter(slice.main_thread.get(), this.resumes.hook_interval);
        let polled = this
            .inner
            .as_mut()
            .poll(&mut TaskContext::from_waker(&waker));
        drop(running);
        let woke_itself = wake.resume_ended();
        WAKER.with(|w| *w.borrow_mut() = outer);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        this.resumes.leave();
        slice.started.set(None);
        if let Some(failure) = slice.failure.borrow().clone() {
            return Poll::Ready(Outcome::Failed(failure));
        }
        if let Some(stop) = this.actor.stop_requested() {
            return Poll::Ready(Outcome::Stopped(stop));
        }
        if polled.is_pending() && slice.sliced.get() {
            this.resumes.busy.preempted();
        }
        this.waiting = polled.is_pending() && !woke_itself;
        if polled.is_pending() && woke_itself {
            let mut turn: Pin<Box<dyn Future<Output = ()>>> = Box::pin(tokio::task::yield_now());
            if turn.as_mut().poll(cx).is_pending() {
                this.turn = Some(turn);
            } else {
                cx.waker().wake_by_ref();
            }
        }
        polled.map(Outcome::Done)
    }
}

/// The waker a resume runs with: a wake during the resume (the task waking itself) is held
/// back and reported; later wakes (a message arriving) go to the task at once.
struct SelfWake {
    task: Waker,
    resuming: AtomicBool,
    woken: AtomicBool,
}

impl SelfWake {
    /// A new resume starts with this waker.
    fn start(&self) {
        self.woken.store(false, Ordering::SeqCst);
        self.resuming.store(true, Ordering::SeqCst);
    }

    fn new(task: Waker) -> SelfWake {
        SelfWake {
            task,
            resuming: AtomicBool::new(true),
            woken: AtomicBool::new(false),
        }
    }

    /// The resume ended; whether the task was woken during it.
    fn resume_ended(&self) -> bool {
        self.resuming.store(false, Ordering::SeqCst);
        self.woken.load(Ordering::SeqCst)
    }
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.resuming.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
            // Woken from another thread just as the resume ends: not lost.
            if !self.resuming.load(Ordering::SeqCst) {
                self.task.wake_by_ref();
            }
        } else {
            self.task.wake_by_ref();
        }
    }
}
