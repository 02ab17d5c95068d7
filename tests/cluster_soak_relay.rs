//! The chaos soak with relay connections (docs/cluster.md "Tests", the relay part of the soak
//! of `crates/cluster/tests/soak.rs`): three `wsrelay run` nodes, the gateway A and the
//! target nodes B and C, each first on its own NATS server. WebSocket clients keep coming
//! and going through A to Lua targets on B and C (`global:soak_b`, `global:soak_c`), and some
//! stay connected throughout, while faults follow one another: a NATS server SIGKILLed and
//! restarted, a NATS server hung (SIGSTOP), a server's routes cut (with root and iptables),
//! then both target nodes hung at once, both SIGKILLed at once and restarted, the gateway
//! A SIGKILLed and restarted, and A and the target C SIGKILLed together and restarted (every
//! other round of the long form takes the targets down one at a time instead: C hung, B hung,
//! B killed), and all three nodes SIGKILLed at once and restarted (see the fault list). Each target writes a ledger line for every
//! `ws.join`, `ws.leave` and EXIT of a client it monitors (JSON logs, one file per run of a
//! node).
//!
//! After the last fault has healed and every client has closed: every connection a target
//! saw has exactly one `ws.join` and exactly one end, its `ws.leave` or, where the
//! connection's node was cut off or killed, the EXIT `noconnection` that replaces it
//! (docs/cluster.md, "Relay across nodes"); none is doubled; every connection that echoed was
//! joined; and new connections echo through both targets (no session, no name stays wedged).
//! A request whose client gave up before the gateway answered it has no connection: its
//! target gets only `ws.leave` `not_upgraded`, and its client must not have been accepted.
//! The one exception: a connection joined on a target run that was killed has no end in that
//! run's ledger (the run that would write it is gone); its client must have ended all the same.
//!
//! The same soak runs again with network delay, jitter and packet loss between the nodes and
//! the NATS servers, in a network namespace (`support/netem.rs`; needs root, `ip` and
//! `iptables`, skipped otherwise).
//!
//! The short form (the default) is part of `cargo test`; `WSR_SOAK=long` runs the long form.
//! Figures are printed (`--nocapture`), never asserted: they go to docs/cluster.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::nats::{free_port, nats, Nats};
use crate::support::netem;
use crate::support::routes::RouteCut;
use crate::support::{cluster_app_head, relay_gateway_entries, NodeProc};

/// The target: echoes, and writes the ledger (`LEDGER`, `ev=join|leave|exit`, the
/// connection's `id` from its metadata, `why`). It monitors each client from its join and
/// stops monitoring at its leave; it keeps each client's id (a test's worth of them), so that
/// an EXIT racing the leave is still put to its connection.
const TARGET_LUA: &str = r#"
local logger = require("logger")
local log = logger:named("ledger")
local function run(name)
    local ok, err = process.registry.register(name)
    if not ok then error(err) end
    local inbox = process.inbox()
    local events = process.events()
    local ids = {}
    while true do
        local r = channel.select({ inbox:case_receive(), events:case_receive() })
        if r.channel == inbox then
            local msg = r.value
            local topic = msg:topic()
            local data = msg:payload():data()
            if topic == "ws.message" then
                process.send(data.client_pid, "ws.send", { type = data.type, data = data.data })
            elseif topic == "ws.join" then
                local id = tostring(data.metadata and data.metadata.id)
                ids[data.client_pid] = id
                process.monitor(data.client_pid)
                log:info("LEDGER", { ev = "join", id = id })
            elseif topic == "ws.leave" then
                local id = ids[data.client_pid] or tostring(data.metadata and data.metadata.id)
                process.unmonitor(data.client_pid)
                log:info("LEDGER", { ev = "leave", id = id, why = tostring(data.reason) })
            end
        else
            local event = r.value
            if event.kind == process.event.EXIT then
                local result = event.result or {}
                local why = result.error or result.value
                log:info("LEDGER", { ev = "exit", id = tostring(ids[event.from]), why = tostring(why) })
            end
        end
    end
end
return { run = run }
"#;

const SECRET: &str = "the relay soak's shared secret\n";

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Rounds of the faults.
    rounds: usize,
    /// Clients that connect, echo, hold a moment and close, over and over.
    churn: usize,
    /// Clients that stay connected (reconnecting when the server closes them).
    held: usize,
}

fn size() -> Size {
    if std::env::var("WSR_SOAK").as_deref() == Ok("long") {
        Size {
            rounds: 6,
            churn: 24,
            held: 24,
        }
    } else {
        Size {
            rounds: 1,
            churn: 12,
            held: 12,
        }
    }
}

