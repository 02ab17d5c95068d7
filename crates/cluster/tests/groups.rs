//! Process groups across in-process nodes over NATS: membership announced to the other nodes
//! (found through their hellos), one envelope per node and group send with the fan-out on
//! arrival, per-sender order, a restarted node's snapshot replacing its old members, and a
//! lost node's members leaving at once with exactly one notification.

use std::time::Duration;

use crate::support::*;
use wsrelay_cluster::{Cluster, ClusterOptions};
use wsrelay_process::{Context, GroupLimits, GroupScope, Message, Pid, Value, GROUP_DIFF_TOPIC};

pub(crate) const SCOPE: &str = "app:rooms";
const WAIT: Duration = Duration::from_secs(15);

/// A node named `name` whose groups span the cluster, and its scope [`SCOPE`].
pub(crate) async fn group_node(name: &str) -> (Cluster, GroupScope) {
    group_node_with(options(name)).await
}

/// A node started with `options` whose groups span the cluster, and its scope [`SCOPE`].
async fn group_node_with(options: ClusterOptions) -> (Cluster, GroupScope) {
    let options = options
        .with_groups(true)
        .with_group_scope(SCOPE, GroupLimits::default());
    let c = start_with(options).await;
    let scope = c.node().group_scope(SCOPE).unwrap();
    (c, scope)
}

/// The value of `c`'s metric `series` (a counter with its labels) in its `/metrics` text.
fn counter(c: &Cluster, series: &str) -> u64 {
    let text = metrics_text(c.stats());
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

fn envelopes_out(c: &Cluster) -> u64 {
    counter(c, "wsrelay_remote_envelopes_total{direction=\"out\"}")
}

async fn recv(ctx: &Context) -> Message {
    tokio::time::timeout(WAIT, ctx.recv())
        .await
        .expect("a message in time")
}

/// Leaves of one `pg.diff`: (reason, sorted PID strings of every group).
fn leaves(msg: &Message) -> (String, Vec<String>) {
    assert_eq!(msg.topic(), GROUP_DIFF_TOPIC);
    let p = msg.payload().clone().into_plain();
    let reason = p.get("reason").unwrap().as_str().unwrap().to_owned();
    let mut pids = Vec::new();
    for (_, list) in p.get("leaves").unwrap().as_map().unwrap().iter() {
        let Value::Array(list) = list else { panic!() };
        pids.extend(list.iter().map(|v| v.as_str().unwrap().to_owned()));
    }
    pids.sort();
    (reason, pids)
}

fn texts(pids: &[Pid]) -> Vec<String> {
    let mut t: Vec<String> = pids.iter().map(Pid::to_string).collect();
    t.sort();
    t
}

/// A node that starts after another one's members joined learns them from that node's
/// snapshot, which answers its announcement: its scope exists before it announces itself
/// (`ClusterOptions::group_scopes`). A scope added after the start could miss that
/// snapshot, and the node would never send to those members (found by the two-node
/// broadcast test of `wsrelay run` nodes: one run in about fifteen).
#[test]
fn a_node_started_later_learns_the_members_that_joined_before_it() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let (a, ga) = group_node(&unique("ea")).await;
        let on_a: Vec<Context> = (0..3).map(|_| probe(a.node())).collect();
        for ctx in &on_a {
            ga.join("room", ctx.pid()).unwrap();
        }
        for round in 0..5 {
            let (b, gb) = group_node(&unique(&format!("eb{round}"))).await;
            assert!(
                eventually(WAIT, || gb.members("room").len() == 3).await,
                "round {round}: b sees {:?}",
                gb.members("room")
            );
            // And a send from b reaches a's members.
            let sender = probe(b.node());
            gb.broadcast(
                "room",
                Some(sender.pid().clone()),
                "hello",
                Value::from(round as i64),
                Vec::new(),
            );
            for ctx in &on_a {
                let msg = recv(ctx).await;
                assert_eq!(msg.topic(), "hello");
                assert_eq!(
                    msg.payload().clone().into_plain(),
                    Value::from(round as i64)
                );
            }
            b.shutdown();
        }
        a.shutdown();
    });
}

