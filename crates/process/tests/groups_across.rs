//! Process groups across nodes, from the runtime's side: two nodes in one test joined by an
//! in-memory transport (`support::Loopback`) that hands each group announcement and group
//! send straight to the other node's `Inbound` (what `wsrelay-cluster` does over NATS; its
//! tests cover the network, sessions and snapshots on reconnect).

use std::sync::Arc;
use std::time::Duration;

use wsrelay_process::{
    Context, ExitGuard, GroupLimits, GroupScope, HostConfig, Message, Node, Pid, SpawnOptions,
    Value, GROUP_DIFF_TOPIC,
};

use crate::support::{join, Loopback};

const HOST: &str = "app:processes";
const SCOPE: &str = "app:rooms";

struct Pair {
    a: Node,
    b: Node,
    ga: GroupScope,
    gb: GroupScope,
    ta: Arc<Loopback>,
}

fn pair(limits: GroupLimits) -> Pair {
    let (a, b) = (Node::named("a", 1), Node::named("b", 2));
    let ta = join(&a, &b);
    for node in [&a, &b] {
        node.add_host(HOST, HostConfig::default());
        node.add_group_scope(SCOPE, limits);
    }
    let (ga, gb) = (a.group_scope(SCOPE).unwrap(), b.group_scope(SCOPE).unwrap());
    Pair { a, b, ga, gb, ta }
}

fn probe(node: &Node) -> (Context, ExitGuard) {
    node.attach(HOST, SpawnOptions::new()).unwrap().detach()
}

fn sorted(pids: Vec<Pid>) -> Vec<String> {
    let mut texts: Vec<_> = pids.into_iter().map(|p| p.to_string()).collect();
    texts.sort();
    texts
}

async fn recv(ctx: &Context) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ctx.recv())
        .await
        .expect("a message")
}

/// The `pg.diff` payload's `joins` or `leaves`: group → sorted PID strings.
fn diff_part(msg: &Message, part: &str) -> Vec<(String, Vec<String>)> {
    assert_eq!(msg.topic(), GROUP_DIFF_TOPIC);
    let payload = msg.payload().clone().into_plain();
    let map = payload.get(part).and_then(Value::as_map).unwrap().clone();
    let mut out: Vec<(String, Vec<String>)> = map
        .iter()
        .map(|(g, pids)| {
            let Value::Array(pids) = pids else {
                panic!("{pids:?}")
            };
            let mut pids: Vec<String> = pids
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
            pids.sort();
            (g.clone(), pids)
        })
        .collect();
    out.sort();
    out
}

