//! Runtime benchmarks: processes against bare Tokio tasks and channels.
//!
//! Run with `cargo bench -p wsrelay-process --bench runtime`. Every case runs on a
//! multi-thread Tokio runtime with 2 workers, next to its baseline measured in the same run;
//! each is repeated [`REPS`] times after one warm-up and the median is reported, because the
//! machines this runs on are shared and noisy. The table goes to stdout and the numbers to
//! `target/bench-process.json`.
//!
//! Messages in the baselines are the same [`Message`] values the processes receive, so a
//! ratio measures what the runtime adds (locking, wake-ups, bookkeeping), not payload cost.
//!
//! Memory is measured in a fresh child process per repetition (this binary re-executed with
//! `WSRELAY_BENCH_MEMORY` set): the allocator keeps freed pages, so a second measurement in
//! the same process would reuse them and report almost nothing.

use std::future::Future;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use wsrelay_process::{HostConfig, Message, Node, Pid, SpawnOptions, Value};

const HOST: &str = "bench";
const REPS: usize = 5;
const WORKERS: usize = 2;

const PING_PONGS: u64 = 20_000;
const ONE_WAY: u64 = 300_000;
const FAN_IN_SENDERS: u64 = 1_000;
const FAN_IN_EACH: u64 = 200;
const SPAWNS: usize = 100_000;
const IDLE: usize = 100_000;

const MEMORY_ENV: &str = "WSRELAY_BENCH_MEMORY";
/// Runs only the cases whose name contains this text (for profiling one case).
const ONLY_ENV: &str = "WSRELAY_BENCH_ONLY";

/// How long a cooperative sender waits for space before it re-checks the mark itself.
const STALL_TIMEOUT: Duration = Duration::from_millis(10);
/// Waits for space that timed out although the inbox had drained: lost wake-ups of
/// `ProcessRef::wait_for_space`. Without the timeout, each would hang the sender for good.
static STALLS: AtomicUsize = AtomicUsize::new(0);

