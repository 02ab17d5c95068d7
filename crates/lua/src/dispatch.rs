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
//!
//! **The watchdog.** The same marks tell the engine's watchdog thread which resume has run a
//! whole time slice: it signals that worker, which arms the instruction hook there
//! ([`crate::preempt`]); short resumes run with no hook at all. It looks again when the
//! oldest running resume would reach its slice (at most a time slice later), signals again a
//! resume that keeps running (the hook may not have been armed: the signal came as the
//! resume ended), and parks once a whole look found no resume started or running: a resume
//! that starts then wakes it (one load in [`Busy::enter`] otherwise).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wsrelay_process::Shards;

use crate::raw::WorkerThread;

/// The shortest wait of the watchdog between two looks (a zero time slice must not make it
/// spin).
const MIN_TICK: Duration = Duration::from_micros(200);

/// Since when a worker has been running its current resume (idle between resumes).
#[derive(Debug)]
pub(crate) struct Busy {
    epoch: Instant,
    /// Microseconds since `epoch` at which the current resume started, plus one; 0: idle.
    since: AtomicU64,
    /// Resumes started so far (the idle collector compares it between its ticks).
    resumes: AtomicU64,
    /// The worker's thread, for the watchdog's signal.
    thread: Arc<WorkerThread>,
    /// The watchdog, to wake when it is parked.
    watchdog: Arc<Parking>,
}

impl Busy {
    fn new(epoch: Instant, watchdog: Arc<Parking>) -> Busy {
        Busy {
            epoch,
            since: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            thread: Arc::default(),
            watchdog,
        }
    }

    /// The calling thread is this worker's (the watchdog signals it).
    pub(crate) fn register_thread(&self) {
        self.thread.register();
    }

    /// A resume starts.
    pub(crate) fn enter(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        // Sequentially consistent with the watchdog's `parked` (store, then load the other):
        // either it sees this resume before parking, or this sees it parked.
        self.since.store(now + 1, Ordering::SeqCst);
        self.resumes.fetch_add(1, Ordering::Relaxed);
        if self.watchdog.parked.load(Ordering::SeqCst) {
            self.watchdog.wake();
        }
    }

    /// Resumes started so far (wraps).
    pub(crate) fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// The resume ended (the coroutine yielded or finished).
    pub(crate) fn leave(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long the current resume has been running (`None`: idle).
    fn running_for(&self) -> Option<Duration> {
        let since = self.since.load(Ordering::Relaxed).checked_sub(1)?;
        let now = self.epoch.elapsed().as_micros() as u64;
        Some(Duration::from_micros(now.saturating_sub(since)))
    }
}

/// The watchdog's parking place.
#[derive(Debug, Default)]
struct Parking {
    /// Set by the watchdog before it parks; cleared by whoever wakes it.
    parked: AtomicBool,
    /// The dispatcher is gone: the watchdog ends.
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Parking {
    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// The watchdog's loop (see the module docs).
fn watch(parking: Arc<Parking>, busy: Vec<Arc<Busy>>, time_slice: Duration) {
    let mut seen: Vec<u64> = busy.iter().map(|b| b.resumes()).collect();
    while !parking.stop.load(Ordering::SeqCst) {
        let mut active = false;
        let mut wait = time_slice;
        for (worker, seen) in busy.iter().zip(seen.iter_mut()) {
            let resumes = worker.resumes();
            active |= resumes != *seen;
            *seen = resumes;
            if let Some(ran) = worker.running_for() {
                active = true;
                if ran >= time_slice {
                    worker.thread.interrupt();
                } else {
                    wait = wait.min(time_slice - ran);
                }
            }
        }
        if active {
            std::thread::park_timeout(wait.max(MIN_TICK));
            continue;
        }
        // Quiet for a whole look: park until a resume starts (checking again after
        // announcing it, see `Busy::enter`).
        parking.parked.store(true, Ordering::SeqCst);
        let started = busy
            .iter()
            .zip(&seen)
            .any(|(worker, seen)| worker.running_for().is_some() || worker.resumes() != *seen);
        if started {
            parking.parked.store(false, Ordering::SeqCst);
            continue;
        }
        while parking.parked.load(Ordering::SeqCst) && !parking.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
    }
}

/// Round-robin over the workers, skipping stuck ones.
#[derive(Debug)]
pub(crate) struct Dispatch {
    next: AtomicUsize,
    stuck_after: Duration,
    busy: Vec<Arc<Busy>>,
    watchdog: Arc<Parking>,
}

impl Dispatch {
    /// A dispatcher over `workers` workers that skips a worker whose resume has run longer
    /// than `stuck_after`, and whose watchdog signals a worker whose resume has run
    /// `time_slice`.
    pub(crate) fn new(
        workers: usize,
        stuck_after: Duration,
        time_slice: Duration,
    ) -> std::io::Result<Dispatch> {
        let epoch = Instant::now();
        let watchdog = Arc::new(Parking::default());
        let busy: Vec<Arc<Busy>> = (0..workers)
            .map(|_| Arc::new(Busy::new(epoch, watchdog.clone())))
            .collect();
        let (parking, marks) = (watchdog.clone(), busy.clone());
        let thread = std::thread::Builder::new()
            .name("wsrelay-lua-watchdog".to_owned())
            .spawn(move || watch(parking, marks, time_slice))?;
        let _ = watchdog.thread.set(thread.thread().clone());
        Ok(Dispatch {
            next: AtomicUsize::new(0),
            stuck_after,
            busy,
            watchdog,
        })
    }

    /// The busy mark of worker `i`, for the worker to update.
    pub(crate) fn busy(&self, i: usize) -> Arc<Busy> {
        self.busy[i].clone()
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

impl Drop for Dispatch {
    fn drop(&mut self) {
        self.watchdog.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.watchdog.thread.get() {
            thread.unpark();
        }
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
        let dispatch =
            Dispatch::new(3, Duration::from_millis(5), Duration::from_millis(2)).unwrap();
        let mut spread: Vec<_> = (0..6).map(|_| dispatch.pick(&shards)).collect();
        spread.sort();
        assert_eq!(spread, [0, 0, 1, 1, 2, 2], "idle shards share the work");
        dispatch.busy(1).enter();
        std::thread::sleep(Duration::from_millis(20));
        assert!((0..6).all(|_| dispatch.pick(&shards) != 1));
        dispatch.busy(1).leave();
        assert!((0..6).any(|_| dispatch.pick(&shards) == 1));
    }

    #[test]
    fn a_short_resume_is_not_skipped_and_all_stuck_keeps_the_placement() {
        let shards = Shards::start(2, "test-dispatch").unwrap();
        let dispatch = Dispatch::new(2, Duration::from_secs(60), Duration::from_millis(2)).unwrap();
        dispatch.busy(0).enter();
        dispatch.busy(1).enter();
        let picks: Vec<_> = (0..4).map(|_| dispatch.pick(&shards)).collect();
        assert!(
            picks.contains(&0),
            "running briefly is not stuck: {picks:?}"
        );
        let dispatch = Dispatch::new(2, Duration::ZERO, Duration::from_millis(2)).unwrap();
        dispatch.busy(0).enter();
        dispatch.busy(1).enter();
        std::thread::sleep(Duration::from_millis(2));
        let mut picks = [dispatch.pick(&shards), dispatch.pick(&shards)];
        picks.sort();
        assert_eq!(picks, [0, 1]);
    }
}
