//! A subscriber's bounded buffer of events: what a group watch (`groups/watch.rs`) and an
//! event bus subscription (`bus.rs`) hand to their reader.
//!
//! **Bounds.** A feed buffers at most [`FEED_BUFFER`] events. Publishing never waits for a slow
//! reader: when the buffer is full the event is dropped and counted, and so is every later
//! event until the reader has read the buffer; it then gets one [`Fed::Lost`] with the count,
//! in the place of the gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// The most events a subscription buffers before it drops and counts.
pub const FEED_BUFFER: usize = 64;

/// What a subscription's reader takes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fed<E> {
    /// An event.
    Event(E),
    /// This many events were dropped here because the buffer was full.
    Lost(u64),
}

/// One subscription's buffer and wake-up.
pub(crate) struct Feed<E> {
    state: Mutex<FeedState<E>>,
    notify: Notify,
}

struct FeedState<E> {
    queue: VecDeque<E>,
    /// Events lost since the buffer filled; reported once the buffer is read.
    dropped: u64,
    closed: bool,
}

impl<E> Feed<E> {
    pub(crate) fn new() -> Feed<E> {
        Feed {
            state: Mutex::new(FeedState {
                queue: VecDeque::new(),
                dropped: 0,
                closed: false,
            }),
            notify: Notify::new(),
        }
    }

    /// Buffers `event`, or counts it as lost (see the module docs); nothing once closed.
    pub(crate) fn push(&self, event: E) {
        {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            // Once something was lost, later events are lost too until the marker is read:
            // the marker stands exactly where the gap is.
            if st.dropped > 0 || st.queue.len() >= FEED_BUFFER {
                st.dropped += 1;
                return;
            }
            st.queue.push_back(event);
        }
        self.notify.notify_one();
    }

    /// The next event, or the count of those lost, if one is ready.
    pub(crate) fn try_next(&self) -> Option<Fed<E>> {
        let mut st = self.state.lock();
        if let Some(event) = st.queue.pop_front() {
            return Some(Fed::Event(event));
        }
        if st.dropped > 0 {
            return Some(Fed::Lost(std::mem::take(&mut st.dropped)));
        }
        None
    }

    /// Whether the feed is closed and has nothing left to read.
    pub(crate) fn is_finished(&self) -> bool {
        let st = self.state.lock();
        st.closed && st.queue.is_empty() && st.dropped == 0
    }

    /// Completes when an event may be ready (or the feed was closed) after the last
    /// [`try_next`](Feed::try_next) found none. Cancel safe: a wake-up that comes while
    /// nobody waits is kept for the next wait.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Takes no more events. With `flush`, those buffered stay readable; without, they are
    /// discarded.
    pub(crate) fn close(&self, flush: bool) {
        {
            let mut st = self.state.lock();
            st.closed = true;
            if !flush {
                st.queue.clear();
                st.dropped = 0;
            }
        }
        self.notify.notify_one();
    }
}

/// The open subscriptions of one publisher (a group scope, the event bus), at most a given
/// number: a list behind a lock, and its length readable without the lock, so that a
/// publisher with no subscribers skips the lock.
pub(crate) struct Subscribers<T> {
    count: AtomicUsize,
    list: Mutex<Vec<Arc<T>>>,
}

impl<T> Default for Subscribers<T> {
    fn default() -> Subscribers<T> {
        Subscribers {
            count: AtomicUsize::new(0),
            list: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Subscribers<T> {
    /// Adds `subscriber`, unless `limit` are open already (then `false`).
    pub(crate) fn add(&self, subscriber: Arc<T>, limit: usize) -> bool {
        let mut list = self.list.lock();
        if list.len() >= limit {
            return false;
        }
        list.push(subscriber);
        self.count.store(list.len(), Ordering::Release);
        true
    }

    /// Removes `subscriber` (closed).
    pub(crate) fn remove(&self, subscriber: &Arc<T>) {
        let mut list = self.list.lock();
        list.retain(|s| !Arc::ptr_eq(s, subscriber));
        self.count.store(list.len(), Ordering::Release);
    }

    /// Whether any is open (read without the lock).
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// The open subscribers, locked for a publication.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Arc<T>>> {
        self.list.lock()
    }
}