#[test]
fn groups_span_nodes_and_a_lost_node_leaves_once() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let (a, ga) = group_node(&unique("ga")).await;
        let b_name = unique("gb");
        let (b, gb) = group_node(&b_name).await;
        let on_a: Vec<Context> = (0..3).map(|_| probe(a.node())).collect();
        let on_b: Vec<Context> = (0..2).map(|_| probe(b.node())).collect();
        for ctx in &on_a {
            ga.join("room", ctx.pid()).unwrap();
        }
        for ctx in &on_b {
            gb.join("room", ctx.pid()).unwrap();
        }
        assert!(
            eventually(WAIT, || ga.members("room").len() == 5
                && gb.members("room").len() == 5)
            .await,
            "a sees {:?}, b sees {:?}",
            ga.members("room"),
            gb.members("room")
        );
        assert_eq!(gb.local_members("room").len(), 2);

        // Sends from a: in order at b's members, one envelope per send for b.
        let sender = probe(a.node());
        let before = envelopes_out(&a);
        let n = 300;
        for i in 0..n {
            let local = ga.broadcast(
                "room",
                Some(sender.pid().clone()),
                "n",
                Value::Int(i),
                vec![],
            );
            assert_eq!(local, 3);
        }
        for ctx in on_b.iter().chain(&on_a) {
            for i in 0..n {
                let msg = recv(ctx).await;
                assert_eq!(msg.payload(), &Value::Int(i), "order per sender");
                assert_eq!(msg.from(), Some(sender.pid()));
            }
        }
        let sent = envelopes_out(&a) - before;
        assert!(
            (n as u64..n as u64 + 20).contains(&sent),
            "{sent} envelopes for {n} sends to a node with 2 members"
        );
        // broadcast_local stays local.
        gb.broadcast_local("room", Message::new(None, "local", Value::Null));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(on_a.iter().all(|c| c.try_recv().is_none()));

        // A leave on b reaches a.
        gb.leave("room", on_b[1].pid()).unwrap();
        assert!(eventually(WAIT, || ga.members("room").len() == 4).await);

        // b is lost (a crash): its member leaves a's group, in one notification.
        let watcher = probe(a.node());
        ga.subscribe(watcher.pid()).unwrap();
        b.shutdown();
        let diff = recv(&watcher).await;
        assert_eq!(
            leaves(&diff),
            ("nodedown".to_owned(), texts(&[on_b[0].pid().clone()]))
        );
        assert_eq!(
            texts(&ga.members("room")),
            texts(&on_a.iter().map(|c| c.pid().clone()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(watcher.try_recv().is_none(), "exactly one notification");

        // b restarts under its name with other members: a learns them from its snapshot.
        let (b2, gb2) = group_node(&b_name).await;
        let fresh = probe(b2.node());
        gb2.join("room", fresh.pid()).unwrap();
        assert!(eventually(WAIT, || ga.members("room").len() == 4).await);
        assert!(ga.members("room").contains(fresh.pid()));
        assert!(
            eventually(WAIT, || gb2.members("room").len() == 4).await,
            "the new run learns a's members: {:?}",
            gb2.members("room")
        );
        ga.broadcast("room", None, "again", Value::Null, vec![]);
        assert_eq!(recv(&fresh).await.topic(), "again");
        a.shutdown();
        b2.shutdown();
    });
}

/// Membership changes made while every NATS server is down reach the other node once NATS is
/// back: announcements that were lost with a session are made good by the snapshot that
/// starts the next one.
#[test]
fn membership_survives_a_nats_outage_through_the_snapshot() {
    let Some(nats) = nats() else { return };
    rt().block_on(async {
        let (a, ga) = group_node(&unique("sa")).await;
        let (b, gb) = group_node(&unique("sb")).await;
        let m = probe(b.node());
        gb.join("room", m.pid()).unwrap();
        assert!(eventually(WAIT, || ga.members("room").len() == 1).await);
        nats.kill_all();
        // A change while NATS is away: its announcement cannot arrive.
        let m2 = probe(b.node());
        gb.join("room", m2.pid()).unwrap();
        gb.leave("room", m.pid()).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        nats.start_all();
        assert!(
            eventually(Duration::from_secs(30), || ga.members("room")
                == vec![m2.pid().clone()])
            .await,
            "a sees {:?}",
            ga.members("room")
        );
        a.shutdown();
        b.shutdown();
    });
}

/// Membership envelopes `c` sent, as its `/metrics` counts them.
fn group_sets_out(c: &Cluster) -> u64 {
    counter(c, "wsrelay_group_sets_total{direction=\"out\"}")
}

