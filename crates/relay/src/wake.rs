//! Which of a connection's sources woke its task.
//!
//! A connection task waits on its mailbox, its socket and its timer at once. With one waker
//! for all three, every wake-up re-polls every source, and the socket and the timer are the
//! dear ones: polling the socket re-registers with the reactor under its lock, polling the
//! timer checks its entry. A relay connection wakes twice per echoed message (the client's
//! frame, then the target's reply) and once per delivery of a broadcast, and most of those
//! wakes come from the mailbox, which is cheap to look at (atomics). So the socket and the
//! timer each get a waker of their own that marks its source as due before waking the task,
//! and the task polls a source only when it is due (docs/BENCHMARKS.md, "Round 5").
//!
//! A source stays due for as long as polling it may make progress: from its wake-up until
//! a poll of it returns `Pending` (which registers its waker again).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use parking_lot::Mutex;

const SOCKET: u8 = 1;
const TIMER: u8 = 2;

/// What the task's sources' wakers share: the sources marked due and the task's own waker.
///
/// The task's waker is kept, not taken by a wake-up (as an `AtomicWaker` would): a task's
/// waker does not change from poll to poll, so the task registers it once instead of on every
/// poll, and the lock is taken only by a source's wake-up.
#[derive(Default)]
struct Marks {
    due: AtomicU8,
    task: Mutex<Option<Waker>>,
}

impl Marks {
    fn mark(&self, source: u8) {
        self.due.fetch_or(source, Ordering::AcqRel);
        // Under the lock: a wake-up only schedules the task, it never runs it here.
        if let Some(task) = &*self.task.lock() {
            task.wake_by_ref();
        }
    }
}

/// The socket's waker: marks the socket due, then wakes the task.
struct SocketWake(Marks);

impl Wake for SocketWake {
    fn wake(self: Arc<Self>) {
        self.0.mark(SOCKET);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.mark(SOCKET);
    }
}

/// The timer's waker: marks the timer due, then wakes the task.
struct TimerWake(Arc<SocketWake>);

impl Wake for TimerWake {
    fn wake(self: Arc<Self>) {
        self.0 .0.mark(TIMER);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0 .0.mark(TIMER);
    }
}

/// A connection's wakers for its socket and its timer, and which of the two are due.
pub(crate) struct SourceWakers {
    marks: Arc<SocketWake>,
    socket: Waker,
    timer: Waker,
    /// The task's waker as last registered in `marks`.
    task: Option<Waker>,
    socket_due: bool,
    timer_due: bool,
}

impl SourceWakers {
    /// Both sources start due: nothing is registered yet.
    pub(crate) fn new() -> SourceWakers {
        let marks = Arc::new(SocketWake(Marks::default()));
        SourceWakers {
            socket: Waker::from(marks.clone()),
            timer: Waker::from(Arc::new(TimerWake(marks.clone()))),
            marks,
            task: None,
            socket_due: true,
            timer_due: true,
        }
    }

    /// Takes the marks made since the last look, waking `task` for later ones. Call at the
    /// start of every poll of the task, before looking at any source.
    pub(crate) fn begin(&mut self, task: &Waker) {
        let marks = &self.marks.0;
        if !self
            .task
            .as_ref()
            .is_some_and(|known| known.will_wake(task))
        {
            self.task = Some(task.clone());
            *marks.task.lock() = Some(task.clone());
        }
        // Swapped after registering: a mark made in between wakes the task again.
        let due = marks.due.swap(0, Ordering::AcqRel);
        self.socket_due |= due & SOCKET != 0;
        self.timer_due |= due & TIMER != 0;
    }

    /// The waker to poll the socket (and what waits with it) with, if it is due.
    pub(crate) fn socket(&self) -> Option<&Waker> {
        self.socket_due.then_some(&self.socket)
    }

    /// The waker to poll the timer with, if it is due.
    pub(crate) fn timer(&self) -> Option<&Waker> {
        self.timer_due.then_some(&self.timer)
    }

    /// A poll of the socket returned `Pending`: its waker is registered.
    pub(crate) fn socket_idle(&mut self) {
        self.socket_due = false;
    }

    /// A poll of the timer returned `Pending`: its waker is registered.
    pub(crate) fn timer_idle(&mut self) {
        self.timer_due = false;
    }

    /// Makes both sources due: after a wait that polled them with another waker, or a
    /// timer reset, only a poll registers their wakers again.
    pub(crate) fn all_due(&mut self) {
        self.socket_due = true;
        self.timer_due = true;
    }

    /// Makes the timer due (it was reset).
    pub(crate) fn timer_due(&mut self) {
        self.timer_due = true;
    }

    /// Wakes the task (as last registered), for work left to it from outside its poll.
    pub(crate) fn wake_task(&self) {
        if let Some(task) = &self.task {
            task.wake_by_ref();
        }
    }

    /// Makes the socket due (what decides whether to read it changed).
    pub(crate) fn socket_due(&mut self) {
        self.socket_due = true;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_source_is_due_from_its_wake_up_until_it_goes_idle() {
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        let mut wakers = SourceWakers::new();
        wakers.begin(&task);
        assert!(wakers.socket().is_some() && wakers.timer().is_some());
        wakers.socket_idle();
        wakers.timer_idle();
        wakers.begin(&task);
        assert!(wakers.socket().is_none() && wakers.timer().is_none());

        // The socket's waker (as a reactor holds it) marks only the socket, and wakes the task.
        let socket = wakers.socket.clone();
        socket.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        wakers.begin(&task);
        assert!(wakers.socket().is_some() && wakers.timer().is_none());
        // Still due on the next look, until a poll of it goes idle.
        wakers.begin(&task);
        assert!(wakers.socket().is_some());
        wakers.socket_idle();

        wakers.timer.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        wakers.begin(&task);
        assert!(wakers.socket().is_none() && wakers.timer().is_some());
        wakers.timer_idle();

        wakers.all_due();
        assert!(wakers.socket().is_some() && wakers.timer().is_some());
    }

    #[test]
    fn every_wake_up_wakes_the_task_and_a_new_task_waker_replaces_the_old() {
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut wakers = SourceWakers::new();
        wakers.begin(&Waker::from(first.clone()));
        // Kept, not taken: the second wake-up wakes the task without a new registration.
        wakers.socket.wake_by_ref();
        wakers.socket.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 2);
        wakers.begin(&Waker::from(second.clone()));
        wakers.timer.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 2);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_mark_made_before_the_task_registers_is_not_lost() {
        let count = Arc::new(Count::default());
        let mut wakers = SourceWakers::new();
        wakers.socket_idle();
        wakers.timer_idle();
        // Woken before any task registered: nobody to wake, but the mark stays.
        wakers.timer.wake_by_ref();
        wakers.begin(&Waker::from(count));
        assert!(wakers.timer().is_some() && wakers.socket().is_none());
    }
}
