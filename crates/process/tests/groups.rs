//! Process groups through the public API: joins and leaves with multiplicity, members, sends
//! to every member, memberships ending with their member, and the scope limits.

use std::time::Duration;

use wsrelay_process::{
    Context, ExitGuard, GroupError, GroupLimits, GroupScope, HostConfig, Message, Node, Pid,
    SpawnOptions, Value,
};

const HOST: &str = "app:processes";

fn setup(limits: GroupLimits) -> (Node, GroupScope) {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    assert!(node.add_group_scope("app:pg", limits));
    assert!(
        !node.add_group_scope("app:pg", limits),
        "a second scope of one name"
    );
    let scope = node.group_scope("app:pg").unwrap();
    (node, scope)
}

fn probe(node: &Node) -> (Context, ExitGuard) {
    node.attach(HOST, SpawnOptions::new()).unwrap().detach()
}

fn sorted(mut pids: Vec<Pid>) -> Vec<String> {
    let mut texts: Vec<_> = pids.drain(..).map(|p| p.to_string()).collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn joins_count_and_leaves_undo_them_one_by_one() {
    let (node, scope) = setup(GroupLimits::default());
    let (a, _ga) = probe(&node);
    let (b, _gb) = probe(&node);
    scope.join("room", a.pid()).unwrap();
    scope.join("room", a.pid()).unwrap();
    scope.join("room", b.pid()).unwrap();
    scope.join("other", b.pid()).unwrap();
    assert_eq!(
        sorted(scope.members("room")),
        sorted(vec![a.pid().clone(), a.pid().clone(), b.pid().clone()])
    );
    let mut groups = scope.groups();
    groups.sort();
    assert_eq!(groups, ["other", "room"]);
    assert_eq!(scope.groups_of(b.pid()), ["other", "room"]);

    scope.leave("room", a.pid()).unwrap();
    assert_eq!(
        scope.members("room").len(),
        2,
        "one of a's two joins is left"
    );
    scope.leave("room", a.pid()).unwrap();
    assert_eq!(
        scope.leave("room", a.pid()),
        Err(GroupError::NotMember {
            group: "room".into(),
            pid: a.pid().to_string()
        })
    );
    scope.leave("other", b.pid()).unwrap();
    assert_eq!(scope.groups(), ["room"], "an emptied group goes away");
    assert!(scope.members("nowhere").is_empty());
    assert_eq!(scope.join("", a.pid()), Err(GroupError::EmptyName));
}

#[tokio::test]
async fn a_send_reaches_each_distinct_member_once() {
    let (node, scope) = setup(GroupLimits::default());
    let (sender, _gs) = probe(&node);
    let members: Vec<_> = (0..5).map(|_| probe(&node)).collect();
    for (ctx, _) in &members {
        scope.join("room", ctx.pid()).unwrap();
    }
    scope.join("room", members[0].0.pid()).unwrap();
    let msg = Message::new(Some(sender.pid().clone()), "news", Value::from("hi"));
    assert_eq!(scope.send("room", &msg), 5);
    for (ctx, _) in &members {
        let got = tokio::time::timeout(Duration::from_secs(5), ctx.recv())
            .await
            .unwrap();
        assert_eq!((got.topic(), got.payload()), ("news", &Value::from("hi")));
        assert_eq!(got.from(), Some(sender.pid()));
        assert!(ctx.try_recv().is_none(), "one message per member");
    }
    assert_eq!(scope.send("empty", &msg), 0);
}

#[tokio::test]
async fn memberships_end_when_their_member_exits_whoever_made_them() {
    let (node, scope) = setup(GroupLimits::default());
    let (target, _gt) = probe(&node);
    let (client, guard) = probe(&node);
    // The target joins the client (as a relay target does with its connections).
    scope.join("room", client.pid()).unwrap();
    scope.join("room", client.pid()).unwrap();
    scope.join("room", target.pid()).unwrap();
    guard.exit(Value::Null);
    assert_eq!(scope.members("room"), vec![target.pid().clone()]);
    assert_eq!(
        scope.join("room", client.pid()),
        Err(GroupError::NoProcess(client.pid().to_string()))
    );
}

#[tokio::test]
async fn scopes_refuse_joins_past_their_limits() {
    let (node, scope) = setup(GroupLimits::new(2, 3));
    let (a, _ga) = probe(&node);
    scope.join("one", a.pid()).unwrap();
    scope.join("two", a.pid()).unwrap();
    assert!(matches!(
        scope.join("three", a.pid()),
        Err(GroupError::TooManyGroups { limit: 2, .. })
    ));
    scope.join("one", a.pid()).unwrap();
    scope.join("one", a.pid()).unwrap();
    assert!(matches!(
        scope.join("one", a.pid()),
        Err(GroupError::TooManyMembers { limit: 3, .. })
    ));
    assert_eq!(scope.members("one").len(), 3);
    assert_eq!(
        scope.groups().len(),
        2,
        "a refused join leaves no empty group"
    );
}

/// Joins racing exits on several threads: every membership of an exited process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_racing_exits_leave_no_member_behind() {
    let (node, scope) = setup(GroupLimits::default());
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (ctx, guard) = probe(&node);
        let scope = scope.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let _ = scope.join(&format!("g{}", i % 3), ctx.pid());
                tokio::task::yield_now().await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            guard.exit(Value::Null);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for group in ["g0", "g1", "g2"] {
        assert!(
            scope.members(group).is_empty(),
            "{group}: {:?}",
            scope.members(group)
        );
    }
    assert!(scope.groups().is_empty());
}

