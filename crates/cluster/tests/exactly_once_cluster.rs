//! The `exactly_once` property test of `wsrelay-process`, with processes spread over three
//! in-process nodes connected through NATS: random spawn / monitor / link / send / exit /
//! terminate sequences checked against a sequential model. Each monitor sees exactly one EXIT
//! with the right result, links propagate exactly the error exits, messages arrive in order
//! per sender/receiver pair, and no node holds anything afterwards.
//!
//! Cross-node effects are asynchronous, so after each operation the test waits, with a
//! deadline, until the system shows what the model predicts: a `sync` message sent along the
//! same path as the operation's effect (ordered behind it) and acknowledged, or the predicted
//! exits, link-downs and deaths observed.
//!
//! One deliberate difference from the local model: linking to a dead *remote* process
//! delivers an asynchronous link-down `noproc` (as in Erlang), while a local `link` to a dead
//! process fails at once; the test links only to live processes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use proptest::prelude::*;
use wsrelay_cluster::Cluster;
use wsrelay_process::{
    reason, Context, Event, ExitResult, Message, Pid, Received, SpawnOptions, Value,
};

const NODES: usize = 3;
const PROBES: usize = 3; // probe i lives on node i
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Op {
    Spawn { trap: bool },
    Monitor { probe: usize, target: usize },
    Link { a: usize, b: usize },
    Send { from: usize, to: usize },
    Exit { who: usize, error: bool },
    Terminate { who: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|trap| Op::Spawn { trap }),
        2 => (0..PROBES, 0..64usize).prop_map(|(probe, target)| Op::Monitor { probe, target }),
        2 => (0..64usize, 0..64usize).prop_map(|(a, b)| Op::Link { a, b }),
        3 => (0..64usize, 0..64usize).prop_map(|(from, to)| Op::Send { from, to }),
        1 => (0..64usize, any::<bool>()).prop_map(|(who, error)| Op::Exit { who, error }),
        1 => (0..64usize).prop_map(|who| Op::Terminate { who }),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Data { at: usize, from: usize, seq: u64 },
    LinkDown { at: usize, from: usize },
}

type Log = Arc<Mutex<Vec<Seen>>>;
type Index = Arc<Mutex<BTreeMap<Pid, usize>>>;

#[derive(Debug, Default)]
struct Model {
    alive: bool,
    trap: bool,
    links: BTreeSet<usize>,
}

fn pid_of(v: &Value, key: &str) -> Pid {
    v.get(key).unwrap().as_str().unwrap().parse().unwrap()
}

async fn subject(ctx: Context, me: usize, trap: bool, log: Log, index: Index) -> ExitResult {
    ctx.set_trap_links(trap);
    let idx = |pid: &Pid| index.lock().unwrap()[pid];
    loop {
        match ctx.next().await {
            Received::Event(Event::LinkDown { from, .. }) => {
                log.lock().unwrap().push(Seen::LinkDown {
                    at: me,
                    from: idx(&from),
                })
            }
            Received::Event(_) => {}
            Received::Message(msg) => {
                let p = msg.payload();
                match msg.topic() {
                    "link" => {
                        let _ = ctx.link(&pid_of(p, "to"));
                    }
                    "send" => {
                        let _ = ctx.send(&pid_of(p, "to"), "data", p.get("seq").unwrap().clone());
                    }
                    // Sends `sync` to `to`, behind everything this process sent there before.
                    "relay" => {
                        let _ = ctx.send(&pid_of(p, "to"), "sync", p.clone());
                    }
                    "sync" => {
                        let _ =
                            ctx.send(&pid_of(p, "reply"), "ack", p.get("token").unwrap().clone());
                    }
                    "data" => {
                        let seq = p.as_i64().unwrap() as u64;
                        let from = idx(msg.from().unwrap());
                        log.lock().unwrap().push(Seen::Data { at: me, from, seq });
                    }
                    "exit" if p == &Value::Bool(true) => return ExitResult::error("chosen"),
                    "exit" => return ExitResult::normal("bye"),
                    _ => {}
                }
            }
        }
    }
}

struct Cluster3 {
    nodes: Vec<Cluster>,
    probes: Vec<Context>,
    collector: Context,
}

impl Cluster3 {
    async fn start() -> Cluster3 {
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(start(&unique(&format!("x{i}"))).await);
        }
        let probes = (0..PROBES)
            .map(|i| probe(nodes[i % NODES].node()))
            .collect();
        let collector = probe(nodes[0].node());
        Cluster3 {
            nodes,
            probes,
            collector,
        }
    }
}

struct World<'c> {
    c: &'c Cluster3,
    subjects: Vec<Pid>,
    home: Vec<usize>,
    model: Vec<Model>,
    log: Log,
    index: Index,
    expected_seen: Vec<Seen>,
    expected_exits: BTreeMap<(usize, usize), Vec<Option<String>>>,
    seen_exits: BTreeMap<(usize, usize), Vec<Option<String>>>,
    monitoring: BTreeSet<(usize, usize)>,
    seq: u64,
    token: i64,
}

