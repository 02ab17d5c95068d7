//! A single-threaded change signal: futures created before a change complete after it.
//!
//! Channels wake every waiter on any change (a value sent, taken, or the channel closed);
//! waiters re-check their condition. A version counter makes "created before the change" exact
//! without borrowing the signal in the future, so waits can be boxed and kept in a select.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes everything that waits for a change.
#[derive(Default)]
pub(crate) struct Signal {
    version: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Records a change and wakes every waiter.
    pub(crate) fn notify(&self) {
        self.version.set(self.version.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// The current version, to wait for the next change with [`Changed`].
    pub(crate) fn version(&self) -> u64 {
        self.version.get()
    }

    /// Wakes `waker` at the next change (for hand-written polling loops).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn poll_changed(&self, seen: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.version.get() != seen {
            return Poll::Ready(());
        }
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Completes once the signal changed after `seen`.
pub(crate) struct Changed<S> {
    owner: Rc<S>,
    signal: fn(&S) -> &Signal,
    seen: u64,
}

impl<S> Changed<S> {
    /// Waits for the next change of `signal(owner)` after its current version.
    pub(crate) fn new(owner: Rc<S>, signal: fn(&S) -> &Signal) -> Changed<S> {
        let seen = signal(&owner).version();
        Changed {
            owner,
            signal,
            seen,
        }
    }
}

impl<S> Future for Changed<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        (self.signal)(&self.owner).poll_changed(self.seen, cx)
    }
}
