//! The chaos soak (docs/cluster-design.md §3, docs/cluster.md "How it is tested"): a storm of
//! process kills under cross-node monitors on three nodes, each on its own NATS server, while
//! NATS servers are SIGKILLed and restarted one after another. Every monitor is entered in a
//! ledger; after the last fault has healed, the ledger must show exactly one EXIT per
//! monitor, and every ordered pair of nodes must reach each other again (no session stays
//! wedged).
//!
//! The short form (the default) is part of `cargo test`; `WSR_SOAK=long` runs the long form.
//! Figures are printed (`--nocapture`), never asserted: they go to docs/cluster.md.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wsrelay_cluster::Cluster;
use wsrelay_process::{reason, Context, Event, Node, Pid, Value};

use crate::support::*;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Kills per watcher (three watchers) at least; the storm goes on until the faults are
    /// over.
    kills_per_watcher: usize,
    /// Targets a watcher monitors and kills at once.
    batch: usize,
    /// NATS server faults (SIGKILL, pause, restart), spread over the run.
    faults: usize,
}

fn size() -> Size {
    if std::env::var("WSR_SOAK").as_deref() == Ok("long") {
        Size {
            kills_per_watcher: 40_000,
            batch: 200,
            faults: 30,
        }
    } else {
        Size {
            kills_per_watcher: 3_400,
            batch: 200,
            faults: 6,
        }
    }
}

/// The ledger of every monitor: placed, then its EXIT. Targets are keyed by the watcher that
/// monitors them (each watcher's targets live on one node) and their id on that node, so
/// millions of entries stay small.
#[derive(Default)]
struct Ledger {
    monitored: usize,
    /// Monitors still waiting for their EXIT.
    pending: HashSet<(usize, u64)>,
    /// Monitors that got their EXIT: a second one would be a duplicate.
    done: HashSet<(usize, u64)>,
    /// EXITs per reason.
    reasons: HashMap<String, usize>,
    /// EXITs of a monitor that already had one, or of no monitor at all.
    wrong: Vec<String>,
    /// When the current fault began, and the first `noconnection` EXIT after it.
    fault_at: Option<Instant>,
    detected: Option<Instant>,
}

impl Ledger {
    fn monitor(&mut self, watcher: usize, target: &Pid) {
        self.monitored += 1;
        self.pending.insert((watcher, target.id()));
    }

    fn enter(&mut self, watcher: usize, from: &Pid, why: String) {
        if why == reason::NOCONNECTION && self.fault_at.is_some() {
            self.detected.get_or_insert_with(Instant::now);
        }
        let key = (watcher, from.id());
        if self.pending.remove(&key) {
            self.done.insert(key);
        } else {
            let what = if self.done.contains(&key) {
                "duplicate"
            } else {
                "unmonitored"
            };
            self.wrong.push(format!("{what} EXIT {why} from {from}"));
        }
        *self.reasons.entry(why).or_default() += 1;
    }
}

/// A node connecting only to server `n` first (it fails over to the others it learns of).
async fn start_on(node: &str, n: usize) -> Cluster {
    let mut o = options(node);
    o.urls = vec![URLS[n - 1].to_owned()];
    start_with(o).await
}

/// The reason text of an EXIT.
fn why(event: &Event) -> Option<(Pid, String)> {
    match event {
        Event::Exit { from, result } => Some((
            from.clone(),
            result.error_text().unwrap_or("normal").to_owned(),
        )),
        _ => None,
    }
}

/// One watcher's storm: batches of targets on `on`, each monitored from `me` and then killed
/// on its own node, until `stop` is set and `size.kills_per_watcher` are done. The EXITs of a
/// batch are awaited (up to a hang bound) before the next.
async fn storm(
    watcher: usize,
    me: Context,
    on: Node,
    size: Size,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) -> Context {
    let fence = echo(&on, "fence");
    let mut done = 0;
    while done < size.kills_per_watcher || !stop.load(Ordering::Relaxed) {
        let targets: Vec<Pid> = (0..size.batch).map(|_| idle(&on)).collect();
        for t in &targets {
            // Refused only for oneself: a monitor across a fault gets its EXIT `noconnection`.
            me.monitor(t).expect("monitor");
        }
        {
            let mut l = ledger.lock();
            for t in &targets {
                l.monitor(watcher, t);
            }
        }
        // The monitors travel in this process's lane, so once a ping sent after them comes
        // back they are in place, and the kills below end with `terminated` (or, across a
        // fault, `noconnection`) rather than `noproc`. A fault may eat the ping: then kill
        // anyway after a while.
        let _ = me.send(&fence, "ping", Value::Int(done as i64));
        let _ = tokio::time::timeout(Duration::from_secs(2), me.recv()).await;
        for t in &targets {
            let _ = on.terminate(t);
        }
        let deadline = Instant::now() + EVENT_WAIT;
        let mut got = 0;
        while got < targets.len() && Instant::now() < deadline {
            if let Ok(event) =
                tokio::time::timeout(Duration::from_millis(200), me.next_event()).await
            {
                if let Some((from, why)) = why(&event) {
                    ledger.lock().enter(watcher, &from, why);
                    got += 1;
                }
            }
        }
        done += targets.len();
    }
    me
}

/// Whether `me` gets an echo back from `to` within `timeout` (pings may be refused or lost
/// while sessions recover).
async fn echo_works(me: &Context, to: &Pid, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        if me.send(to, "ping", Value::Int(i)).is_ok() {
            let wait = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    if me.recv().await.payload() == &Value::Int(i) {
                        return;
                    }
                }
            });
            if wait.await.is_ok() {
                return true;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    false
}

