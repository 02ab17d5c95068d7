//! The sequential model behind both exactly-once property tests: the local one
//! (`crates/process/tests/exactly_once.rs`, one node) and the cluster one
//! (`crates/cluster/tests/exactly_once_cluster.rs`, three nodes over NATS, which includes this
//! file with `#[path]`).
//!
//! A test draws random [`Op`]s, applies each to the real runtime and to the [`Model`], and at
//! the end compares what the runtime's processes observed with what the model predicts
//! (docs/runtime-semantics.md): every monitor sees exactly one EXIT with the right result,
//! links propagate exactly the error exits (a link-down for trapping processes, a
//! `linked_failed` exit for the others), and messages arrive once, in order per
//! sender/receiver pair. The subjects themselves run [`subject`], which obeys commands sent to
//! it by the test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use wsrelay_process::{reason, Context, Event, ExitResult, Pid, Received, Value};

/// One step of a random sequence. Indices are taken modulo the number of subjects spawned so
/// far, so every drawn sequence is meaningful.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Spawn { trap: bool },
    Monitor { probe: usize, target: usize },
    Link { a: usize, b: usize },
    Send { from: usize, to: usize },
    Exit { who: usize, error: bool },
    Terminate { who: usize },
}

/// The strategy for one [`Op`], with `probes` monitoring processes.
pub(crate) fn op(probes: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|trap| Op::Spawn { trap }),
        2 => (0..probes, 0..64usize).prop_map(|(probe, target)| Op::Monitor { probe, target }),
        2 => (0..64usize, 0..64usize).prop_map(|(a, b)| Op::Link { a, b }),
        3 => (0..64usize, 0..64usize).prop_map(|(from, to)| Op::Send { from, to }),
        1 => (0..64usize, any::<bool>()).prop_map(|(who, error)| Op::Exit { who, error }),
        1 => (0..64usize).prop_map(|who| Op::Terminate { who }),
    ]
}

/// What a subject observed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seen {
    Data { at: usize, from: usize, seq: u64 },
    LinkDown { at: usize, from: usize },
}

/// Observations of all subjects, in the order they happened.
pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// PID → subject index, shared with the subjects so they can log who sent what.
pub(crate) type Index = Arc<Mutex<BTreeMap<Pid, usize>>>;

/// EXITs per (probe, subject): the error text of each (`None`: a normal exit).
pub(crate) type Exits = BTreeMap<(usize, usize), Vec<Option<String>>>;

/// The observations grouped per (receiver, sender, kind), in arrival order: equal groupings
/// mean nothing was lost, duplicated or reordered per pair.
pub(crate) fn by_pair(seen: &[Seen]) -> BTreeMap<(usize, usize, bool), Vec<u64>> {
    let mut pairs: BTreeMap<(usize, usize, bool), Vec<u64>> = BTreeMap::new();
    for s in seen {
        match *s {
            Seen::Data { at, from, seq } => pairs.entry((at, from, true)).or_default().push(seq),
            Seen::LinkDown { at, from } => pairs.entry((at, from, false)).or_default().push(0),
        }
    }
    pairs
}

/// What [`Model::monitor`] predicts for a new monitor.
pub(crate) enum MonitorOutcome {
    /// The probe already monitors the subject: monitoring twice is one monitor.
    Already,
    /// The subject is alive: its exit will be reported once.
    Live,
    /// The subject is dead: an EXIT `noproc` at once.
    Dead,
}

#[derive(Debug, Default)]
struct Subject {
    alive: bool,
    trap: bool,
    links: BTreeSet<usize>,
}

/// The sequential model: which subjects live, who links to whom, and what must be observed.
#[derive(Debug, Default)]
pub(crate) struct Model {
    subjects: Vec<Subject>,
    monitoring: BTreeSet<(usize, usize)>,
    seq: u64,
    /// The observations the subjects must make.
    pub(crate) expected_seen: Vec<Seen>,
    /// The EXITs the probes must receive.
    pub(crate) expected_exits: Exits,
}

