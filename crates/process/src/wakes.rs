//! Wake-ups of shard tasks from other threads, handed over once per shard and batch.
//!
//! A shard runs a current-thread Tokio runtime, whose scheduler unparks its driver on every
//! wake-up that comes from another thread: an eventfd write each time, and on a loaded core a
//! context switch to the shard and back. A cluster node's receiver that delivers one NATS
//! frame of 40 envelopes to 40 relay connections paid that 40 times (about one eventfd write
//! per relayed message; docs/decisions/scheduling.md, "Wake-ups from off the shards").
//!
//! Inside a [`WakeBatch`], a process's wake-up whose task lives on a shard other than the
//! caller's is kept instead; when the batch ends, each shard gets its kept wake-ups in one
//! job (one cross-thread hand-over), which runs them there as local wake-ups. What was
//! delivered is in the inboxes already: only the wake-up waits, until the end of the batch.

use std::cell::RefCell;
use std::task::Waker;

use crate::shard::{self, Shards};

thread_local! {
    /// The wake-ups kept by this thread's open batch; `None` outside a batch.
    static KEPT: RefCell<Option<Vec<(u64, Waker)>>> = const { RefCell::new(None) };
}

/// Wake-ups kept while it lives; handed to their shards when it is dropped.
///
/// Made by [`Node::wake_batch`](crate::Node::wake_batch). A batch opened inside another one on
/// the same thread adds to the outer batch, which hands everything over.
#[must_use = "the wake-ups are handed over when the batch is dropped"]
pub struct WakeBatch {
    /// `None` for a batch nested in another (the outer one hands over).
    shards: Option<Option<Shards>>,
}

impl std::fmt::Debug for WakeBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeBatch")
            .field("outermost", &self.shards.is_some())
            .finish()
    }
}

impl WakeBatch {
    pub(crate) fn open(shards: Option<&Shards>) -> WakeBatch {
        let opened = KEPT.with(|kept| {
            let mut kept = kept.borrow_mut();
            if kept.is_some() {
                return false; // nested: the outer batch hands over
            }
            *kept = Some(Vec::new());
            true
        });
        WakeBatch {
            shards: opened.then(|| shards.cloned()),
        }
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        let Some(shards) = self.shards.take() else {
            return;
        };
        let Some(mut kept) = KEPT.with(|k| k.borrow_mut().take()) else {
            return;
        };
        // Grouped by shard, each group in the order its wake-ups came.
        kept.sort_by_key(|(home, _)| *home);
        while let Some(&(home, _)) = kept.first() {
            let split = kept.partition_point(|(h, _)| *h == home);
            let wakers: Vec<Waker> = kept.drain(..split).map(|(_, w)| w).collect();
            match shards
                .as_ref()
                .and_then(|s| s.index_of(home).map(|i| (s, i)))
            {
                Some((shards, index)) => {
                    // A stopped shard drops the job: its tasks are gone with it.
                    shards.run_on(index, move || wakers.into_iter().for_each(Waker::wake));
                }
                None => wakers.into_iter().for_each(Waker::wake),
            }
        }
    }
}

/// Keeps `waker`'s wake-up for the open batch if there is one and its task lives on shard
/// `home` (a [`shard::here`] token) other than the caller's; gives it back otherwise.
pub(crate) fn keep(home: u64, waker: Waker) -> Option<Waker> {
    if home == 0 || home == shard::here() {
        return Some(waker);
    }
    KEPT.with(|kept| match kept.borrow_mut().as_mut() {
        Some(kept) => {
            kept.push((home, waker));
            None
        }
        None => Some(waker),
    })
}

/// Whether this thread has a batch open (cheap: the common case is no).
pub(crate) fn batching() -> bool {
    KEPT.with(|kept| kept.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;
    use crate::cell::Ready;

    /// Records the shard each of its wake-ups ran on (`None`: off the shards).
    struct Record {
        shards: Shards,
        woken: Mutex<Vec<Option<usize>>>,
    }

    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.lock().unwrap().push(self.shards.current());
        }
    }

    /// A `Ready` whose waker was registered on shard `index`, and what that waker records.
    fn registered_on(shards: &Shards, index: usize) -> (Arc<Ready>, Arc<Record>) {
        let ready = Arc::new(Ready::default());
        let record = Arc::new(Record {
            shards: shards.clone(),
            woken: Mutex::new(Vec::new()),
        });
        let (done, registered) = mpsc::channel();
        let (r, w) = (ready.clone(), Waker::from(record.clone()));
        assert!(shards.run_on(index, move || {
            r.register(&w);
            done.send(()).unwrap();
        }));
        registered.recv_timeout(Duration::from_secs(10)).unwrap();
        (ready, record)
    }

    fn woken(record: &Record) -> Vec<Option<usize>> {
        record.woken.lock().unwrap().clone()
    }

    /// Waits (bounded) until `record` has `n` wake-ups.
    #[allow(clippy::disallowed_methods)] // the test's own thread, not a runtime worker
    fn wait_for(record: &Record, n: usize) -> Vec<Option<usize>> {
        for _ in 0..1000 {
            let w = woken(record);
            if w.len() >= n {
                return w;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        woken(record)
    }

    #[test]
    fn wake_ups_in_a_batch_wait_for_its_end_then_run_on_their_shards() {
        let shards = Shards::start(2, "wakes-test").unwrap();
        let on_0 = [registered_on(&shards, 0), registered_on(&shards, 0)];
        let on_1 = registered_on(&shards, 1);

        let batch = WakeBatch::open(Some(&shards));
        // A batch opened inside it adds to it: nothing is handed over at its end.
        drop(WakeBatch::open(Some(&shards)));
        for (ready, _) in on_0.iter().chain([&on_1]) {
            ready.notify();
        }
        for (_, record) in on_0.iter().chain([&on_1]) {
            assert!(woken(record).is_empty(), "woken before the batch ended");
        }
        drop(batch);
        for (_, record) in &on_0 {
            assert_eq!(wait_for(record, 1), [Some(0)]);
        }
        assert_eq!(wait_for(&on_1.1, 1), [Some(1)]);
    }

    #[test]
    fn outside_a_batch_or_on_the_tasks_own_shard_a_wake_up_is_at_once() {
        let shards = Shards::start(1, "wakes-test").unwrap();
        let (ready, record) = registered_on(&shards, 0);
        ready.notify();
        assert_eq!(woken(&record), [None], "woken in the sender's call");

        // A batch on the task's own shard: the wake-up is a local one already.
        let (ready, record) = registered_on(&shards, 0);
        let (done, finished) = mpsc::channel();
        let (set, r, rec) = (shards.clone(), ready.clone(), record.clone());
        assert!(shards.run_on(0, move || {
            let _batch = WakeBatch::open(Some(&set));
            r.notify();
            done.send(woken(&rec)).unwrap();
        }));
        let seen = finished.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(seen, [Some(0)], "woken in the call, before the batch ended");
    }

    #[test]
    fn a_batch_of_a_node_without_shards_wakes_at_its_end() {
        let shards = Shards::start(1, "wakes-test").unwrap();
        let (ready, record) = registered_on(&shards, 0);
        let batch = WakeBatch::open(None);
        ready.notify();
        assert!(woken(&record).is_empty());
        drop(batch);
        assert_eq!(woken(&record), [None]);
    }
}
