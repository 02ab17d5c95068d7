//! Chaos: many clients against many targets while targets are killed, clients
//! vanish mid-frame, connections are terminated, cancelled, transferred and closed. Then the
//! exactly-once promises of docs/spec.md §2, §6 and §8 are checked, and nothing may be left behind.
//!
//! Bounded by default (4000 client sessions, a few seconds in a debug build);
//! `WSRELAY_CHAOS_ITERATIONS`, `WSRELAY_CHAOS_CLIENTS` and `WSRELAY_CHAOS_SEED` run it longer,
//! wider or differently. Run with `--nocapture` to see the numbers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{Context, Event, ExitResult, Map, Node, Pid, SpawnOptions, Value};
use wsrelay_relay::{ClientEvent, ClientEventKind, Outgoing};

/// How many target processes are alive at any time.
const TARGETS: usize = 12;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a tiny deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What the targets saw, checked as it happens: per (target, connection) the messages must
/// read join, (message | heartbeat)*, leave, join, ... Only open sessions are kept, so the
/// bookkeeping does not grow with the number of sessions (RSS is measured).
#[derive(Default)]
struct Log {
    open: Mutex<HashSet<(Pid, Pid)>>,
    violations: Mutex<Vec<String>>,
    joins: AtomicUsize,
    leaves: AtomicUsize,
    messages: AtomicUsize,
}

impl Log {
    fn record(&self, target: &Pid, conn: &Pid, what: &'static str) {
        let key = (target.clone(), conn.clone());
        let mut open = self.open.lock().unwrap();
        let ok = match what {
            "join" => {
                self.joins.fetch_add(1, Ordering::Relaxed);
                open.insert(key)
            }
            "leave" => {
                self.leaves.fetch_add(1, Ordering::Relaxed);
                open.remove(&key)
            }
            _ => {
                self.messages.fetch_add(1, Ordering::Relaxed);
                open.contains(&key)
            }
        };
        if !ok {
            let problem = format!("{target} <- {conn}: unexpected {what}");
            self.violations.lock().unwrap().push(problem);
        }
    }

    /// Everything out of order so far, and every session of a live target without its leave.
    fn violations(&self, killed: &HashSet<Pid>) -> Vec<String> {
        let mut out = self.violations.lock().unwrap().clone();
        for (target, conn) in self.open.lock().unwrap().iter() {
            if !killed.contains(target) {
                out.push(format!("{target} <- {conn}: no ws.leave after ws.join"));
            }
        }
        out
    }
}

/// Every EXIT the watcher gets must be the first and only one of a process it monitors.
#[derive(Default)]
struct Exits {
    waiting: Mutex<HashSet<Pid>>,
    seen: AtomicUsize,
    wrong: Mutex<Vec<String>>,
}

impl Exits {
    /// Takes the watcher's queued events; call only while no client is running, so no monitor
    /// is between `monitor()` and being recorded.
    fn drain(&self, watcher: &Context) {
        let mut waiting = self.waiting.lock().unwrap();
        while let Some(event) = watcher.try_next_event() {
            if let Event::Exit { from, .. } = event {
                self.seen.fetch_add(1, Ordering::Relaxed);
                if !waiting.remove(&from) {
                    self.wrong
                        .lock()
                        .unwrap()
                        .push(format!("{from}: a second EXIT, or one not asked for"));
                }
            }
        }
    }
}

/// The world the clients act in.
struct World {
    node: Node,
    log: Arc<Log>,
    /// Current name of each target slot (a replaced target gets a new name).
    names: Mutex<Vec<(String, Pid)>>,
    killed: Mutex<HashSet<Pid>>,
    generation: AtomicUsize,
    /// Monitors every connection and every target; its EXITs are checked between rounds.
    watcher: Context,
    exits: Exits,
    /// Sends `ws.close` and `ws.control` like any other process would.
    controller: Context,
}

impl World {
    fn spawn_target(&self) -> (String, Pid) {
        let name = format!("t{}", self.generation.fetch_add(1, Ordering::Relaxed));
        let log = self.log.clone();
        let pid = self
            .node
            .spawn(
                HOST,
                SpawnOptions::new().named(name.as_str()),
                move |ctx| async move { target_body(ctx, log).await },
            )
            .expect("spawn a target");
        self.watch(&pid);
        (name, pid)
    }

    fn watch(&self, pid: &Pid) {
        if self.watcher.monitor(pid).is_ok() {
            self.exits.waiting.lock().unwrap().insert(pid.clone());
        }
    }

    fn random_target(&self, rng: &mut Rng) -> (String, Pid) {
        let names = self.names.lock().unwrap();
        names[rng.below(names.len() as u64) as usize].clone()
    }

    /// Kills the target in `slot` and puts a fresh one in its place.
    fn kill_and_replace(&self, slot: usize) {
        // Under the lock, so two clients replacing one slot cannot orphan a target.
        let mut names = self.names.lock().unwrap();
        let old = names[slot].1.clone();
        self.killed.lock().unwrap().insert(old.clone());
        let _ = self.node.kill(&old, ExitResult::error("chaos"));
        names[slot] = self.spawn_target();
    }
}