/// Time until every ordered pair of nodes echoes again, or `None` after `timeout`.
async fn all_pairs_echo(
    pingers: &[Context],
    echoes: &[Pid],
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    for (i, me) in pingers.iter().enumerate() {
        for (j, to) in echoes.iter().enumerate() {
            if i != j && !echo_works(me, to, timeout.saturating_sub(start.elapsed())).await {
                return None;
            }
        }
    }
    Some(start.elapsed())
}

#[test]
fn kill_storm_under_nats_server_crashes_keeps_one_exit_per_monitor() {
    let Some(nats) = nats() else { return };
    let size = size();
    rt().block_on(async {
        let nodes = [
            start_on(&unique("sa"), 1).await,
            start_on(&unique("sb"), 2).await,
            start_on(&unique("sc"), 3).await,
        ];
        // Pingers and echoes of the pair checks: apart from the storm's watchers, so their
        // events do not mix.
        let pingers: Vec<Context> = nodes.iter().map(|c| probe(c.node())).collect();
        let echoes: Vec<Pid> = nodes.iter().map(|c| echo(c.node(), "echo")).collect();
        assert!(
            all_pairs_echo(&pingers, &echoes, Duration::from_secs(30))
                .await
                .is_some(),
            "the cluster forms"
        );

        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let storms: Vec<_> = (0..3)
            .map(|i| {
                let me = probe(nodes[i].node());
                let on = nodes[(i + 1) % 3].node().clone();
                tokio::spawn(storm(i, me, on, size, stop.clone(), ledger.clone()))
            })
            .collect();

        // The faults, one server at a time, in turn: SIGKILL, down for a second, restart (its
        // clients fail over); SIGSTOP for longer than `dead_after` (3 s), SIGCONT (the nodes
        // on it are cut off from the others, which declare them down, and then come back);
        // the server's routes cut for as long (its clients stay connected to it, and the
        // node on it is cut off from the others), then healed. Then the time until every
        // pair echoes again.
        let cut = RouteCut::new();
        let mut figures = Vec::new();
        for f in 0..size.faults {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let server = (f % 3 + 1) as u32;
            {
                let mut l = ledger.lock();
                l.fault_at = Some(Instant::now());
                l.detected = None;
            }
            let kind = match (f % 3, &cut) {
                (0, _) => {
                    nats.kill_server(server);
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    nats.start_server(server);
                    "kill".to_owned()
                }
                (1, _) | (_, None) => {
                    nats.pause_server(server);
                    tokio::time::sleep(Duration::from_millis(4000)).await;
                    nats.resume_server(server);
                    "stop".to_owned()
                }
                (_, Some(cut)) => {
                    let pid = nats.server_pid(server).expect("server runs");
                    let dialed = cut.cut(server as usize, pid);
                    tokio::time::sleep(Duration::from_millis(4000)).await;
                    cut.heal();
                    format!("route cut ({dialed} dialed)")
                }
            };
            // Heal time counts from the server's return.
            let healed = all_pairs_echo(&pingers, &echoes, Duration::from_secs(60)).await;
            let healed = healed.unwrap_or_else(|| panic!("every pair echoes after fault {f}"));
            let l = ledger.lock();
            let detect = l.detected.zip(l.fault_at).map(|(d, a)| d - a);
            figures.push(format!(
                "{kind} n{server}: noconnection after {detect:?}, all pairs echo {healed:.1?} after the fault ended"
            ));
        }
        ledger.lock().fault_at = None;
        stop.store(true, Ordering::Relaxed);
        let mut watchers = Vec::new();
        for s in storms {
            watchers.push(s.await.expect("storm task"));
        }
        let storm_time = started.elapsed();

        // Heal: every pair works, then a quiet period in which a late duplicate would show.
        let healed = all_pairs_echo(&pingers, &echoes, Duration::from_secs(60)).await;
        assert!(healed.is_some(), "every pair echoes after the last fault");
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (watcher, me) in watchers.iter().enumerate() {
            while let Some(event) = me.try_next_event() {
                if let Some((from, why)) = why(&event) {
                    ledger.lock().enter(watcher, &from, why);
                }
            }
        }
        let ledger = ledger.lock();
        let resets: u64 = nodes.iter().map(|c| c.stats().session_resets()).sum();
        let kills = ledger.monitored;
        eprintln!(
            "soak: {kills} kills in {storm_time:.1?} ({:.0}/s), {} monitors, {} with an EXIT, \
             reasons {:?}, faults [{}], session resets {resets}",
            kills as f64 / storm_time.as_secs_f64(),
            ledger.monitored,
            ledger.done.len(),
            ledger.reasons,
            figures.join("; "),
        );
        assert!(
            ledger.wrong.is_empty(),
            "EXITs not exactly once: {:?}",
            &ledger.wrong[..ledger.wrong.len().min(20)]
        );
        assert!(
            ledger.pending.is_empty(),
            "{} monitors without an EXIT",
            ledger.pending.len()
        );
        for w in ledger.reasons.keys() {
            assert!(
                [reason::TERMINATED, reason::NOCONNECTION, reason::NOPROC].contains(&w.as_str()),
                "unexpected EXIT reason {w}"
            );
        }
        drop(ledger);
        for c in &nodes {
            c.shutdown();
        }
    });
}