fn app_yaml(node: &str, nats: &Nats, gateway: Option<u16>) -> String {
    let first = server_of(node);
    let urls = [
        nats.url(first),
        nats.url(first % 3 + 1),
        nats.url((first + 1) % 3 + 1),
    ];
    let mut y = cluster_app_head(node, &urls, "nats.creds");
    match gateway {
        None => y.push_str(&format!(
            r#"  - name: target
    kind: process.lua
    source: file://target.lua
    method: run
    modules: [logger]
  - name: target_service
    kind: process.service
    process: target
    host: app:processes
    input: ["global:soak_{node}"]
    lifecycle:
      auto_start: true
"#
        )),
        Some(port) => y.push_str(&relay_gateway_entries(port)),
    }
    y
}

/// The NATS server a node connects to first: A 1, B 2, C 3.
fn server_of(node: &str) -> usize {
    match node {
        "a" => 1,
        "b" => 2,
        _ => 3,
    }
}

/// Starts run `run` of the `wsrelay run` node `node`; its JSON log is [`log_of`].
fn start_node(base: &Path, node: &str, run: usize, nats: &Nats, gateway: Option<u16>) -> NodeProc {
    let dir = base.join(node);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(nats.dir.join("creds").join(node), dir.join("nats.creds")).unwrap();
    std::fs::write(dir.join("app.yaml"), app_yaml(node, nats, gateway)).unwrap();
    std::fs::write(dir.join("target.lua"), TARGET_LUA).unwrap();
    std::fs::write(dir.join("connect.lua"), crate::support::ops::JOIN).unwrap();
    let log = std::fs::File::create(log_of(base, node, run)).unwrap();
    NodeProc::spawn(
        Command::new(env!("CARGO_BIN_EXE_wsrelay"))
            .arg("--json")
            .arg("run")
            .arg(&dir)
            .env("WSRELAY_CLUSTER_REPLICAS", "3")
            .env("WSRELAY_CLUSTER_SECRET_FILE", base.join("cluster.secret"))
            .env(
                "RUST_LOG",
                "warn,wsrelay_lua::logger=info,wsrelay_cluster=info",
            )
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// The log of one run of a node: a killed run's ledger stays readable beside the next run's.
fn log_of(base: &Path, node: &str, run: usize) -> PathBuf {
    base.join(format!("{node}.{run}.log"))
}

/// The soak's three nodes, each restartable: which run each is at, and the logs of the runs
/// that were killed.
struct Nodes<'a> {
    base: &'a Path,
    nats: &'a Nats,
    /// The gateway's listening port (the same for every run of A).
    port: u16,
    running: HashMap<&'static str, (usize, NodeProc)>,
    killed: HashSet<PathBuf>,
}

impl<'a> Nodes<'a> {
    fn start(base: &'a Path, nats: &'a Nats, port: u16) -> Nodes<'a> {
        let mut nodes = Nodes {
            base,
            nats,
            port,
            running: HashMap::new(),
            killed: HashSet::new(),
        };
        for node in ["a", "b", "c"] {
            nodes.start_run(node, 1);
        }
        nodes
    }

    fn start_run(&mut self, node: &'static str, run: usize) {
        let gateway = (node == "a").then_some(self.port);
        let proc = start_node(self.base, node, run, self.nats, gateway);
        self.running.insert(node, (run, proc));
    }

    fn signal(&self, node: &str, sig: &str) {
        self.running[node].1.signal(sig);
    }

    /// SIGKILL of `nodes` at once; their next runs start after `down`.
    async fn kill_and_restart(&mut self, nodes: &[&'static str], down: Duration) {
        let killed: Vec<_> = nodes
            .iter()
            .map(|&node| {
                let (run, proc) = self.running.remove(node).expect("the node runs");
                proc.signal("KILL");
                (node, run, proc)
            })
            .collect();
        let mut restart = Vec::new();
        for (node, run, proc) in killed {
            drop(proc); // waits for it
            self.killed.insert(log_of(self.base, node, run));
            restart.push((node, run + 1));
        }
        tokio::time::sleep(down).await;
        for (node, run) in restart {
            self.start_run(node, run);
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a client saw of one connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Echoes that came back.
    echoed: usize,
    /// How it ended: `client` (this side closed it), `server CODE`, `lost` (no close frame).
    end: Option<String>,
}

/// The client side: every accepted connection by id.
type Clients = Arc<Mutex<BTreeMap<u64, Seen>>>;

/// A relay connection to `target` with id `id`, or `None` if it was not accepted in time.
async fn open(port: u16, target: &str, id: u64) -> Option<Ws> {
    let url = format!("ws://127.0.0.1:{port}/?target=global:{target}&id={id}");
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

/// What one echo attempt gave.
enum Echo {
    Back,
    Timeout,
    Closed(String),
}

async fn echo(ws: &mut Ws, text: &str) -> Echo {
    if ws.send(Message::text(text)).await.is_err() {
        return Echo::Closed("lost".into());
    }
    let deadline = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Echo::Timeout,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == text => return Echo::Back,
                Some(Ok(Message::Close(frame))) => return Echo::Closed(close_text(frame)),
                Some(Ok(_)) => {}
                _ => return Echo::Closed("lost".into()),
            }
        }
    }
}

fn close_text(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("server {}", u16::from(f.code)),
        None => "server".into(),
    }
}

