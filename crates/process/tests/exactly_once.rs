//! Property test: random sequences of spawn / monitor / link / send / exit / terminate over
//! many processes, checked against a sequential model of SPEC §2.
//!
//! Operations run one at a time on a current-thread runtime that is allowed to settle after
//! each one, so the model can predict every outcome exactly: each monitor sees exactly one
//! EXIT with the right result, links propagate exactly the error exits, no message is lost or
//! reordered per sender/receiver pair, and the node holds nothing afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use wsrelay_process::{
    reason, Context, Event, ExitResult, HostConfig, Message, Node, Pid, Received, SpawnOptions,
    Value,
};

const HOST: &str = "app:processes";
const PROBES: usize = 2;

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

/// What subjects observed, in order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Data { at: usize, from: usize, seq: u64 },
    LinkDown { at: usize, from: usize },
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The model's view of one subject.
#[derive(Debug, Default)]
struct Model {
    alive: bool,
    trap: bool,
    links: BTreeSet<usize>,
    exit: Option<Option<String>>, // Some(error) once dead
}

struct World {
    node: Node,
    probes: Vec<Context>,
    subjects: Vec<Pid>,
    index: BTreeMap<Pid, usize>,
    model: Vec<Model>,
    log: Log,
    expected_seen: Vec<Seen>,
    /// (probe, target) -> expected error text of the EXIT (None = normal)
    expected_exits: BTreeMap<(usize, usize), Vec<Option<String>>>,
    monitoring: BTreeSet<(usize, usize)>,
    seq: u64,
}

async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

async fn subject(
    ctx: Context,
    me: usize,
    trap: bool,
    log: Log,
    index: Arc<Mutex<BTreeMap<Pid, usize>>>,
) -> ExitResult {
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
                let target = || msg.payload().as_str().and_then(|s| s.parse::<Pid>().ok());
                match msg.topic() {
                    "link" => {
                        let _ = ctx.link(&target().unwrap());
                    }
                    "send" => {
                        let to: Pid = msg
                            .payload()
                            .get("to")
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let seq = msg.payload().get("seq").unwrap().clone();
                        let _ = ctx.send(&to, "data", seq);
                    }
                    "data" => {
                        let seq = msg.payload().as_i64().unwrap() as u64;
                        let from = idx(msg.from().unwrap());
                        log.lock().unwrap().push(Seen::Data { at: me, from, seq });
                    }
                    "exit" if msg.payload() == &Value::Bool(true) => {
                        return ExitResult::error("chosen")
                    }
                    "exit" => return ExitResult::normal("bye"),
                    _ => {}
                }
            }
        }
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
            index: BTreeMap::new(),
            model: Vec::new(),
            log: Log::default(),
            expected_seen: Vec::new(),
            expected_exits: BTreeMap::new(),
            monitoring: BTreeSet::new(),
            seq: 0,
        }
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.subjects.is_empty()).then(|| i % self.subjects.len())
    }

    fn command(&self, who: usize, topic: &str, payload: Value) {
        let _ = self
            .node
            .send(&self.subjects[who], Message::new(None, topic, payload));
    }

    async fn apply(&mut self, op: Op, shared_index: &Arc<Mutex<BTreeMap<Pid, usize>>>) {
        match op {
            Op::Spawn { trap } => {
                let me = self.subjects.len();
                let (log, index) = (self.log.clone(), shared_index.clone());
                let pid = self
                    .node
                    .spawn(HOST, SpawnOptions::new(), move |ctx| {
                        subject(ctx, me, trap, log, index)
                    })
                    .unwrap();
                shared_index.lock().unwrap().insert(pid.clone(), me);
                self.index.insert(pid.clone(), me);
                self.subjects.push(pid);
                self.model.push(Model {
                    alive: true,
                    trap,
                    ..Model::default()
                });
            }
            Op::Monitor { probe, target } => {
                let Some(t) = self.pick(target) else { return };
                if self.monitoring.contains(&(probe, t)) {
                    return; // monitoring twice is one monitor
                }
                self.probes[probe].monitor(&self.subjects[t]).unwrap();
                if self.model[t].alive {
                    self.monitoring.insert((probe, t));
                } else {
                    self.expected_exits
                        .entry((probe, t))
                        .or_default()
                        .push(Some(reason::NOPROC.into()));
                }
            }
            Op::Link { a, b } => {
                let (Some(a), Some(b)) = (self.pick(a), self.pick(b)) else {
                    return;
                };
                if a == b || !self.model[a].alive {
                    return;
                }
                self.command(a, "link", self.subjects[b].as_str().into());
                if self.model[b].alive {
                    self.model[a].links.insert(b);
                    self.model[b].links.insert(a);
                }
            }
            Op::Send { from, to } => {
                let (Some(from), Some(to)) = (self.pick(from), self.pick(to)) else {
                    return;
                };
                if !self.model[from].alive {
                    return;
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
            }
            Op::Exit { who, error } => {
                let Some(who) = self.pick(who) else { return };
                if !self.model[who].alive {
                    return;
                }
                self.command(who, "exit", Value::Bool(error));
                self.die(who, error.then(|| "chosen".to_owned()));
            }
            Op::Terminate { who } => {
                let Some(who) = self.pick(who) else { return };
                if !self.model[who].alive {
                    return;
                }
                self.node.terminate(&self.subjects[who]).unwrap();
                self.die(who, Some(reason::TERMINATED.to_owned()));
            }
        }
        settle().await;
    }

    /// The model of an exit and its propagation over links.
    fn die(&mut self, who: usize, error: Option<String>) {
        let mut queue = vec![(who, error)];
        while let Some((p, error)) = queue.pop() {
            if !self.model[p].alive {
                continue;
            }
            self.model[p].alive = false;
            self.model[p].exit = Some(error.clone());
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
                settle().await;
            }
        }
        // Every probe saw exactly the predicted EXITs, one per monitor.
        for (probe, ctx) in self.probes.iter().enumerate() {
            let mut seen: BTreeMap<(usize, usize), Vec<Option<String>>> = BTreeMap::new();
            while let Some(event) = ctx.try_next_event() {
                let Event::Exit { from, result } = event else {
                    return Err(TestCaseError::fail(format!("probe got {event:?}")));
                };
                let target = self.index[&from];
                seen.entry((probe, target))
                    .or_default()
                    .push(result.error_text().map(str::to_owned));
            }
            let expected: BTreeMap<_, _> = self
                .expected_exits
                .iter()
                .filter(|((p, _), _)| *p == probe)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            prop_assert_eq!(seen, expected);
        }
        // Messages in order per pair, none lost; link downs exactly where the model says.
        let mut actual = self.log.lock().unwrap().clone();
        let mut expected = self.expected_seen.clone();
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
    fn every_exit_once_links_exact_messages_ordered(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut world = World::new();
            let index = Arc::new(Mutex::new(BTreeMap::new()));
            for op in ops {
                world.apply(op, &index).await;
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