impl Model {
    /// The subject an op's index names, if any subject exists.
    pub(crate) fn pick(&self, i: usize) -> Option<usize> {
        (!self.subjects.is_empty()).then(|| i % self.subjects.len())
    }

    /// The number of subjects spawned so far.
    pub(crate) fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether subject `i` is alive in the model.
    pub(crate) fn alive(&self, i: usize) -> bool {
        self.subjects[i].alive
    }

    /// Records a new live subject; returns its index.
    pub(crate) fn spawn(&mut self, trap: bool) -> usize {
        self.subjects.push(Subject {
            alive: true,
            trap,
            ..Subject::default()
        });
        self.subjects.len() - 1
    }

    /// Records `probe` monitoring subject `t`.
    pub(crate) fn monitor(&mut self, probe: usize, t: usize) -> MonitorOutcome {
        if self.monitoring.contains(&(probe, t)) {
            MonitorOutcome::Already
        } else if self.subjects[t].alive {
            self.monitoring.insert((probe, t));
            MonitorOutcome::Live
        } else {
            self.expected_exits
                .entry((probe, t))
                .or_default()
                .push(Some(reason::NOPROC.into()));
            MonitorOutcome::Dead
        }
    }

    /// Records a link between `a` and `b` (a link to a dead subject is no link).
    pub(crate) fn link(&mut self, a: usize, b: usize) {
        if self.subjects[a].alive && self.subjects[b].alive {
            self.subjects[a].links.insert(b);
            self.subjects[b].links.insert(a);
        }
    }

    /// Records a message from `from` to `to`; returns its sequence number (`None` if `from` is
    /// dead and cannot send). A message to a dead subject is not observed.
    pub(crate) fn send(&mut self, from: usize, to: usize) -> Option<u64> {
        if !self.subjects[from].alive {
            return None;
        }
        self.seq += 1;
        if self.subjects[to].alive {
            self.expected_seen.push(Seen::Data {
                at: to,
                from,
                seq: self.seq,
            });
        }
        Some(self.seq)
    }

    /// Records the exit of `who` (`error`: its error text, `None` for a normal exit) and its
    /// propagation over links.
    pub(crate) fn die(&mut self, who: usize, error: Option<String>) {
        let mut queue = vec![(who, error)];
        while let Some((p, error)) = queue.pop() {
            if !self.subjects[p].alive {
                continue;
            }
            self.subjects[p].alive = false;
            let monitors: Vec<_> = self
                .monitoring
                .iter()
                .filter(|m| m.1 == p)
                .copied()
                .collect();
            for m in monitors {
                self.monitoring.remove(&m);
                self.expected_exits
                    .entry(m)
                    .or_default()
                    .push(error.clone());
            }
            let links = std::mem::take(&mut self.subjects[p].links);
            for other in links {
                self.subjects[other].links.remove(&p);
                if error.is_some() && self.subjects[other].alive {
                    if self.subjects[other].trap {
                        self.expected_seen
                            .push(Seen::LinkDown { at: other, from: p });
                    } else {
                        queue.push((other, Some(reason::LINKED_FAILED.to_owned())));
                    }
                }
            }
        }
    }
}

fn pid_of(v: &Value, key: &str) -> Pid {
    v.get(key).unwrap().as_str().unwrap().parse().unwrap()
}

/// A subject process: logs what it receives and obeys the test's commands — `link {to}`,
/// `send {to, seq}`, `exit <error?>`, and for barriers `relay {to, reply, token}` (sends
/// `sync` to `to`, behind everything it sent there before) and `sync` (acks `token` to
/// `reply`).
pub(crate) async fn subject(
    ctx: Context,
    me: usize,
    trap: bool,
    log: Log,
    index: Index,
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
                let p = msg.payload();
                match msg.topic() {
                    "link" => {
                        let _ = ctx.link(&pid_of(p, "to"));
                    }
                    "send" => {
                        let _ = ctx.send(&pid_of(p, "to"), "data", p.get("seq").unwrap().clone());
                    }
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