/// Closes from this side and waits (a little) for the close handshake to finish.
async fn close(mut ws: Ws) -> String {
    if ws.close(None).await.is_err() {
        return "lost".into();
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    "client".into()
}

/// Waits up to `hold` for the server to close `ws`; `Some(how)` if it did.
async fn watch_close(ws: &mut Ws, hold: Duration) -> Option<String> {
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return None,
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(frame))) => return Some(close_text(frame)),
                Some(Ok(_)) => {}
                _ => return Some("lost".into()),
            }
        }
    }
}

fn target_of(n: u64) -> &'static str {
    if n % 2 == 0 {
        "soak_b"
    } else {
        "soak_c"
    }
}

/// One client's loop: connect, echo up to three times, hold (`hold`, or until `stop` for a
/// held client), close; again until `stop`.
async fn client(
    port: u16,
    worker: u64,
    held: bool,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    clients: Clients,
) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let id = next.fetch_add(1, Ordering::Relaxed);
        let Some(mut ws) = open(port, target_of(worker + round), id).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        clients.lock().unwrap().insert(id, Seen::default());
        let mut end = None;
        for i in 0..3 {
            match echo(&mut ws, &format!("{id}.{i}")).await {
                Echo::Back => clients.lock().unwrap().get_mut(&id).unwrap().echoed += 1,
                Echo::Timeout => break,
                Echo::Closed(how) => {
                    end = Some(how);
                    break;
                }
            }
        }
        if end.is_none() {
            let mut hold = Duration::from_millis(100 + id * 7919 % 500);
            loop {
                end = watch_close(&mut ws, hold).await;
                if end.is_some() || !held || stop.load(Ordering::Relaxed) {
                    break;
                }
                hold = Duration::from_millis(200);
            }
        }
        let how = match end {
            Some(how) => how,
            None => close(ws).await,
        };
        clients.lock().unwrap().get_mut(&id).unwrap().end = Some(how);
    }
}

/// Until `timeout`: a new connection to each target echoes; how long that took.
async fn healed(port: u16, next: &AtomicU64, clients: &Clients, timeout: Duration) -> Duration {
    let start = Instant::now();
    for target in ["soak_b", "soak_c"] {
        loop {
            assert!(
                start.elapsed() < timeout,
                "no echo through {target} {timeout:?} after the fault (wedged)"
            );
            let id = next.fetch_add(1, Ordering::Relaxed);
            if let Some(mut ws) = open(port, target, id).await {
                clients.lock().unwrap().insert(id, Seen::default());
                let back = matches!(echo(&mut ws, "heal").await, Echo::Back);
                let how = close(ws).await;
                let mut c = clients.lock().unwrap();
                let seen = c.get_mut(&id).unwrap();
                seen.echoed = usize::from(back);
                seen.end = Some(how);
                if back {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    start.elapsed()
}

/// What the targets saw of one connection.
#[derive(Debug, Default, Clone)]
struct Entry {
    joins: usize,
    leaves: Vec<String>,
    /// EXITs of its monitor that stand in for a leave that could not come: `noconnection`
    /// (the connection's node cut off) or `noproc` (the monitor reached the connection's
    /// node after the connection had ended there, the target's node having been cut off).
    lost: Vec<String>,
    /// Other EXITs of its monitor (a normal exit racing the unmonitor at the leave).
    other_exits: usize,
    /// Joined on a target run that was killed later: its end may be missing from the ledger.
    on_killed_run: bool,
}

/// Reads the targets' ledgers from the logs of every run of B and C (JSON lines, `fields` =
/// `k=v ...`); `killed` are the logs of the runs that were killed.
fn read_ledger(base: &Path, killed: &HashSet<PathBuf>) -> HashMap<String, Entry> {
    let mut ledger: HashMap<String, Entry> = HashMap::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.starts_with("b.") || name.starts_with("c.")) && name.ends_with(".log")
        })
        .collect();
    logs.sort();
    for log in logs {
        let on_killed_run = killed.contains(&log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["message"] != "LEDGER" {
                continue;
            }
            let fields: HashMap<&str, &str> = v["fields"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let id = fields.get("id").copied().unwrap_or("nil").to_owned();
            let why = fields.get("why").copied().unwrap_or("").to_owned();
            let e = ledger.entry(id).or_default();
            match fields.get("ev").copied() {
                Some("join") => {
                    e.joins += 1;
                    e.on_killed_run |= on_killed_run;
                }
                Some("leave") => e.leaves.push(why),
                Some("exit") if why == "noconnection" || why == "noproc" => e.lost.push(why),
                Some("exit") => e.other_exits += 1,
                _ => {}
            }
        }
    }
    ledger
}

/// A connection whose join was seen has its end: a leave or an EXIT standing in for it, or
/// none where the target run that would have written it was killed.
fn ended(e: &Entry) -> bool {
    e.joins == 0 || !e.leaves.is_empty() || !e.lost.is_empty() || e.on_killed_run
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    ServerKill(u32),
    ServerStop(u32),
    RouteCut(u32),
    /// These nodes hung at once.
    NodeStop(&'static [&'static str]),
    /// These nodes SIGKILLed at once and restarted.
    NodeKill(&'static [&'static str]),
}