impl<'c> World<'c> {
    fn new(c: &'c Cluster3) -> World<'c> {
        World {
            c,
            subjects: Vec::new(),
            home: Vec::new(),
            model: Vec::new(),
            log: Log::default(),
            index: Index::default(),
            expected_seen: Vec::new(),
            expected_exits: BTreeMap::new(),
            seen_exits: BTreeMap::new(),
            monitoring: BTreeSet::new(),
            seq: 0,
            token: 0,
        }
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.subjects.is_empty()).then(|| i % self.subjects.len())
    }

    /// A message to subject `who` from its own node (no network in between).
    fn command(&self, who: usize, topic: &str, payload: Value) {
        let node = self.c.nodes[self.home[who]].node();
        let _ = node.send(&self.subjects[who], Message::new(None, topic, payload));
    }

    fn sync_payload(&mut self, to: &Pid) -> (Value, i64) {
        self.token += 1;
        let v = wsrelay_process::Map::new()
            .with("to", to.as_str())
            .with("reply", self.c.collector.pid().as_str())
            .with("token", self.token);
        (v.into(), self.token)
    }

    async fn wait_ack(&self, token: i64) -> Result<(), TestCaseError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.c.collector.recv())
                .await
                .map_err(|_| TestCaseError::fail(format!("no ack {token} in time")))?;
            if msg.payload().as_i64() == Some(token) {
                return Ok(());
            }
        }
    }

    /// Waits until `from` has processed everything sent to it and everything it sent to `to`
    /// has arrived (if `to` is alive).
    async fn barrier(&mut self, from: usize, to: usize) -> Result<(), TestCaseError> {
        let target = if self.model[to].alive { to } else { from };
        if !self.model[from].alive {
            return Ok(());
        }
        let (payload, token) = self.sync_payload(&self.subjects[target].clone());
        self.command(from, "relay", payload);
        self.wait_ack(token).await
    }

    fn drain_exits(&mut self) -> Result<(), TestCaseError> {
        for (p, ctx) in self.c.probes.iter().enumerate() {
            while let Some(event) = ctx.try_next_event() {
                let Event::Exit { from, result } = event else {
                    return Err(TestCaseError::fail(format!("probe got {event:?}")));
                };
                let Some(&t) = self.index.lock().unwrap().get(&from) else {
                    return Err(TestCaseError::fail(format!("EXIT from unknown {from}")));
                };
                self.seen_exits
                    .entry((p, t))
                    .or_default()
                    .push(result.error_text().map(str::to_owned));
            }
        }
        Ok(())
    }

    fn settled(&self) -> bool {
        let exits = self.seen_exits == self.expected_exits;
        let mut log = self.log.lock().unwrap().clone();
        let mut want = self.expected_seen.clone();
        log.sort();
        want.sort();
        let alive = (0..self.subjects.len()).all(|i| {
            self.c.nodes[self.home[i]]
                .node()
                .is_alive(&self.subjects[i])
                == self.model[i].alive
        });
        exits && log == want && alive
    }

    /// Polls until exits, link-downs, data and deaths match the model.
    async fn settle(&mut self) -> Result<(), TestCaseError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.drain_exits()?;
            if self.settled() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log.lock().unwrap().clone();
                return Err(TestCaseError::fail(format!(
                    "not settled: exits {:?} want {:?}; log {:?} want {:?}",
                    self.seen_exits, self.expected_exits, log, self.expected_seen
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Spawn { trap } => {
                let me = self.subjects.len();
                let home = me % NODES;
                let (log, index) = (self.log.clone(), self.index.clone());
                let pid = self.c.nodes[home]
                    .node()
                    .spawn(HOST, SpawnOptions::new(), move |ctx| {
                        subject(ctx, me, trap, log, index)
                    })
                    .unwrap();
                self.index.lock().unwrap().insert(pid.clone(), me);
                self.subjects.push(pid);
                self.home.push(home);
                self.model.push(Model {
                    alive: true,
                    trap,
                    ..Model::default()
                });
            }
            Op::Monitor { probe, target } => {
                let Some(t) = self.pick(target) else {
                    return Ok(());
                };
                if self.monitoring.contains(&(probe, t)) {
                    return Ok(());
                }
                let ctx = &self.c.probes[probe];
                ctx.monitor(&self.subjects[t]).unwrap();
                if self.model[t].alive {
                    self.monitoring.insert((probe, t));
                    // The monitor is installed once a message behind it arrived.
                    let (payload, token) = self.sync_payload(&self.subjects[t].clone());
                    self.c.probes[probe]
                        .send(&self.subjects[t], "sync", payload)
                        .unwrap();
                    self.wait_ack(token).await?;
                } else {
                    self.expected_exits
                        .entry((probe, t))
                        .or_default()
                        .push(Some(reason::NOPROC.into()));
                }
            }
            Op::Link { a, b } => {
                let (Some(a), Some(b)) = (self.pick(a), self.pick(b)) else {
                    return Ok(());
                };
                if a == b || !self.model[a].alive || !self.model[b].alive {
                    return Ok(());
                }
                self.command(
                    a,
                    "link",
                    wsrelay_process::Map::new()
                        .with("to", self.subjects[b].as_str())
                        .into(),
                );
                self.model[a].links.insert(b);
                self.model[b].links.insert(a);
                self.barrier(a, b).await?;
            }
            Op::Send { from, to } => {
                let (Some(from), Some(to)) = (self.pick(from), self.pick(to)) else {
                    return Ok(());
                };
                if !self.model[from].alive {
                    return Ok(());
                }
                self.seq += 1;
                let payload = wsrelay_process::Map::new()
                    .with("to", self.subjects[to].as_str())
                    .with("seq", self.seq);
                self.command(from, "send", payload.into());
                if self.model[to].alive {
                    self.expected_seen.push(Seen::Data {
                        at: to,
                        from,
                        seq: self.seq,
                    });
                }
                self.barrier(from, to).await?;
            }
            Op::Exit { who, error } => {
                let Some(who) = self.pick(who) else {
                    return Ok(());
                };
                if !self.model[who].alive {
                    return Ok(());
                }
                self.command(who, "exit", Value::Bool(error));
                self.die(who, error.then(|| "chosen".to_owned()));
            }
            Op::Terminate { who } => {
                let Some(who) = self.pick(who) else {
                    return Ok(());
                };
                if !self.model[who].alive {
                    return Ok(());
                }
                self.c.nodes[self.home[who]]
                    .node()
                    .terminate(&self.subjects[who])
                    .unwrap();
                self.die(who, Some(reason::TERMINATED.to_owned()));
            }
        }
        self.settle().await
    }

    fn die(&mut self, who: usize, error: Option<String>) {
        let mut queue = vec![(who, error)];
        while let Some((p, error)) = queue.pop() {
            if !self.model[p].alive {
                continue;
            }
            self.model[p].alive = false;
            for probe in 0..PROBES {
                if self.monitoring.remove(&(probe, p)) {
                    self.expected_exits
                        .entry((probe, p))
                        .or_default()
                        .push(error.clone());
                }
            }
            let links = std::mem::take(&mut self.model[p].links);
            for other in links {
                self.model[other].links.remove(&p);
                if error.is_some() && self.model[other].alive {
                    if self.model[other].trap {
                        self.expected_seen
                            .push(Seen::LinkDown { at: other, from: p });
                    } else {
                        queue.push((other, Some(reason::LINKED_FAILED.to_owned())));
                    }
                }
            }
        }
    }

    async fn finish(mut self) -> Result<(), TestCaseError> {
        for who in 0..self.subjects.len() {
            if self.model[who].alive {
                self.command(who, "exit", Value::Bool(false));
                self.die(who, None);
                self.settle().await?;
            }
        }
        // Nothing late: no second EXIT, no extra message.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.drain_exits()?;
        prop_assert_eq!(&self.seen_exits, &self.expected_exits);
        let by_pair = |v: &Vec<Seen>| {
            let mut m: BTreeMap<(usize, usize, bool), Vec<u64>> = BTreeMap::new();
            for s in v {
                match *s {
                    Seen::Data { at, from, seq } => {
                        m.entry((at, from, true)).or_default().push(seq)
                    }
                    Seen::LinkDown { at, from } => m.entry((at, from, false)).or_default().push(0),
                }
            }
            m
        };
        let actual = self.log.lock().unwrap().clone();
        prop_assert_eq!(by_pair(&actual), by_pair(&self.expected_seen));
        // Nothing left behind on any node: only the probes (and the collector on node 0),
        // without relations.
        let c = self.c;
        let clean = eventually(DEADLINE, || {
            (0..NODES).all(|n| {
                let node = c.nodes[n].node();
                let own = PROBES / NODES + usize::from(n == 0);
                node.process_count() == own && node.relation_count() == 0 && node.name_count() == 0
            })
        })
        .await;
        let counts: Vec<_> = c
            .nodes
            .iter()
            .map(|n| (n.node().process_count(), n.node().relation_count()))
            .collect();
        prop_assert!(
            clean,
            "left behind (processes, relations) per node: {:?}",
            counts
        );
        while c.collector.try_recv().is_some() {}
        Ok(())
    }
}

#[test]
fn every_exit_once_links_exact_messages_ordered_over_three_nodes() {
    let Some(_nats) = nats() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(Cluster3::start());
    let cases: u32 = std::env::var("WSR_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        rt.block_on(async {
            let mut world = World::new(&cluster);
            for op in ops {
                world.apply(op).await?;
            }
            world.finish().await
        })
    });
    for n in &cluster.nodes {
        n.shutdown();
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}