fn main() {
    if let Ok(kind) = std::env::var(MEMORY_ENV) {
        // Child mode: one memory measurement, printed as bytes per idle process or task.
        println!("{}", measure_idle_memory(&kind));
        return;
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let mut rows = Vec::new();

    rows.extend(compare(
        "ping-pong",
        "round trips/s",
        PING_PONGS,
        "two tasks, two unbounded mpsc",
        "two processes, ProcessRef::send",
        || rt.block_on(mpsc_ping_pong()),
        || rt.block_on(process_ping_pong()),
    ));
    rows.extend(compare(
        "one-way, ProcessRef::send",
        "msgs/s",
        ONE_WAY,
        "unbounded mpsc",
        "ProcessRef::send",
        || rt.block_on(mpsc_one_way(None)),
        || rt.block_on(process_one_way(Path::ProcessRef)),
    ));
    rows.extend(compare(
        "one-way, Node::send",
        "msgs/s",
        ONE_WAY,
        "unbounded mpsc",
        "Node::send",
        || rt.block_on(mpsc_one_way(None)),
        || rt.block_on(process_one_way(Path::Node)),
    ));
    rows.extend(compare(
        "one-way, bounded",
        "msgs/s",
        ONE_WAY,
        "mpsc bounded 1024",
        "ProcessRef::send + wait_for_space (mark 1024)",
        || rt.block_on(mpsc_one_way(Some(1024))),
        || rt.block_on(process_one_way(Path::Cooperative)),
    ));
    rows.extend(compare(
        "fan-in 1,000 senders",
        "msgs/s",
        FAN_IN_SENDERS * FAN_IN_EACH,
        "1,000 tasks, one unbounded mpsc",
        "1,000 processes, ProcessRef::send",
        || rt.block_on(mpsc_fan_in()),
        || rt.block_on(process_fan_in()),
    ));
    rows.extend(compare(
        "spawn + exit",
        "spawns/s",
        SPAWNS as u64,
        "tokio::spawn, empty task",
        "Node::spawn, empty body",
        || rt.block_on(tokio_spawn_exit()),
        || rt.block_on(process_spawn_exit()),
    ));
    drop(rt);
    let memory = selected("memory per idle").then(memory_row);

    print_table(&rows, &memory);
    let elapsed = started.elapsed();
    println!("\ntotal bench time: {:.1} s", elapsed.as_secs_f64());
    write_json(&rows, &memory, elapsed);
}

// ===== reporting =====

/// One throughput case: medians of the baseline and of the process version.
struct Row {
    case: &'static str,
    unit: &'static str,
    baseline_name: &'static str,
    process_name: &'static str,
    baseline: Vec<f64>,
    process: Vec<f64>,
}

impl Row {
    fn ratio(&self) -> f64 {
        median(&self.process) / median(&self.baseline)
    }
}

struct MemoryRow {
    tokio_task: Vec<f64>,
    process: Vec<f64>,
}

/// Runs baseline and process alternately (so drift in machine load hits both), after a
/// warm-up of each, and turns elapsed times into rates of `ops` per second.
fn compare(
    case: &'static str,
    unit: &'static str,
    ops: u64,
    baseline_name: &'static str,
    process_name: &'static str,
    mut baseline: impl FnMut() -> Duration,
    mut process: impl FnMut() -> Duration,
) -> Option<Row> {
    if !selected(case) {
        return None;
    }
    baseline();
    process();
    let rate = |d: Duration| ops as f64 / d.as_secs_f64();
    let mut row = Row {
        case,
        unit,
        baseline_name,
        process_name,
        baseline: Vec::new(),
        process: Vec::new(),
    };
    for _ in 0..REPS {
        row.baseline.push(rate(baseline()));
        row.process.push(rate(process()));
    }
    eprintln!("  {case}: done");
    Some(row)
}

fn selected(case: &str) -> bool {
    std::env::var(ONLY_ENV).map_or(true, |only| case.contains(&only))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn print_table(rows: &[Row], memory: &Option<MemoryRow>) {
    println!();
    println!(
        "{:<28} {:>16} {:>16} {:>7}  unit",
        "case", "baseline", "process", "ratio"
    );
    for row in rows {
        println!(
            "{:<28} {:>16.0} {:>16.0} {:>6.2}x  {} (median of {REPS}; {} vs {})",
            row.case,
            median(&row.baseline),
            median(&row.process),
            row.ratio(),
            row.unit,
            row.process_name,
            row.baseline_name,
        );
    }
    let stalls = STALLS.load(Ordering::Relaxed);
    if stalls > 0 {
        println!(
            "lost wake-ups in wait_for_space (recovered by a {STALL_TIMEOUT:?} timeout): {stalls}"
        );
    }
    let Some(memory) = memory else { return };
    let (task, process) = (median(&memory.tokio_task), median(&memory.process));
    println!(
        "{:<28} {:>16.0} {:>16.0} {:>6.2}x  bytes each (median of {REPS}; {IDLE} idle, \
         process in ctx.recv() vs task on a Notify)",
        "memory per idle",
        task,
        process,
        process / task,
    );
}

fn write_json(rows: &[Row], memory: &Option<MemoryRow>, elapsed: Duration) {
    let cases: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "case": r.case,
                "unit": r.unit,
                "baseline": r.baseline_name,
                "process": r.process_name,
                "baseline_median": median(&r.baseline),
                "process_median": median(&r.process),
                "ratio": r.ratio(),
                "baseline_runs": r.baseline,
                "process_runs": r.process,
            })
        })
        .collect();
    let json = serde_json::json!({
        "command": "cargo bench -p wsrelay-process --bench runtime",
        "runtime": format!("tokio multi-thread, {WORKERS} workers"),
        "repetitions": REPS,
        "cases": cases,
        "wait_for_space_lost_wakeups": STALLS.load(Ordering::Relaxed),
        "memory": memory.as_ref().map(|m| serde_json::json!({
            "idle": IDLE,
            "unit": "bytes per idle process or task (VmRSS delta)",
            "tokio_task_median": median(&m.tokio_task),
            "process_median": median(&m.process),
            "tokio_task_runs": m.tokio_task,
            "process_runs": m.process,
        })),
        "elapsed_s": elapsed.as_secs_f64(),
    });
    let path = target_dir().join("bench-process.json");
    match std::fs::write(&path, serde_json::to_string_pretty(&json).expect("JSON")) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// `target/`: the bench binary lives in `target/release/deps/`.
fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the bench executable");
    exe.ancestors()
        .nth(3)
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into())
}

// ===== helpers =====

fn node() -> Node {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    node
}

fn topic() -> Arc<str> {
    Arc::from("m")
}

fn msg(from: &Option<Pid>, topic: &Arc<str>, i: u64) -> Message {
    Message::new(from.clone(), topic.clone(), Value::Int(i as i64))
}

/// Spawns a Rust process and returns a receiver for its own result.
fn spawn_with_result<T, F, Fut>(node: &Node, body: F) -> (Pid, oneshot::Receiver<T>)
where
    T: Send + 'static,
    F: FnOnce(wsrelay_process::Context) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let pid = node
        .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
            let _ = tx.send(body(ctx).await);
        })
        .expect("spawn");
    (pid, rx)
}

/// Waits (polling, at the same pace for every case) until `done` holds.
async fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

// ===== ping-pong =====