/// A connect storm: 2,000 joins on a (and 600 more changes) made while a's writer towards b
/// is held back reach b as far fewer membership envelopes than changes (they are coalesced
/// while they wait), and a join followed by a leave of the same process within a burst
/// ends absent on b.
#[test]
fn a_join_storm_crosses_coalesced_and_a_join_then_leave_ends_absent() {
    let Some(nats) = nats() else { return };
    rt().block_on(async {
        // a on server 1, b on server 2; b grants a credit for two frames in flight.
        let (a, ga) = group_node_with(options_on(&unique("ca"), 1)).await;
        let (b, gb) = group_node_with(options_on(&unique("cb"), 2).with_window(4 << 20, 2)).await;
        // The two nodes know each other (hello, snapshot) before the storm.
        let first = probe(a.node());
        ga.join("lobby", first.pid()).unwrap();
        assert!(eventually(WAIT, || gb.members("lobby").len() == 1).await);
        let sink = idle(b.node());

        // Hold a's writer: with b's server hung, b receives and acknowledges nothing, and
        // after two frames in flight the writer waits for credit. How often the writer
        // looks no longer decides how many envelopes the storm takes (it may otherwise keep
        // up with a few changes at a time, on another thread). Well under `dead_after` (3 s).
        let before = group_sets_out(&a);
        nats.pause_server(2);
        let me = probe(a.node());
        for i in 0..4 {
            me.send(&sink, "fill", Value::Int(i)).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = 2_000;
        let members: Vec<Context> = (0..n).map(|_| probe(a.node())).collect();
        for (i, ctx) in members.iter().enumerate() {
            ga.join("lobby", ctx.pid()).unwrap();
            // Every fifth also joins one of two other groups, and every tenth leaves the
            // lobby again.
            if i % 5 == 0 {
                ga.join(&format!("storm{}", i % 10), ctx.pid()).unwrap();
            }
            if i % 10 == 0 {
                ga.leave("lobby", ctx.pid()).unwrap();
            }
        }
        nats.resume_server(2);
        let mut want = texts(&ga.members("lobby"));
        assert_eq!(want.len(), 1 + n - n / 10);
        assert!(
            eventually(WAIT, || texts(&gb.members("lobby")) == want).await,
            "b sees {} lobby members of {}",
            gb.members("lobby").len(),
            want.len()
        );
        for room in ["storm0", "storm5"] {
            want = texts(&ga.members(room));
            assert_eq!(want.len(), n / 10);
            assert!(eventually(WAIT, || texts(&gb.members(room)) == want).await);
        }
        let sets = group_sets_out(&a) - before;
        let changes = (n + n / 5 + n / 10) as u64;
        println!("{changes} changes ({n} joins) crossed in {sets} group set envelopes");
        // Coalesced: one entry per member and group (2,400), at most 256 to an envelope, in
        // at most two takes of the writer (one may have begun before it was held). One
        // envelope per change, as before, is 2,600.
        let bound = 2 * (2_400u64.div_ceil(256) + 3);
        assert!(
            sets <= bound,
            "{sets} membership envelopes for {changes} changes"
        );

        // Join then leave, many times over, in one burst: absent on b in the end.
        let churn: Vec<Context> = (0..500).map(|_| probe(a.node())).collect();
        for ctx in &churn {
            ga.join("churn", ctx.pid()).unwrap();
            ga.join("churn", ctx.pid()).unwrap();
            ga.leave("churn", ctx.pid()).unwrap();
            ga.leave("churn", ctx.pid()).unwrap();
        }
        let last = probe(a.node());
        ga.join("churn", last.pid()).unwrap();
        let want = vec![last.pid().clone()];
        assert!(eventually(WAIT, || gb.members("churn") == want).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gb.members("churn"), want, "only the last member stays");
        a.shutdown();
        b.shutdown();
    });
}

/// A member's join reaches the other node before any group send it makes after joining,
/// even behind a backlog of other membership changes: a process on b that receives the send
/// finds the sender among the group's members at once.
#[test]
fn a_join_arrives_before_the_members_later_group_send() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let (a, ga) = group_node(&unique("oa")).await;
        let (b, gb) = group_node(&unique("ob")).await;
        // On b, a member of "ordered" that answers each message with whether its sender was
        // already a member of "ordered" on b when the message arrived.
        let checker = {
            let gb = gb.clone();
            b.node()
                .spawn(
                    HOST,
                    wsrelay_process::SpawnOptions::new(),
                    move |ctx| async move {
                        gb.join("ordered", ctx.pid()).unwrap();
                        loop {
                            let msg = ctx.recv().await;
                            let Some(from) = msg.from().cloned() else {
                                return;
                            };
                            let known = gb.members("ordered").contains(&from);
                            let _ = ctx.send(&from, "known", Value::Bool(known));
                        }
                    },
                )
                .unwrap()
        };
        assert!(eventually(WAIT, || ga.members("ordered").contains(&checker)).await);
        let mut bystanders = Vec::new();
        for round in 0..20 {
            // A backlog of membership changes ahead of the join.
            for _ in 0..300 {
                let ctx = probe(a.node());
                ga.join("crowd", ctx.pid()).unwrap();
                bystanders.push(ctx);
            }
            let sender = probe(a.node());
            ga.join("ordered", sender.pid()).unwrap();
            ga.broadcast(
                "ordered",
                Some(sender.pid().clone()),
                "hi",
                Value::Int(round),
                vec![],
            );
            // The sender, a member itself, gets its own send first.
            let mut reply = recv(&sender).await;
            while reply.topic() != "known" {
                reply = recv(&sender).await;
            }
            assert_eq!(
                reply.payload(),
                &Value::Bool(true),
                "round {round}: the send arrived before the sender's join"
            );
        }
        a.shutdown();
        b.shutdown();
    });
}