/// The soak below with network delay, jitter and packet loss between the nodes and the NATS
/// servers (`support/netem.rs`): inside a network namespace of its own, with its own NATS
/// cluster and nodes, and the same checks.
#[test]
fn relay_soak_with_network_delay_and_loss() {
    netem::soak_inside(
        "cluster_soak_relay::relay_connections_survive_the_chaos_soak_with_one_join_and_one_end_each",
        "cluster_soak_relay::delay_proxy",
        "SOAK-RELAY",
    );
}

/// The delaying proxy of the namespace (see `support/netem.rs`).
#[test]
#[ignore = "the soak's delaying proxy: runs only when the soak starts it"]
fn delay_proxy() {
    netem::delay_proxy();
}

#[test]
fn relay_connections_survive_the_chaos_soak_with_one_join_and_one_end_each() {
    let Some(nats) = nats() else { return };
    let size = size();
    let started = Instant::now();
    let base = std::env::temp_dir().join(format!("wsr-e2e-soak-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // Written once, before any node reads it.
    std::fs::write(base.join("cluster.secret"), SECRET).unwrap();
    let port = free_port();
    let mut nodes = Nodes::start(&base, &nats, port);
    let cut = RouteCut::new();
    let rt = crate::support::rt();
    rt.block_on(async {
        let clients: Clients = Arc::default();
        let next = Arc::new(AtomicU64::new(1));
        let up = healed(port, &next, &clients, Duration::from_secs(60)).await;
        eprintln!("SOAK-RELAY nodes serving after {up:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..(size.churn + size.held) as u64 {
            tasks.push(tokio::spawn(client(
                port,
                w,
                w >= size.churn as u64,
                stop.clone(),
                next.clone(),
                clients.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut faults = Vec::new();
        for round in 0..size.rounds {
            faults.extend([
                Fault::ServerKill(2),
                Fault::ServerStop(3),
                Fault::RouteCut(1),
            ]);
            // Both targets down at once (every connection then ends on its gateway alone),
            // or, every other round of the long form, one after the other.
            if round % 2 == 0 {
                faults.extend([Fault::NodeStop(&["b", "c"]), Fault::NodeKill(&["b", "c"])]);
            } else {
                faults.extend([
                    Fault::NodeStop(&["c"]),
                    Fault::NodeStop(&["b"]),
                    Fault::NodeKill(&["b"]),
                ]);
            }
            // The gateway alone, then the gateway and a target at once: the target's
            // connections lose both ends together, the other target's lose their gateway.
            // Then the whole cluster at once: every node restarts among the names its
            // previous run left in NATS (what found the defects in docs/cluster.md, "Fixed":
            // a name resolved to a dead run; a name slow to register).
            faults.extend([
                Fault::NodeKill(&["a"]),
                Fault::NodeKill(&["a", "c"]),
                Fault::NodeKill(&["a", "b", "c"]),
            ]);
        }
        let mut heal_times: Vec<(Fault, Duration)> = Vec::new();
        for fault in faults {
            match fault {
                Fault::ServerKill(n) => {
                    nats.kill_server(n);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    nats.start_server(n);
                }
                Fault::ServerStop(n) => {
                    nats.pause_server(n);
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    nats.resume_server(n);
                }
                Fault::RouteCut(n) => {
                    let Some(cut) = &cut else { continue };
                    let pid = nats.server_pid(n).expect("server runs");
                    cut.cut(n as usize, pid);
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    cut.heal();
                }
                Fault::NodeStop(stopped) => {
                    for node in stopped {
                        nodes.signal(node, "STOP");
                    }
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    for node in stopped {
                        nodes.signal(node, "CONT");
                    }
                }
                Fault::NodeKill(killed) => {
                    nodes.kill_and_restart(killed, Duration::from_secs(1)).await;
                }
            }
            let took = healed(port, &next, &clients, Duration::from_secs(60)).await;
            eprintln!(
                "SOAK-RELAY fault {fault:?}: both targets echo again {took:?} after the heal"
            );
            heal_times.push((fault, took));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        // No session wedged: new connections echo after the last heal.
        healed(port, &next, &clients, Duration::from_secs(30)).await;

        // The ledger settles: every joined connection gets its end (a hang bound only).
        let clients = clients.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ledger = read_ledger(&base, &nodes.killed);
        while Instant::now() < deadline && !ledger.values().all(ended) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ledger = read_ledger(&base, &nodes.killed);
        }
        report(&clients, &ledger, started.elapsed());
        check(&clients, &ledger);
    });
    drop(nodes);
    drop(cut);
    let _ = std::fs::remove_dir_all(&base);
}

fn report(clients: &BTreeMap<u64, Seen>, ledger: &HashMap<String, Entry>, wall: Duration) {
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for seen in clients.values() {
        *ends
            .entry(seen.end.clone().unwrap_or_else(|| "open".into()))
            .or_default() += 1;
    }
    let mut leaves: BTreeMap<String, usize> = BTreeMap::new();
    for e in ledger.values() {
        for why in &e.leaves {
            *leaves.entry(why.clone()).or_default() += 1;
        }
    }
    let joined = ledger.values().filter(|e| e.joins > 0).count();
    let mut lost: BTreeMap<String, usize> = BTreeMap::new();
    for e in ledger.values().filter(|e| e.leaves.is_empty()) {
        for why in &e.lost {
            *lost.entry(why.clone()).or_default() += 1;
        }
    }
    let both = ledger
        .values()
        .filter(|e| !e.leaves.is_empty() && !e.lost.is_empty())
        .count();
    let mut unjoined: BTreeMap<String, usize> = BTreeMap::new();
    for (id, seen) in clients {
        if !ledger.contains_key(&id.to_string()) {
            *unjoined
                .entry(seen.end.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let other: usize = ledger.values().map(|e| e.other_exits).sum();
    let killed = ledger
        .values()
        .filter(|e| e.on_killed_run && e.leaves.is_empty() && e.lost.is_empty())
        .count();
    eprintln!(
        "SOAK-RELAY accepted {} connections; client ends {ends:?}; joined {joined}; \
         leaves {leaves:?}; EXITs instead of a leave {lost:?}; leave, then an error EXIT \
         {both}; accepted but never joined, by client end {unjoined:?}; other EXITs after a \
         leave {other}; joined on a killed target run, no end written {killed}; wall {wall:?}{}",
        clients.len(),
        netem::network(),
    );
}

fn check(clients: &BTreeMap<u64, Seen>, ledger: &HashMap<String, Entry>) {
    let mut wrong = Vec::new();
    for (id, e) in ledger {
        // A request whose client gave up (`open`'s 5 s) before the gateway's handler
        // answered (its name lookup waited out a NATS fault): the target it named is told
        // `ws.leave` `not_upgraded`, with no join before it (docs/spec.md §3.3). Its client
        // never had a connection.
        if e.joins == 0 && e.leaves == ["not_upgraded"] && e.lost.is_empty() {
            if id.parse().is_ok_and(|id: u64| clients.contains_key(&id)) {
                wrong.push(format!(
                    "{id}: upgraded, but its target was told not_upgraded"
                ));
            }
            continue;
        }
        if e.joins != 1 {
            wrong.push(format!("{id}: {} joins", e.joins));
        }
        if e.leaves.len() > 1 || e.lost.len() > 1 {
            wrong.push(format!("{id}: ends doubled {e:?}"));
        }
        if !ended(e) {
            wrong.push(format!("{id}: joined, never left"));
        }
    }
    for (id, seen) in clients {
        if seen.end.is_none() {
            wrong.push(format!("{id}: the client never finished"));
        }
        if seen.echoed > 0 && !ledger.contains_key(&id.to_string()) {
            wrong.push(format!("{id}: echoed {} times, no join", seen.echoed));
        }
    }
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} ledger errors, the first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}
