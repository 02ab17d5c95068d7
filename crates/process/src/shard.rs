//! Shards: one thread per core, each running everything that lives on it.
//!
//! A [`Shards`] set is a few OS threads, each with a current-thread Tokio runtime and a
//! `LocalSet`. Work placed on a shard stays there: the connections it accepts, the tasks those
//! connections spawn, and the `!Send` engines (Lua states) that run beside them. A message
//! between two tasks of one shard is then a push on a local run queue, not a wake-up of another
//! thread (a futex or eventfd write and a context switch each way), which is what a relay pays
//! per frame when sockets and Lua live on different threads.
//!
//! # Placement
//!
//! [`Shards::place`] decides where new work goes:
//!
//! - on a shard, work stays on that shard (a process spawned by a handler lands next to the
//!   connection that will talk to it);
//! - unless that shard is *overloaded*: busy at least [`OVERLOADED`] of the last sampling
//!   window while another shard is idle for at least [`SPARE`] of it; then the least busy
//!   shard gets it;
//! - off the shards (the main thread, a cluster receiver, a test), the least busy shard gets
//!   it, ties broken round-robin.
//!
//! *Busy* is the share of wall time a shard spent outside its runtime's park, measured with the
//! runtime's park/unpark hooks over windows of [`WINDOW`]; a shard that has not parked for a
//! whole window (stuck in one long poll, or saturated) counts as fully busy at once.
//!
//! # Two ways in
//!
//! - [`Shards::handle`] gives a shard's runtime handle, for `Send` futures (accept loops).
//! - [`Shards::run_on`] runs a closure inside the shard's `LocalSet`, where it may call
//!   `tokio::task::spawn_local` (how a Lua engine starts its `!Send` processes there).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A shard is overloaded when it was busy this share of the last window (per mille).
pub const OVERLOADED: u32 = 850;
/// ... and work moves only to a shard idle at least this share of it (per mille).
pub const SPARE: u32 = 300;
/// The span over which a shard's busy share is measured.
pub const WINDOW: Duration = Duration::from_millis(100);

/// A closure run inside a shard's `LocalSet`.
type Job = Box<dyn FnOnce() + Send>;

static NEXT_SET: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The shard this thread is, as (set id, index); `(0, 0)` off the shards.
    static CURRENT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The calling thread's shard as one number (its set in the high half, its index + 1 in the
/// low half); 0 off the shards.
pub(crate) fn here() -> u64 {
    let (set, index) = CURRENT.with(Cell::get);
    if set == 0 {
        0
    } else {
        ((set as u64) << 32) | (index as u64 + 1)
    }
}

/// A set of shard threads. Cloning is cheap; clones share the threads, which stop soon after
/// the last clone is dropped (their tasks are dropped with them).
#[derive(Clone)]
pub struct Shards {
    inner: Arc<Inner>,
}

struct Inner {
    id: usize,
    shards: Vec<Shard>,
    next: AtomicUsize,
}

struct Shard {
    handle: Handle,
    jobs: mpsc::UnboundedSender<Job>,
    load: Arc<Load>,
}

/// Busy-time bookkeeping of one shard: written by its thread's park hooks, folded into a
/// load figure by whoever asks (so a shard stuck in one long poll is seen as busy at once).
struct Load {
    epoch: Instant,
    /// Nanoseconds spent unparked, up to the last park.
    busy_ns: AtomicU64,
    /// When the current unparked stretch began (ns since `epoch`), 0 while parked.
    unparked_at: AtomicU64,
    window: Mutex<Window>,
}

/// The last folded window.
#[derive(Default)]
struct Window {
    at_ns: u64,
    busy_ns: u64,
    permille: u32,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("shards", &self.inner.shards.len())
            .field("load", &self.loads())
            .finish()
    }
}

impl Shards {
    /// Starts `count` shard threads (at least one) named `{name}-{index}`.
    ///
    /// # Errors
    ///
    /// The error of the first runtime or thread that could not be created.
    pub fn start(count: usize, name: &str) -> std::io::Result<Shards> {
        let id = NEXT_SET.fetch_add(1, Ordering::Relaxed);
        let shards = (0..count.max(1))
            .map(|index| Shard::start(id, index, name))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Shards {
            inner: Arc::new(Inner {
                id,
                shards,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.inner.shards.len()
    }

    /// Always `false`: a set has at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The runtime handle of shard `index`, for `Send` futures.
    ///
    /// # Panics
    ///
    /// If `index >= len()`.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.inner.shards[index].handle
    }

    /// The shard of this set the calling thread is, if any.
    pub fn current(&self) -> Option<usize> {
        let (set, index) = CURRENT.with(Cell::get);
        (set == self.inner.id).then_some(index)
    }

    /// The shard of this set that a [`here`] token names, if any.
    pub(crate) fn index_of(&self, token: u64) -> Option<usize> {
        let (set, index) = ((token >> 32) as usize, (token & 0xffff_ffff) as usize);
        (set == self.inner.id && index >= 1 && index <= self.len()).then(|| index - 1)
    }

    /// Whether the calling thread is a shard of any set.
    pub fn on_a_shard() -> bool {
        CURRENT.with(Cell::get).0 != 0
    }

    /// Where new work should go (see the module docs).
    pub fn place(&self) -> usize {
        let loads = self.loads();
        let least = self.least_busy(&loads);
        match self.current() {
            Some(here) if loads[here] >= OVERLOADED && loads[least] + SPARE <= loads[here] => least,
            Some(here) => here,
            None => least,
        }
    }

    /// The least busy shard; ties go round-robin so idle shards share work evenly.
    fn least_busy(&self, loads: &[u32]) -> usize {
        let n = loads.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| loads[i])
            .unwrap_or(0)
    }

    /// Each shard's busy share of the last window, per mille.
    pub fn loads(&self) -> Vec<u32> {
        self.inner
            .shards
            .iter()
            .map(|s| s.load.permille())
            .collect()
    }

    /// Runs `job` on shard `index`, inside its `LocalSet` (so it may `spawn_local`).
    ///
    /// Returns `false` if the shard has stopped; the job is then dropped unrun.
    ///
    /// # Panics
    ///
    /// If `index >= len()`.
    pub fn run_on(&self, index: usize, job: impl FnOnce() + Send + 'static) -> bool {
        self.inner.shards[index].jobs.send(Box::new(job)).is_ok()
    }
}

impl Shard {
    fn start(set: usize, index: usize, name: &str) -> std::io::Result<Shard> {
        let load = Arc::new(Load::new());
        let (park, unpark) = (load.clone(), load.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || park.parked())
            .on_thread_unpark(move || unpark.unparked())
            .build()?;
        let handle = runtime.handle().clone();
        let (jobs, rx) = mpsc::unbounded_channel();
        let started = load.clone();
        // Detached: a shard ends when its job channel closes (the last clone of the set is
        // dropped) and it has dropped its tasks; nobody waits for that, so a shard stuck in a
        // long call does not hold up whoever drops the set.
        std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                CURRENT.with(|c| c.set((set, index)));
                started.unparked();
                run(runtime, rx);
            })?;
        Ok(Shard { handle, jobs, load })
    }
}