#[derive(Debug)]
struct Encoded(String);

impl wsrelay_process::OpaqueValue for Encoded {
    fn to_value(&self) -> Value {
        Value::from(self.0.as_str())
    }
}

#[tokio::test]
async fn a_broadcast_prepares_its_payload_once_for_every_member() {
    let (node, scope) = setup(GroupLimits::default());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    node.set_group_encoder(
        "ws.send",
        std::sync::Arc::new(move |payload: &Value| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let text = payload.get("data")?.as_str()?.to_owned();
            Some(Value::Opaque(std::sync::Arc::new(Encoded(text))))
        }),
    );
    let members: Vec<_> = (0..3).map(|_| probe(&node)).collect();
    for (ctx, _) in &members {
        scope.join("room", ctx.pid()).unwrap();
    }
    let frame: Value = wsrelay_process::Map::new()
        .with("type", "text")
        .with("data", "hi")
        .into();
    assert_eq!(scope.broadcast("room", None, "ws.send", frame, vec![]), 3);
    let table: Value = wsrelay_process::Map::new().with("n", 1).into();
    assert_eq!(
        scope.broadcast("room", None, "news", table.clone(), vec![Value::from("x")]),
        3
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "encoded once"
    );
    for (ctx, _) in &members {
        let sent = ctx.recv().await;
        assert!(sent.payload().downcast_ref::<Encoded>().is_some());
        let news = ctx.recv().await;
        assert_eq!(news.payload().clone().into_plain(), table);
        assert_eq!(news.extra()[0].clone().into_plain(), Value::from("x"));
    }
}

/// Folds the events of `watch` into `members` (a multiset of PID texts) until none is ready.
fn apply_events(watch: &wsrelay_process::GroupWatch, members: &mut Vec<String>) {
    use wsrelay_process::GroupEvent;
    while let Some(event) = watch.try_next() {
        match event {
            GroupEvent::Joined { pids, .. } => members.extend(pids.iter().map(Pid::to_string)),
            GroupEvent::Left { pids, .. } => {
                for pid in pids {
                    let at = members
                        .iter()
                        .position(|m| *m == pid.to_string())
                        .expect("a leave of a member the watcher knows");
                    members.swap_remove(at);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_monitor_snapshot_and_its_events_add_up_under_concurrent_joins() {
    // Each round: four threads join and leave while the monitor is taken; whatever the
    // interleaving, the snapshot plus the events must equal the final membership (fewer
    // changes than the buffer holds, so none is dropped).
    for _ in 0..50 {
        let (node, scope) = setup(GroupLimits::default());
        let probes: Vec<_> = (0..4).map(|_| probe(&node)).collect();
        let threads: Vec<_> = probes
            .iter()
            .map(|(ctx, _)| {
                let (scope, pid) = (scope.clone(), ctx.pid().clone());
                std::thread::spawn(move || {
                    for i in 0..7 {
                        scope.join("room", &pid).unwrap();
                        if i % 3 == 2 {
                            scope.leave("room", &pid).unwrap();
                        }
                    }
                })
            })
            .collect();
        let (watch, snapshot) = scope.monitor("room").unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let mut members: Vec<String> = snapshot.iter().map(Pid::to_string).collect();
        apply_events(&watch, &mut members);
        members.sort();
        assert_eq!(members, sorted(scope.members("room")));
    }
}

#[tokio::test]
async fn a_member_exit_reports_each_membership_once_and_a_full_buffer_marks_the_gap() {
    use wsrelay_process::{GroupEvent, WATCH_BUFFER};
    let (node, scope) = setup(GroupLimits::default());
    let (a, guard) = probe(&node);
    scope.join("room", a.pid()).unwrap();
    scope.join("room", a.pid()).unwrap();
    let (watch, snapshot) = scope.monitor("room").unwrap();
    assert_eq!(snapshot.len(), 2);
    drop(guard);
    let left: Vec<_> = std::iter::from_fn(|| watch.try_next()).collect();
    let one = GroupEvent::Left {
        group: "room".into(),
        pids: vec![a.pid().clone()],
    };
    assert_eq!(left, [one.clone(), one]);

    let (b, _gb) = probe(&node);
    for _ in 0..WATCH_BUFFER + 10 {
        scope.join("room", b.pid()).unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| watch.try_next()).collect();
    assert_eq!(events.len(), WATCH_BUFFER + 1);
    assert_eq!(events[WATCH_BUFFER], GroupEvent::Overflow { dropped: 10 });
    scope.leave("room", b.pid()).unwrap();
    assert!(matches!(watch.try_next(), Some(GroupEvent::Left { .. })));
    watch.close(false);
    scope.leave("room", b.pid()).unwrap();
    assert_eq!(watch.try_next(), None);
    assert!(watch.is_finished());
}
