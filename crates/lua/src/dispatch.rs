//! Which worker (shard) gets a new process or function call.
//!
//! The shards' placement decides first ([`Shards::place`]: the caller's shard, unless it is
//! overloaded; the least busy one from outside). On top of it, a worker whose current resume
//! has run longer than a threshold is skipped: it is inside something that cannot be
//! preempted (a C call, a metamethod, a `table.sort` comparator) and everything queued to it
//! waits until that ends, up to the CPU budget. Each worker marks when its current resume
//! started ([`Busy`], one atomic); the dispatcher reads the marks, so the policy costs one
//! load per worker considered. If every worker is stuck, the placement stands (the job waits).
//!
//! A resume that yields normally lasts at most about a time slice, so the threshold is a few
//! time slices: a worker is only skipped when it is really stuck.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsrelay_process::Shards;

/// Since when a worker has been running its current resume (idle between resumes).
#[derive(Debug)]
pub(crate) struct Busy {
    epoch: Instant,
    /// Microseconds since `epoch` at which the current resume started, plus one; 0: idle.
    since: AtomicU64,
    /// Resumes started so far (the idle collector compares it between its ticks).
    resumes: AtomicU64,
    /// Resumes that ended in a preemption (for metrics).
    preemptions: AtomicU64,
    /// Bytes the worker's Lua state had in use when its last resume ended (for metrics).
    heap: AtomicU64,
}

impl Busy {
    fn new(epoch: Instant) -> Busy {
        Busy {
            epoch,
            since: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            heap: AtomicU64::new(0),
        }
    }

    /// A resume starts, `now` (the caller's clock read, shared with the time slice's start:
    /// a clock read costs ~27 ns here, ~0.5 % of a relayed Lua echo).
    pub(crate) fn enter(&self, now: Instant) {
        let now = now.saturating_duration_since(self.epoch).as_micros() as u64;
        self.since.store(now + 1, Ordering::Relaxed);
        self.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// Resumes started so far (wraps).
    pub(crate) fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// The resume ended in a preemption: it ran a whole time slice without yielding and
    /// was made to take turns.
    pub(crate) fn preempted(&self) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// The resume ended (the coroutine yielded or finished).
    pub(crate) fn leave(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// The worker's Lua state has `bytes` in use (at the end of a resume, after a collection).
    pub(crate) fn record_heap(&self, bytes: usize) {
        self.heap.store(bytes as u64, Ordering::Relaxed);
    }

    /// How long the current resume has been running (`None`: idle).
    fn running_for(&self) -> Option<Duration> {
        let since = self.since.load(Ordering::Relaxed).checked_sub(1)?;
        let now = self.epoch.elapsed().as_micros() as u64;
        Some(Duration::from_micros(now.saturating_sub(since)))
    }
}

/// Round-robin over the workers, skipping stuck ones.
#[derive(Debug)]
pub(crate) struct Dispatch {
    next: AtomicUsize,
    stuck_after: Duration,
    busy: Vec<Arc<Busy>>,
}

impl Dispatch {
    /// A dispatcher over `workers` workers that skips a worker whose resume has run longer
    /// than `stuck_after`.
    pub(crate) fn new(workers: usize, stuck_after: Duration) -> Dispatch {
        let epoch = Instant::now();
        Dispatch {
            next: AtomicUsize::new(0),
            stuck_after,
            busy: (0..workers).map(|_| Arc::new(Busy::new(epoch))).collect(),
        }
    }

    /// The busy mark of worker `i`, for the worker to update.
    pub(crate) fn busy(&self, i: usize) -> Arc<Busy> {
        self.busy[i].clone()
    }

    /// Preemptions on every worker so far.
    pub(crate) fn preemptions(&self) -> u64 {
        self.busy
            .iter()
            .map(|b| b.preemptions.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes the workers' Lua states have in use, as each last recorded it.
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.busy
            .iter()
            .map(|b| b.heap.load(Ordering::Relaxed))
            .sum()
    }

    /// The worker for the next job: where `shards` place it, unless that one is stuck.
    pub(crate) fn pick(&self, shards: &Shards) -> usize {
        let count = self.busy.len();
        let placed = shards.place() % count;
        if !self.is_stuck(placed) {
            return placed;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..count)
            .map(|k| (first + k) % count)
            .find(|&i| !self.is_stuck(i))
            .unwrap_or(placed)
    }

    fn is_stuck(&self, i: usize) -> bool {
        self.busy[i]
            .running_for()
            .is_some_and(|ran| ran > self.stuck_after)
    }
}

#[cfg(test)]
// Plain unit tests without a runtime: a thread sleep is what makes a resume "long".
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_stuck_in_one_resume_is_skipped_until_it_yields() {
        let shards = Shards::start(3, "test-dispatch").unwrap();
        let dispatch = Dispatch::new(3, Duration::from_millis(5));
        let mut spread: Vec<_> = (0..6).map(|_| dispatch.pick(&shards)).collect();
        spread.sort();
        assert_eq!(spread, [0, 0, 1, 1, 2, 2], "idle shards share the work");
        dispatch.busy(1).enter(Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        assert!((0..6).all(|_| dispatch.pick(&shards) != 1));
        dispatch.busy(1).leave();
        assert!((0..6).any(|_| dispatch.pick(&shards) == 1));
    }

    #[test]
    fn a_short_resume_is_not_skipped_and_all_stuck_keeps_the_placement() {
        let shards = Shards::start(2, "test-dispatch").unwrap();
        let dispatch = Dispatch::new(2, Duration::from_secs(60));
        dispatch.busy(0).enter(Instant::now());
        dispatch.busy(1).enter(Instant::now());
        let picks: Vec<_> = (0..4).map(|_| dispatch.pick(&shards)).collect();
        assert!(
            picks.contains(&0),
            "running briefly is not stuck: {picks:?}"
        );
        let dispatch = Dispatch::new(2, Duration::ZERO);
        dispatch.busy(0).enter(Instant::now());
        dispatch.busy(1).enter(Instant::now());
        std::thread::sleep(Duration::from_millis(2));
        let mut picks = [dispatch.pick(&shards), dispatch.pick(&shards)];
        picks.sort();
        assert_eq!(picks, [0, 1]);
    }
}
