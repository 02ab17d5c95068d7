//! Property test: random sequences of spawn / monitor / link / send / exit / terminate over
//! many processes, checked against a sequential model (`support/exactly_once_model.rs`).
//!
//! Operations run one at a time on a current-thread runtime that is allowed to settle after
//! each one, so the model can predict every outcome exactly: each monitor sees exactly one
//! EXIT with the right result, links propagate exactly the error exits, no message is lost or
//! reordered per sender/receiver pair, and the node holds nothing afterwards.

use proptest::prelude::*;
use wsrelay_process::{
    reason, Context, Event, HostConfig, Message, Node, Pid, SpawnOptions, Value,
};

#[path = "support/exactly_once_model.rs"]
mod model;
use model::{by_pair, op, subject, Exits, Index, Log, Model, MonitorOutcome, Op};

const HOST: &str = "app:processes";
const PROBES: usize = 2;

struct World {
    node: Node,
    probes: Vec<Context>,
    subjects: Vec<Pid>,
    index: Index,
    model: Model,
    log: Log,
}

/// Lets every task that an operation woke run to completion (one thread, no timers involved).
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

impl World {
    fn new() -> World {
        let node = Node::new();
        node.add_host(HOST, HostConfig::default());
        let probes = (0..PROBES)
            .map(|_| {
                let (ctx, guard) = node.attach(HOST, SpawnOptions::new()).unwrap().detach();
                std::mem::forget(guard); // probes end with the test
                ctx
            })
            .collect();
        World {
            node,
            probes,
            subjects: Vec::new(),
            index: Index::default(),
            model: Model::default(),
            log: Log::default(),
        }
    }

    fn command(&self, who: usize, topic: &str, payload: Value) {
        let _ = self
            .node
            .send(&self.subjects[who], Message::new(None, topic, payload));
    }

    async fn apply(&mut self, op: Op) {
        let m = &mut self.model;
        match op {
            Op::Spawn { trap } => {
                let me = m.spawn(trap);
                let (log, index) = (self.log.clone(), self.index.clone());
                let pid = self
                    .node
                    .spawn(HOST, SpawnOptions::new(), move |ctx| {
                        subject(ctx, me, trap, log, index)
                    })
                    .unwrap();
                self.index.lock().unwrap().insert(pid.clone(), me);
                self.subjects.push(pid);
            }
            Op::Monitor { probe, target } => {
                let Some(t) = m.pick(target) else { return };
                if let MonitorOutcome::Already = m.monitor(probe, t) {
                    return;
                }
                self.probes[probe].monitor(&self.subjects[t]).unwrap();
            }
            Op::Link { a, b } => {
                let (Some(a), Some(b)) = (m.pick(a), m.pick(b)) else {
                    return;
                };
                if a == b || !m.alive(a) {
                    return;
                }
                // A local link to a dead process fails at once: the model records no link.
                m.link(a, b);
                let to = wsrelay_process::Map::new().with("to", self.subjects[b].as_str());
                self.command(a, "link", to.into());
            }
            Op::Send { from, to } => {
                let (Some(from), Some(to)) = (m.pick(from), m.pick(to)) else {
                    return;
                };
                let Some(seq) = m.send(from, to) else { return };
                let payload = wsrelay_process::Map::new()
                    .with("to", self.subjects[to].as_str())
                    .with("seq", seq);
                self.command(from, "send", payload.into());
            }
            Op::Exit { who, error } => {
                let Some(who) = m.pick(who) else { return };
                if !m.alive(who) {
                    return;
                }
                m.die(who, error.then(|| "chosen".to_owned()));
                self.command(who, "exit", Value::Bool(error));
            }
            Op::Terminate { who } => {
                let Some(who) = m.pick(who) else { return };
                if !m.alive(who) {
                    return;
                }
                m.die(who, Some(reason::TERMINATED.to_owned()));
                self.node.terminate(&self.subjects[who]).unwrap();
            }
        }
        settle().await;
    }

    async fn finish(mut self) -> Result<(), TestCaseError> {
        for who in 0..self.model.len() {
            if self.model.alive(who) {
                self.model.die(who, None);
                self.command(who, "exit", Value::Bool(false));
                settle().await;
            }
        }
        // Every probe saw exactly the predicted EXITs, one per monitor.
        let index = self.index.lock().unwrap().clone();
        let mut seen = Exits::new();
        for (probe, ctx) in self.probes.iter().enumerate() {
            while let Some(event) = ctx.try_next_event() {
                let Event::Exit { from, result } = event else {
                    return Err(TestCaseError::fail(format!("probe got {event:?}")));
                };
                seen.entry((probe, index[&from]))
                    .or_default()
                    .push(result.error_text().map(str::to_owned));
            }
        }
        prop_assert_eq!(seen, self.model.expected_exits.clone());
        // Messages in order per pair, none lost; link downs exactly where the model says.
        let mut actual = self.log.lock().unwrap().clone();
        let mut expected = self.model.expected_seen.clone();
        prop_assert_eq!(by_pair(&actual), by_pair(&expected));
        actual.sort();
        expected.sort();
        prop_assert_eq!(actual, expected);
        // Nothing left behind.
        for ctx in self.probes.drain(..) {
            self.node.terminate(ctx.pid()).ok();
            // Probes are detached without a driver: end them as a driver would.
            let _ = ctx.stop_requested();
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_exit_once_links_exact_messages_ordered(ops in proptest::collection::vec(op(PROBES), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut world = World::new();
            for op in ops {
                world.apply(op).await;
            }
            let node = world.node.clone();
            let probes: Vec<Pid> = world.probes.iter().map(|c| c.pid().clone()).collect();
            world.finish().await?;
            settle().await;
            // Only the probes remain; their relations to dead subjects are gone.
            prop_assert_eq!(node.process_count(), probes.len());
            prop_assert_eq!(node.relation_count(), 0);
            prop_assert_eq!(node.name_count(), 0);
            Ok(())
        })?;
    }
}