/// A target: logs what it gets, tells each client its PID on join, echoes every frame.
async fn target_body(ctx: Context, log: Arc<Log>) {
    loop {
        let msg = ctx.recv().await;
        let Some(event) = msg.payload().downcast_ref::<ClientEvent>() else {
            continue;
        };
        let client = &event.client_pid;
        let (what, reply) = match &event.kind {
            ClientEventKind::Join { .. } => ("join", Some(Outgoing::text(format!("pid {client}")))),
            ClientEventKind::Message { text: true, data } => (
                "message",
                Some(Outgoing::text(String::from_utf8_lossy(data).into_owned())),
            ),
            ClientEventKind::Message { data, .. } => {
                ("message", Some(Outgoing::binary(data.clone())))
            }
            ClientEventKind::Heartbeat { .. } => ("heartbeat", None),
            ClientEventKind::Leave { .. } => ("leave", None),
            _ => ("other", None),
        };
        log.record(ctx.pid(), client, what);
        if let Some(reply) = reply {
            let _ = ctx.send(client, "ws.send", Value::Opaque(Arc::new(reply)));
        }
    }
}

/// The client PID the target announced, or `None` if the connection ended first.
async fn client_pid(client: &mut Client) -> Option<Pid> {
    let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .ok()??
        .ok()?;
    match frame {
        T::Text(text) => text.strip_prefix("pid ")?.parse().ok(),
        _ => None,
    }
}

/// Sends `n` frames and reads until each is echoed (or the connection ends).
async fn exchange(client: &mut Client, n: u64) -> bool {
    for i in 0..n {
        let text = format!("m{i}");
        if client.send(T::text(text.clone())).await.is_err() {
            return false;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
                Ok(Some(Ok(T::Text(t)))) if t.as_str() == text => break,
                Ok(Some(Ok(_))) => {}
                _ => return false,
            }
        }
    }
    true
}

/// Counts of how sessions ended, for the report.
#[derive(Default, Debug)]
struct Tally {
    sessions: AtomicUsize,
    refused: AtomicUsize,
    no_join: AtomicUsize,
    transfers: AtomicUsize,
    kills: AtomicUsize,
}