/// The shard's thread: runs jobs inside the `LocalSet` until every sender is gone.
fn run(runtime: tokio::runtime::Runtime, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        while let Some(job) = jobs.recv().await {
            job();
        }
    });
    // Dropping the set and the runtime drops what still runs here; process drivers report
    // their exits through their guards.
    drop(local);
    drop(runtime);
}

impl Load {
    fn new() -> Load {
        Load {
            epoch: Instant::now(),
            busy_ns: AtomicU64::new(0),
            unparked_at: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
        }
    }

    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    fn unparked(&self) {
        self.unparked_at.store(self.now(), Ordering::Relaxed);
    }

    fn parked(&self) {
        let since = self.unparked_at.swap(0, Ordering::Relaxed);
        if since != 0 {
            let ran = self.now().saturating_sub(since);
            self.busy_ns.fetch_add(ran, Ordering::Relaxed);
        }
    }

    /// The busy share of the last window, per mille; 1000 while the shard has been running
    /// without a pause for a whole window (stuck in one poll, or saturated).
    fn permille(&self) -> u32 {
        let now = self.now();
        let since = self.unparked_at.load(Ordering::Relaxed);
        let stretch = if since == 0 {
            0
        } else {
            now.saturating_sub(since)
        };
        if stretch >= WINDOW.as_nanos() as u64 {
            return 1000;
        }
        let busy = self.busy_ns.load(Ordering::Relaxed) + stretch;
        let mut window = self.window.lock();
        let wall = now.saturating_sub(window.at_ns);
        if wall >= WINDOW.as_nanos() as u64 {
            let share = busy.saturating_sub(window.busy_ns).saturating_mul(1000) / wall;
            window.permille = share.min(1000) as u32;
            window.at_ns = now;
            window.busy_ns = busy;
        }
        window.permille
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_on_runs_inside_the_local_set_of_that_shard() {
        let shards = Shards::start(2, "test-shard").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for index in 0..2 {
            let tx = tx.clone();
            let set = shards.clone();
            assert!(shards.run_on(index, move || {
                // spawn_local panics outside a LocalSet: this is the property under test.
                tokio::task::spawn_local(async move {
                    tx.send((index, set.current())).unwrap();
                });
            }));
        }
        let mut seen: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, vec![(0, Some(0)), (1, Some(1))]);
        assert_eq!(shards.current(), None);
    }

    #[test]
    fn work_placed_off_the_shards_goes_round_robin_when_idle() {
        let shards = Shards::start(3, "test-shard").unwrap();
        let mut placed: Vec<_> = (0..3).map(|_| shards.place()).collect();
        placed.sort();
        assert_eq!(placed, vec![0, 1, 2]);
    }

    #[test]
    fn work_placed_on_a_shard_stays_there() {
        let shards = Shards::start(2, "test-shard").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let set = shards.clone();
        shards.run_on(1, move || {
            tx.send((0..10).map(|_| set.place()).collect::<Vec<_>>())
                .unwrap()
        });
        assert_eq!(rx.recv().unwrap(), vec![1; 10]);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // blocking the shard is the point
    fn a_busy_shard_sheds_new_work_to_an_idle_one() {
        let shards = Shards::start(2, "test-shard").unwrap();
        // Keep shard 0 busy for several windows without yielding.
        shards.run_on(0, || std::thread::sleep(WINDOW * 4));
        std::thread::sleep(WINDOW * 3);
        let (tx, rx) = std::sync::mpsc::channel();
        let set = shards.clone();
        // Queued behind the sleep: runs once shard 0 is free again, but its load figure is
        // only refreshed at the next sample, so it still reads as overloaded.
        shards.run_on(0, move || tx.send((set.loads(), set.place())).unwrap());
        let (loads, placed) = rx.recv().unwrap();
        assert!(loads[0] >= OVERLOADED, "{loads:?}");
        assert_eq!(placed, 1, "{loads:?}");
    }

    #[test]
    fn dropping_the_set_stops_its_threads_and_drops_their_tasks() {
        let shards = Shards::start(2, "test-shard").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        shards.run_on(0, move || {
            tokio::task::spawn_local(async move {
                let _keep = tx;
                std::future::pending::<()>().await;
            });
        });
        drop(shards);
        // The task holding the sender was dropped with its shard.
        assert!(rx.recv().is_err());
    }
}