fn reason(msg: &Message) -> String {
    let payload = msg.payload().clone().into_plain();
    payload.get("reason").unwrap().as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_member_on_one_node_is_reached_from_the_other_with_one_send_per_node() {
    let p = pair(GroupLimits::default());
    let mut members: Vec<_> = (0..3).map(|_| probe(&p.a)).collect();
    let (local, _gl) = probe(&p.b);
    for (ctx, _) in &members {
        p.ga.join("room", ctx.pid()).unwrap();
    }
    p.ga.join("room", members[0].0.pid()).unwrap();
    p.gb.join("room", local.pid()).unwrap();

    let mut all: Vec<Pid> = members.iter().map(|(c, _)| c.pid().clone()).collect();
    all.push(members[0].0.pid().clone());
    all.push(local.pid().clone());
    assert_eq!(sorted(p.gb.members("room")), sorted(all.clone()));
    assert_eq!(sorted(p.ga.members("room")), sorted(all));
    assert_eq!(p.gb.local_members("room"), vec![local.pid().clone()]);
    assert_eq!(p.gb.groups(), ["room"]);
    assert_eq!(p.gb.groups_of(members[1].0.pid()), ["room"]);

    // From a: one send crosses to b, each distinct member gets one message.
    let (sender, _gs) = probe(&p.a);
    assert_eq!(
        p.ga.broadcast(
            "room",
            Some(sender.pid().clone()),
            "news",
            Value::from(1),
            vec![]
        ),
        3,
        "the local members"
    );
    assert_eq!(p.ta.group_sends(), 1);
    for ctx in members.iter().map(|(c, _)| c).chain([&local]) {
        let got = recv(ctx).await;
        assert_eq!((got.topic(), got.payload()), ("news", &Value::from(1)));
        assert_eq!(got.from(), Some(sender.pid()));
        assert!(ctx.try_recv().is_none(), "one message per member");
    }
    // broadcast_local stays on its node.
    p.ga.broadcast_local("room", Message::new(None, "local", Value::Null));
    assert_eq!(p.ta.group_sends(), 1);
    assert!(local.try_recv().is_none());

    // Leaves and exits on a follow on b.
    p.ga.leave("room", members[0].0.pid()).unwrap();
    assert_eq!(p.gb.members("room").len(), 4);
    p.ga.leave("room", members[0].0.pid()).unwrap();
    let (_, guard) = members.remove(1);
    guard.exit(Value::Null);
    assert_eq!(p.gb.members("room").len(), 2);
    p.gb.leave("room", local.pid()).unwrap();
    assert_eq!(p.ga.local_members("room").len(), 1);
    assert_eq!(p.gb.local_groups(), Vec::<String>::new());
    assert_eq!(p.gb.groups(), ["room"]);
}

#[tokio::test]
async fn subscribers_see_changes_and_one_diff_for_a_lost_node() {
    let p = pair(GroupLimits::default());
    let (watcher, _gw) = probe(&p.b);
    p.gb.subscribe(watcher.pid()).unwrap();
    p.gb.subscribe(watcher.pid()).unwrap();
    let (m1, _g1) = probe(&p.a);
    let (m2, _g2) = probe(&p.a);
    p.ga.join("x", m1.pid()).unwrap();
    p.ga.join("x", m1.pid()).unwrap(); // a second join: no new member, no diff
    p.ga.join("y", m2.pid()).unwrap();
    let first = recv(&watcher).await;
    assert_eq!(reason(&first), "remote");
    assert_eq!(
        diff_part(&first, "joins"),
        [("x".into(), vec![m1.pid().to_string()])]
    );
    let second = recv(&watcher).await;
    assert_eq!(
        diff_part(&second, "joins"),
        [("y".into(), vec![m2.pid().to_string()])]
    );
    assert!(watcher.try_recv().is_none(), "one diff per new member");

    // Node a is lost: both members leave at once, in one diff.
    p.b.inbound().group_node_down("a");
    let lost = recv(&watcher).await;
    assert_eq!(reason(&lost), "nodedown");
    assert_eq!(
        diff_part(&lost, "leaves"),
        [
            ("x".into(), vec![m1.pid().to_string()]),
            ("y".into(), vec![m2.pid().to_string()])
        ]
    );
    assert!(p.gb.members("x").is_empty() && p.gb.groups().is_empty());
    p.b.inbound().group_node_down("a");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(watcher.try_recv().is_none(), "exactly one notification");

    // A local leave is a diff too; after unsubscribe, nothing.
    let (m3, _g3) = probe(&p.b);
    p.gb.join("z", m3.pid()).unwrap();
    assert_eq!(reason(&recv(&watcher).await), "join");
    assert!(p.gb.unsubscribe(watcher.pid()));
    p.gb.leave("z", m3.pid()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(watcher.try_recv().is_none());
}

#[tokio::test]
async fn a_snapshot_removes_only_what_it_does_not_renew() {
    let p = pair(GroupLimits::default());
    let (watcher, _gw) = probe(&p.b);
    let (m1, _g1) = probe(&p.a);
    let (m2, _g2) = probe(&p.a);
    p.ga.join("x", m1.pid()).unwrap();
    p.ga.join("x", m2.pid()).unwrap();
    p.gb.subscribe(watcher.pid()).unwrap();
    // A snapshot that no longer has m2 (its leave was lost with a session): m1 unchanged.
    let inbound = p.b.inbound();
    inbound.group_sync_begin("a");
    inbound.group_set("a", SCOPE, "x", &[(m1.pid().clone(), 1)]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(watcher.try_recv().is_none(), "m1 was a member already");
    assert_eq!(p.gb.members("x").len(), 2, "nothing removed before the end");
    inbound.group_sync_end("a");
    assert_eq!(p.gb.members("x"), vec![m1.pid().clone()]);
    let diff = recv(&watcher).await;
    assert_eq!(reason(&diff), "sync");
    assert_eq!(
        diff_part(&diff, "leaves"),
        [("x".into(), vec![m2.pid().to_string()])]
    );
    // Announcements for an unknown scope, or naming another node's process, change nothing.
    assert_eq!(
        inbound.group_set("a", "app:nope", "x", &[(m2.pid().clone(), 1)]),
        0
    );
    inbound.group_set("c", SCOPE, "x", &[(m2.pid().clone(), 1)]);
    assert_eq!(p.gb.members("x"), vec![m1.pid().clone()]);
}

#[tokio::test]
async fn each_node_has_a_cap_of_remote_members() {
    let p = pair(GroupLimits::default().with_max_remote_members(2));
    let members: Vec<_> = (0..3).map(|_| probe(&p.a)).collect();
    let inbound = p.b.inbound();
    let set: Vec<(Pid, usize)> = members.iter().map(|(c, _)| (c.pid().clone(), 1)).collect();
    assert_eq!(
        inbound.group_set("a", SCOPE, "x", &set),
        1,
        "the third is refused"
    );
    assert_eq!(p.gb.members("x").len(), 2);
    // Updates of kept members still apply; a leave makes room.
    inbound.group_set("a", SCOPE, "x", &[(set[0].0.clone(), 0)]);
    assert_eq!(inbound.group_set("a", SCOPE, "x", &set[2..]), 0);
    assert_eq!(p.gb.members("x").len(), 2);
}