async fn session(world: &World, tally: &Tally, h: &Harness, rng: &mut Rng) {
    let (name, _) = world.random_target(rng);
    let Ok(mut client) = h.connect_to(&name).await else {
        tally.refused.fetch_add(1, Ordering::Relaxed); // the target died meanwhile: 503
        return;
    };
    let Some(pid) = client_pid(&mut client).await else {
        tally.no_join.fetch_add(1, Ordering::Relaxed);
        read_to_end(&mut client, Duration::from_secs(10)).await;
        return;
    };
    world.watch(&pid);
    if !exchange(&mut client, rng.below(4)).await {
        read_to_end(&mut client, Duration::from_secs(10)).await;
        return;
    }
    let to_end = Duration::from_secs(10);
    match rng.below(10) {
        0 => {
            let _ = client.close(None).await;
            read_to_end(&mut client, to_end).await;
        }
        1 => drop(client),
        2 => vanish_mid_frame(client, false).await,
        3 => vanish_mid_frame(client, true).await,
        4 => {
            let _ = world.node.terminate(&pid);
            read_to_end(&mut client, to_end).await;
        }
        5 => {
            let _ = world.node.cancel(None, &pid, Value::from("chaos"));
            read_to_end(&mut client, to_end).await;
        }
        6 => {
            let close = Map::new().with("code", 4000).with("reason", "chaos");
            let _ = world.controller.send(&pid, "ws.close", close);
            read_to_end(&mut client, to_end).await;
        }
        7 => {
            // Kill this connection's target (and put a new one in its slot).
            let slot = rng.below(TARGETS as u64) as usize;
            tally.kills.fetch_add(1, Ordering::Relaxed);
            world.kill_and_replace(slot);
            let _ = exchange(&mut client, 1).await;
            let _ = client.close(None).await;
            read_to_end(&mut client, to_end).await;
        }
        _ => {
            // Transfer once or twice (to a name that may die meanwhile), keep talking, then
            // end one way or another.
            for _ in 0..=rng.below(2) {
                let (next, _) = world.random_target(rng);
                tally.transfers.fetch_add(1, Ordering::Relaxed);
                let control = Map::new()
                    .with("target_pid", next.as_str())
                    .with("heartbeat_interval", "20ms");
                let _ = world.controller.send(&pid, "ws.control", control);
            }
            if exchange(&mut client, 1 + rng.below(3)).await && rng.below(2) == 0 {
                let _ = client.close(None).await;
                read_to_end(&mut client, to_end).await;
            } else {
                drop(client);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_promise_and_leaves_nothing_behind() {
    let iterations = env_or("WSRELAY_CHAOS_ITERATIONS", 4000) as usize;
    let clients = env_or("WSRELAY_CHAOS_CLIENTS", 24) as usize;
    let seed = env_or("WSRELAY_CHAOS_SEED", 7);
    let h = Harness::builder()
        .option("wsrelay.close_timeout", "1s")
        .option("wsrelay.write_timeout", "2s")
        .no_upgrade_rate_limit()
        .start()
        .await;
    let (watcher, _watcher_guard) = h.probe();
    let (controller, _controller_guard) = h.probe();
    let baseline = (
        h.node.process_count(),
        h.node.relation_count(),
        h.node.name_count(),
        h.relay.stats().open(),
    );
    let world = Arc::new(World {
        node: h.node.clone(),
        log: Arc::default(),
        names: Mutex::new(Vec::new()),
        killed: Mutex::default(),
        generation: AtomicUsize::new(0),
        watcher,
        exits: Exits::default(),
        controller,
    });
    for _ in 0..TARGETS {
        let target = world.spawn_target();
        world.names.lock().unwrap().push(target);
    }
    let h = Arc::new(h);
    let tally = Arc::new(Tally::default());

    let run = |count: usize, seed: u64| {
        let (world, tally, h) = (world.clone(), tally.clone(), h.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..clients)
            .map(|w| {
                let (world, tally, h, next) =
                    (world.clone(), tally.clone(), h.clone(), next.clone());
                tokio::spawn(async move {
                    let mut rng = Rng::new(seed ^ (w as u64 + 1));
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        session(&world, &tally, &h, &mut rng).await;
                        tally.sessions.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        async move {
            for worker in workers {
                worker.await.expect("a client worker panicked");
            }
        }
    };

    // Warm up (allocator pools, lazy statics) before taking the memory baseline.
    run(clients * 4, seed.wrapping_add(1)).await;
    assert!(
        eventually(Duration::from_secs(20), || h.relay.stats().open()
            == baseline.3)
        .await,
        "connections still open after the warm-up: {}",
        h.relay.stats().open()
    );
    let rss_before = rss_kib();
    let started = Instant::now();
    // In rounds, sampling RSS after each: a leak shows as steady growth per round.
    let mut rss_rounds = Vec::new();
    for round in 0..4u64 {
        run(iterations / 4, seed.wrapping_add(round * 1000)).await;
        eventually(Duration::from_secs(30), || {
            h.relay.stats().open() == baseline.3
        })
        .await;
        world.exits.drain(&world.watcher);
        rss_rounds.push(rss_kib());
    }
    let elapsed = started.elapsed();

    // Every connection ends...
    assert!(
        eventually(Duration::from_secs(30), || h.relay.stats().open()
            == baseline.3)
        .await,
        "connections left open: {}",
        h.relay.stats().open()
    );
    // ...and every live target has had a ws.leave for each ws.join (its inbox may lag).
    let killed = world.killed.lock().unwrap().clone();
    let mut violations = Vec::new();
    let settled = eventually(Duration::from_secs(20), || {
        violations = world.log.violations(&killed);
        violations.is_empty()
    })
    .await;
    assert!(
        settled,
        "{} ordering violations, e.g.:\n{}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Stop the targets: now nothing of the run may remain.
    let live: Vec<Pid> = world
        .names
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    for pid in &live {
        let _ = h.node.kill(pid, ExitResult::error("end of test"));
    }
    let node = h.node.clone();
    let left = move || {
        (
            node.process_count(),
            node.relation_count(),
            node.name_count(),
        )
    };
    let clean = eventually(Duration::from_secs(20), || {
        left() == (baseline.0, baseline.1, baseline.2)
    })
    .await;
    assert!(
        clean,
        "left behind (processes, relations, names): {:?}, baseline {:?}",
        left(),
        (baseline.0, baseline.1, baseline.2)
    );

    // Exactly one EXIT per monitored process.
    world.exits.drain(&world.watcher);
    let wrong = world.exits.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "bad EXITs: {wrong:?}");
    let missing = world.exits.waiting.lock().unwrap().clone();
    assert!(missing.is_empty(), "monitors that got no EXIT: {missing:?}");

    let rss_after = rss_kib();
    let log = &world.log;
    let (joins, leaves, messages) = (
        log.joins.load(Ordering::Relaxed),
        log.leaves.load(Ordering::Relaxed),
        log.messages.load(Ordering::Relaxed),
    );
    let closes: Vec<_> = h.relay.stats().closes().filter(|(_, n)| *n > 0).collect();
    println!(
        "chaos: {} sessions ({} refused, {} without join, {} transfers, {} target kills) by {clients} clients in {elapsed:.1?} (seed {seed}); \
         {joins} joins, {leaves} leaves, {messages} messages, {} monitored exits; closes {closes:?}; \
         RSS before {rss_before} KiB, after each quarter {rss_rounds:?} KiB, at the end {rss_after} KiB ({:+} KiB)",
        tally.sessions.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.no_join.load(Ordering::Relaxed),
        tally.transfers.load(Ordering::Relaxed),
        tally.kills.load(Ordering::Relaxed),
        world.exits.seen.load(Ordering::Relaxed),
        rss_after as i64 - rss_before as i64,
    );
    // Allocators keep freed memory; what must not happen is growth with the session count.
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
