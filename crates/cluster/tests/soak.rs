//! The chaos soak (docs/cluster-design.md §3, docs/cluster.md "Tests"): storms of process
//! kills under cross-node monitors on three in-process nodes, each first on its own NATS
//! server, and on two more nodes D and E, OS processes (`soak_node.rs`), while faults follow
//! one another: a NATS server SIGKILLed and restarted, a NATS server hung (SIGSTOP), a NATS
//! server's routes cut (a partition between servers, `support/routes.rs`), nodes SIGKILLed
//! and restarted, nodes hung: D and E **both at once** in the first round of faults (and
//! every other round of the long form), D alone in the others. Every monitor is entered in
//! a ledger; after the last fault has healed, the ledger must show exactly one EXIT per
//! monitor, every ordered pair of nodes must reach each other again and nodes D and E must
//! serve again (no session stays wedged).
//!
//! The short form (the default) is part of `cargo test`; `WSR_SOAK=long` runs the long form.
//! Figures are printed (`--nocapture`), never asserted: they go to docs/cluster.md.
//! `soak_netem.rs` runs this soak again with delay, jitter and loss between nodes and
//! servers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wsrelay_process::{reason, Context, Event, Node, Pid, Value};

use crate::soak_node::spawn_node;
use crate::support::*;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Kills per watcher (three watchers) at least; the storm goes on until the faults are
    /// over.
    kills_per_watcher: usize,
    /// Targets a watcher monitors and kills at once.
    batch: usize,
    /// Faults, one after another (the five kinds in turn).
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
            faults: 5,
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

/// Enters the EXITs `me` gets into the ledger under `watcher`, until `count` came or
/// [`EVENT_WAIT`] passed (a hang bound: what is missing shows in the ledger at the end).
async fn enter_exits(me: &Context, watcher: usize, count: usize, ledger: &Mutex<Ledger>) {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut got = 0;
    while got < count && Instant::now() < deadline {
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(200), me.next_event()).await {
            if let Some((from, why)) = why(&event) {
                ledger.lock().enter(watcher, &from, why);
                got += 1;
            }
        }
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
        enter_exits(&me, watcher, targets.len(), &ledger).await;
        done += targets.len();
    }
    me
}

/// Targets node D's (or E's) factory spawns at once.
const NODE_BATCH: i64 = 100;

/// The watcher index in the ledger of node D's targets; node E's is the next.
const NODE_WATCHER: usize = 3;

/// The storm against node D or E, an OS process (`soak_node.rs`): batches of echo targets
/// that its factory spawns on request, each monitored from `me` and then stopped by a
/// `stop` message sent after the monitor in the same lane (so it ends `normal`, or
/// `noconnection` across a fault). Counts its batches in `batches`: one done after a fault
/// shows that the node is usable again. `watcher` is its index in the ledger.
async fn storm_node(
    watcher: usize,
    me: Context,
    factory: Arc<Mutex<Option<Pid>>>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    batches: Arc<AtomicUsize>,
) -> Context {
    while !stop.load(Ordering::Relaxed) {
        let Some(f) = factory.lock().clone() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if me.send(&f, "spawn", Value::Int(NODE_BATCH)).is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let reply = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let msg = me.recv().await;
                if msg.topic() == "spawned" {
                    return msg;
                }
            }
        });
        // No answer (D down or hung): ask again, maybe a new run's factory.
        let Ok(reply) = reply.await else { continue };
        let Value::Array(pids) = reply.payload() else {
            continue;
        };
        let targets: Vec<Pid> = pids
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .collect();
        {
            let mut l = ledger.lock();
            for t in &targets {
                me.monitor(t).expect("monitor");
                l.monitor(watcher, t);
            }
        }
        for t in &targets {
            let _ = me.send(t, "stop", Value::Null);
        }
        enter_exits(&me, watcher, targets.len(), &ledger).await;
        batches.fetch_add(1, Ordering::Relaxed);
    }
    me
}

