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

use std::time::{Duration, Instant};

use crate::support::*;
use proptest::prelude::*;
use wsrelay_cluster::Cluster;
use wsrelay_process::{reason, Context, Event, Message, Pid, SpawnOptions, Value};

#[path = "../../process/tests/support/exactly_once_model.rs"]
mod model;
use model::{by_pair, op, subject, Exits, Index, Log, Model, MonitorOutcome, Op};

const NODES: usize = 3;
const PROBES: usize = 3; // probe i lives on node i
const DEADLINE: Duration = Duration::from_secs(20);

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
    model: Model,
    log: Log,
    index: Index,
    seen_exits: Exits,
    token: i64,
}

impl<'c> World<'c> {
    fn new(c: &'c Cluster3) -> World<'c> {
        World {
            c,
            subjects: Vec::new(),
            home: Vec::new(),
            model: Model::default(),
            log: Log::default(),
            index: Index::default(),
            seen_exits: Exits::new(),
            token: 0,
        }
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
        let target = if self.model.alive(to) { to } else { from };
        if !self.model.alive(from) {
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
        let exits = self.seen_exits == self.model.expected_exits;
        let mut log = self.log.lock().unwrap().clone();
        let mut want = self.model.expected_seen.clone();
        log.sort();
        want.sort();
        let alive = (0..self.subjects.len()).all(|i| {
            self.c.nodes[self.home[i]]
                .node()
                .is_alive(&self.subjects[i])
                == self.model.alive(i)
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
                    self.seen_exits, self.model.expected_exits, log, self.model.expected_seen
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Spawn { trap } => {
                let me = self.model.spawn(trap);
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
            }
            Op::Monitor { probe, target } => {
                let Some(t) = self.model.pick(target) else {
                    return Ok(());
                };
                let outcome = self.model.monitor(probe, t);
                if let MonitorOutcome::Already = outcome {
                    return Ok(());
                }
                let ctx = &self.c.probes[probe];
                ctx.monitor(&self.subjects[t]).unwrap();
                if let MonitorOutcome::Live = outcome {
                    // The monitor is installed once a message behind it arrived.
                    let (payload, token) = self.sync_payload(&self.subjects[t].clone());
                    self.c.probes[probe]
                        .send(&self.subjects[t], "sync", payload)
                        .unwrap();
                    self.wait_ack(token).await?;
                }
            }
            Op::Link { a, b } => {
                let (Some(a), Some(b)) = (self.model.pick(a), self.model.pick(b)) else {
                    return Ok(());
                };
                if a == b || !self.model.alive(a) || !self.model.alive(b) {
                    return Ok(());
                }
                self.model.link(a, b);
                let to = wsrelay_process::Map::new().with("to", self.subjects[b].as_str());
                self.command(a, "link", to.into());
                self.barrier(a, b).await?;
            }
            Op::Send { from, to } => {
                let (Some(from), Some(to)) = (self.model.pick(from), self.model.pick(to)) else {
                    return Ok(());
                };
                let Some(seq) = self.model.send(from, to) else {
                    return Ok(());
                };
                let payload = wsrelay_process::Map::new()
                    .with("to", self.subjects[to].as_str())
                    .with("seq", seq);
                self.command(from, "send", payload.into());
                self.barrier(from, to).await?;
            }
            Op::Exit { who, error } => {
                let Some(who) = self.model.pick(who) else {
                    return Ok(());
                };
                if !self.model.alive(who) {
                    return Ok(());
                }
                self.model.die(who, error.then(|| "chosen".to_owned()));
                self.command(who, "exit", Value::Bool(error));
            }
            Op::Terminate { who } => {
                let Some(who) = self.model.pick(who) else {
                    return Ok(());
                };
                if !self.model.alive(who) {
                    return Ok(());
                }
                self.model.die(who, Some(reason::TERMINATED.to_owned()));
                self.c.nodes[self.home[who]]
                    .node()
                    .terminate(&self.subjects[who])
                    .unwrap();
            }
        }
        self.settle().await
    }

    async fn finish(mut self) -> Result<(), TestCaseError> {
        for who in 0..self.model.len() {
            if self.model.alive(who) {
                self.model.die(who, None);
                self.command(who, "exit", Value::Bool(false));
                self.settle().await?;
            }
        }
        // Nothing late: no second EXIT, no extra message.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.drain_exits()?;
        prop_assert_eq!(&self.seen_exits, &self.model.expected_exits);
        let actual = self.log.lock().unwrap().clone();
        prop_assert_eq!(by_pair(&actual), by_pair(&self.model.expected_seen));
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
    let rt = rt();
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
    let result = runner.run(&proptest::collection::vec(op(PROBES), 1..40), |ops| {
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