async fn mpsc_ping_pong() -> Duration {
    let (to_pong, mut pong_rx) = mpsc::unbounded_channel::<Message>();
    let (to_ping, mut ping_rx) = mpsc::unbounded_channel::<Message>();
    let ponger = tokio::spawn(async move {
        while let Some(m) = pong_rx.recv().await {
            if to_ping.send(m).is_err() {
                break;
            }
        }
    });
    let pinger = tokio::spawn(async move {
        let topic = topic();
        let start = Instant::now();
        for i in 0..PING_PONGS {
            to_pong.send(msg(&None, &topic, i)).unwrap();
            black_box(ping_rx.recv().await.unwrap());
        }
        start.elapsed()
    });
    let elapsed = pinger.await.unwrap();
    ponger.await.unwrap();
    elapsed
}

async fn process_ping_pong() -> Duration {
    let node = node();
    let (ponger, _) = spawn_with_result(&node, |ctx| async move {
        // Answer through a ProcessRef to the sender, resolved once.
        let first = ctx.recv().await;
        let back = ctx.node().process_ref(first.from().unwrap()).unwrap();
        back.send(first).unwrap();
        loop {
            let m = ctx.recv().await;
            if m.topic() == "stop" {
                break;
            }
            if back.send(m).is_err() {
                break;
            }
        }
    });
    let target = node.process_ref(&ponger).unwrap();
    let (_, done) = spawn_with_result(&node, move |ctx| async move {
        let topic = topic();
        let me = Some(ctx.pid().clone());
        let start = Instant::now();
        for i in 0..PING_PONGS {
            target.send(msg(&me, &topic, i)).unwrap();
            black_box(ctx.recv().await);
        }
        let elapsed = start.elapsed();
        target.send(Message::new(None, "stop", ())).unwrap();
        elapsed
    });
    done.await.unwrap()
}

// ===== one-way =====

async fn mpsc_one_way(bound: Option<usize>) -> Duration {
    let start = Instant::now();
    let receiver = match bound {
        None => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
            tokio::spawn(async move {
                let topic = topic();
                for i in 0..ONE_WAY {
                    tx.send(msg(&None, &topic, i)).unwrap();
                }
            });
            tokio::spawn(async move {
                let mut n = 0;
                while n < ONE_WAY {
                    black_box(rx.recv().await.unwrap());
                    n += 1;
                }
            })
        }
        Some(bound) => {
            let (tx, mut rx) = mpsc::channel::<Message>(bound);
            tokio::spawn(async move {
                let topic = topic();
                for i in 0..ONE_WAY {
                    tx.send(msg(&None, &topic, i)).await.unwrap();
                }
            });
            tokio::spawn(async move {
                let mut n = 0;
                while n < ONE_WAY {
                    black_box(rx.recv().await.unwrap());
                    n += 1;
                }
            })
        }
    };
    receiver.await.unwrap();
    start.elapsed()
}

#[derive(Clone, Copy)]
enum Path {
    /// `ProcessRef::send`, no look-up per message.
    ProcessRef,
    /// `Node::send`: a process-table look-up per message.
    Node,
    /// `ProcessRef::send`, waiting on the high-water mark like the relay does.
    Cooperative,
}

async fn process_one_way(path: Path) -> Duration {
    let node = node();
    let start = Instant::now();
    let (receiver, done) = spawn_with_result(&node, |ctx| async move {
        let mut n = 0;
        while n < ONE_WAY {
            black_box(ctx.recv().await);
            n += 1;
        }
    });
    let target = node.process_ref(&receiver).unwrap();
    node.spawn(HOST, SpawnOptions::new(), move |ctx| async move {
        let topic = topic();
        let me = Some(ctx.pid().clone());
        for i in 0..ONE_WAY {
            let m = msg(&me, &topic, i);
            match path {
                Path::ProcessRef => target.send(m).unwrap(),
                Path::Node => ctx.node().send(&receiver, m).unwrap(),
                Path::Cooperative => {
                    while target.is_congested() {
                        // The timeout only guards against a lost wake-up (see STALLS).
                        let wait = target.wait_for_space();
                        if tokio::time::timeout(STALL_TIMEOUT, wait).await.is_err() {
                            STALLS.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    target.send(m).unwrap();
                }
            }
        }
    })
    .unwrap();
    done.await.unwrap();
    start.elapsed()
}

// ===== fan-in =====

async fn mpsc_fan_in() -> Duration {
    let total = FAN_IN_SENDERS * FAN_IN_EACH;
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let receiver = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            black_box(rx.recv().await.unwrap());
            n += 1;
        }
    });
    for _ in 0..FAN_IN_SENDERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            let topic = topic();
            for i in 0..FAN_IN_EACH {
                tx.send(msg(&None, &topic, i)).unwrap();
            }
        });
    }
    receiver.await.unwrap();
    start.elapsed()
}