/// Waits until node D's storm completes a batch begun after now (`None` after `timeout`).
async fn node_usable(batches: &AtomicUsize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let before = batches.load(Ordering::Relaxed);
    // The batch running now may have begun before: two more are surely new.
    let ok = eventually(timeout, || batches.load(Ordering::Relaxed) >= before + 2).await;
    ok.then(|| start.elapsed())
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
fn kill_storm_under_server_node_and_route_faults_keeps_one_exit_per_monitor() {
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
        // Nodes D and E, OS processes, and their storms from nodes A and B.
        let mut outer: Vec<OuterNode> = ["sd", "se"]
            .iter()
            .enumerate()
            .map(|(i, prefix)| {
                OuterNode::start(
                    prefix,
                    NODE_WATCHER + i,
                    nodes[i].node(),
                    &stop,
                    &ledger,
                )
            })
            .collect();
        for o in &outer {
            assert!(
                node_usable(&o.batches, Duration::from_secs(60))
                    .await
                    .is_some(),
                "node {} joins",
                o.label
            );
        }

        // The faults in turn, each on one server or on nodes D and E: a server SIGKILLed, down
        // for a second, restarted (its clients fail over); a server SIGSTOPped for longer than
        // `dead_after` (3 s), SIGCONT (the nodes on it are cut off from the others, which
        // declare them down, and then come back); a server's routes cut for as long (its
        // clients stay connected to it, and the node on it is cut off from the others), then
        // healed; nodes SIGKILLed and started again; nodes SIGSTOPped for 4 s. The node
        // faults hit D and E at once in even rounds (the short form has one round), D alone
        // in odd ones. Then the time until every pair echoes again and D and E serve again.
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
            // The nodes a node fault hits: both at once, or D alone.
            let hit = if (f / 5) % 2 == 0 { 2 } else { 1 };
            let hit_label = {
                let labels: Vec<&str> = outer[..hit].iter().map(|o| o.label).collect();
                format!("node{} {}", if hit > 1 { "s" } else { "" }, labels.join("+"))
            };
            let kind = match (f % 5, &cut) {
                (3, _) => {
                    // The nodes crash together and are started again under their names (new
                    // runs).
                    for o in &mut outer[..hit] {
                        o.kill();
                    }
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    for o in &mut outer[..hit] {
                        o.restart();
                    }
                    format!("{hit_label} SIGKILL")
                }
                (4, _) => {
                    for o in &outer[..hit] {
                        signal(o.child.id(), "-STOP");
                    }
                    tokio::time::sleep(Duration::from_millis(4000)).await;
                    for o in &outer[..hit] {
                        signal(o.child.id(), "-CONT");
                    }
                    format!("{hit_label} SIGSTOP")
                }
                (0, _) => {
                    nats.kill_server(server);
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    nats.start_server(server);
                    format!("server n{server} SIGKILL")
                }
                (1, _) | (_, None) => {
                    nats.pause_server(server);
                    tokio::time::sleep(Duration::from_millis(4000)).await;
                    nats.resume_server(server);
                    format!("server n{server} SIGSTOP")
                }
                (_, Some(cut)) => {
                    let pid = nats.server_pid(server).expect("server runs");
                    let dialed = cut.cut(server as usize, pid);
                    tokio::time::sleep(Duration::from_millis(4000)).await;
                    cut.heal();
                    format!("server n{server} routes cut ({dialed} dialed)")
                }
            };
            // Heal time counts from the server's return.
            let healed = all_pairs_echo(&pingers, &echoes, Duration::from_secs(60)).await;
            let healed = healed.unwrap_or_else(|| panic!("every pair echoes after fault {f}"));
            let mut back = Vec::new();
            for o in &outer {
                let t = node_usable(&o.batches, Duration::from_secs(60)).await;
                let t = t.unwrap_or_else(|| panic!("node {} usable after fault {f}", o.label));
                back.push(format!("{} {t:.1?}", o.label));
            }
            let l = ledger.lock();
            let detect = l.detected.zip(l.fault_at).map(|(d, a)| d - a);
            figures.push(format!(
                "{kind}: noconnection after {detect:?}, all pairs echo {healed:.1?}, {} after the fault ended",
                back.join(", ")
            ));
        }
        ledger.lock().fault_at = None;
        stop.store(true, Ordering::Relaxed);
        let mut watchers = Vec::new();
        for s in storms {
            watchers.push(s.await.expect("storm task"));
        }
        for o in &mut outer {
            watchers.push(o.storm.take().expect("one storm").await.expect("a node's storm"));
        }
        let storm_time = started.elapsed();

        // Heal: every pair works, then a quiet period in which a late duplicate would show.
        let healed = all_pairs_echo(&pingers, &echoes, Duration::from_secs(60)).await;
        assert!(healed.is_some(), "every pair echoes after the last fault");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Watchers 0..3 are the in-process nodes' storms, 3 (`NODE_WATCHER`) node D's, 4 E's.
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
        let network = crate::support::netem::network();
        eprintln!(
            "soak{network}: {kills} kills in {storm_time:.1?} ({:.0}/s), {} monitors, {} with an EXIT, \
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
                ["normal", reason::TERMINATED, reason::NOCONNECTION, reason::NOPROC]
                    .contains(&w.as_str()),
                "unexpected EXIT reason {w}"
            );
        }
        drop(ledger);
        for mut o in outer {
            o.greeter.abort();
            o.kill();
        }
        for c in &nodes {
            c.shutdown();
        }
    });
}

/// Node D or E: an OS process (`soak_node.rs`) whose factory greets a process of an
/// in-process node, and the storm against it from that node.
struct OuterNode {
    label: &'static str,
    name: String,
    /// The process its factory greets (on the in-process node of its storm).
    parent: Pid,
    child: std::process::Child,
    /// Its current run's factory, once it said hello.
    factory: Arc<Mutex<Option<Pid>>>,
    greeter: tokio::task::JoinHandle<()>,
    storm: Option<tokio::task::JoinHandle<Context>>,
    /// Batches its storm completed.
    batches: Arc<AtomicUsize>,
}

impl OuterNode {
    /// Starts the node (named after `prefix`) and its storm from `from` as ledger watcher
    /// `watcher`.
    fn start(
        prefix: &str,
        watcher: usize,
        from: &Node,
        stop: &Arc<AtomicBool>,
        ledger: &Arc<Mutex<Ledger>>,
    ) -> OuterNode {
        let label = if watcher == NODE_WATCHER { "D" } else { "E" };
        let factory = Arc::new(Mutex::new(None));
        let hello = probe(from);
        let parent = hello.pid().clone();
        let name = unique(prefix);
        let child = spawn_node(&name, &parent);
        let greeter = {
            let factory = factory.clone();
            tokio::spawn(async move {
                loop {
                    let msg = hello.recv().await;
                    if msg.topic() == "hello" {
                        *factory.lock() = msg.from().cloned();
                    }
                }
            })
        };
        let batches = Arc::new(AtomicUsize::new(0));
        let storm = tokio::spawn(storm_node(
            watcher,
            probe(from),
            factory.clone(),
            stop.clone(),
            ledger.clone(),
            batches.clone(),
        ));
        OuterNode {
            label,
            name,
            parent,
            child,
            factory,
            greeter,
            storm: Some(storm),
            batches,
        }
    }

    /// SIGKILL, and waits for the process to end.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again under its name (a new run); its storm waits for the new
    /// factory's hello.
    fn restart(&mut self) {
        *self.factory.lock() = None;
        self.child = spawn_node(&self.name, &self.parent);
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {pid}");
}