async fn process_fan_in() -> Duration {
    let total = FAN_IN_SENDERS * FAN_IN_EACH;
    let node = node();
    let start = Instant::now();
    let (receiver, done) = spawn_with_result(&node, move |ctx| async move {
        let mut n = 0;
        while n < total {
            black_box(ctx.recv().await);
            n += 1;
        }
    });
    let target = node.process_ref(&receiver).unwrap();
    for _ in 0..FAN_IN_SENDERS {
        let target = target.clone();
        node.spawn(HOST, SpawnOptions::new(), move |ctx| async move {
            let topic = topic();
            let me = Some(ctx.pid().clone());
            for i in 0..FAN_IN_EACH {
                target.send(msg(&me, &topic, i)).unwrap();
            }
        })
        .unwrap();
    }
    done.await.unwrap();
    start.elapsed()
}

// ===== spawn + exit =====

async fn tokio_spawn_exit() -> Duration {
    // Spawn from a worker, as a process spawning processes would.
    tokio::spawn(async {
        let live = Arc::new(AtomicUsize::new(SPAWNS));
        let start = Instant::now();
        for _ in 0..SPAWNS {
            let live = live.clone();
            tokio::spawn(async move {
                live.fetch_sub(1, Ordering::Release);
            });
        }
        wait_until(|| live.load(Ordering::Acquire) == 0).await;
        start.elapsed()
    })
    .await
    .unwrap()
}

async fn process_spawn_exit() -> Duration {
    tokio::spawn(async {
        let node = node();
        let start = Instant::now();
        for _ in 0..SPAWNS {
            node.spawn(HOST, SpawnOptions::new(), |_ctx| async {})
                .unwrap();
        }
        // Exited means the exit protocol ran: the process left the table.
        wait_until(|| node.process_count() == 0).await;
        start.elapsed()
    })
    .await
    .unwrap()
}

// ===== memory =====

fn memory_row() -> MemoryRow {
    let exe = std::env::current_exe().expect("the bench executable");
    let run = |kind: &str| -> f64 {
        let out = Command::new(&exe)
            .env(MEMORY_ENV, kind)
            .output()
            .expect("run the memory child");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("memory child printed {text:?}"))
    };
    let mut row = MemoryRow {
        tokio_task: Vec::new(),
        process: Vec::new(),
    };
    for _ in 0..REPS {
        row.tokio_task.push(run("task"));
        row.process.push(run("process"));
    }
    eprintln!("  memory: done");
    row
}

/// Bytes of resident memory per idle process (or task), in a fresh process.
fn measure_idle_memory(kind: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    rt.block_on(async {
        let notify = Arc::new(Notify::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        // Warm up: let the runtime allocate what it keeps anyway. `Node::shutdown` stops
        // spawning for good, so the measured run gets a node of its own.
        let warm_up = node();
        spawn_idle(kind, &warm_up, &notify, &waiting, 1_000).await;
        release(kind, &warm_up, &notify, &waiting).await;

        let node = node();
        let before = vm_rss();
        spawn_idle(kind, &node, &notify, &waiting, IDLE).await;
        let after = vm_rss();
        release(kind, &node, &notify, &waiting).await;
        (after.saturating_sub(before)) as f64 / IDLE as f64
    })
}

async fn spawn_idle(
    kind: &str,
    node: &Node,
    notify: &Arc<Notify>,
    waiting: &Arc<AtomicUsize>,
    n: usize,
) {
    for _ in 0..n {
        let waiting = waiting.clone();
        if kind == "process" {
            node.spawn(HOST, SpawnOptions::new(), move |ctx| async move {
                waiting.fetch_add(1, Ordering::Release);
                ctx.recv().await;
            })
            .unwrap();
        } else {
            let notify = notify.clone();
            tokio::spawn(async move {
                let notified = notify.notified();
                waiting.fetch_add(1, Ordering::Release);
                notified.await;
            });
        }
    }
    // Every body has run up to its wait.
    wait_until(|| waiting.load(Ordering::Acquire) == n).await;
    // Give the workers a moment to park inside their waits.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn release(kind: &str, node: &Node, notify: &Notify, waiting: &AtomicUsize) {
    if kind == "process" {
        node.shutdown();
        wait_until(|| node.process_count() == 0).await;
    } else {
        // Wakes every `Notified` created before this call, polled or not.
        notify.notify_waiters();
    }
    waiting.store(0, Ordering::Release);
}

/// Resident set size of this process, in bytes.
fn vm_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}
