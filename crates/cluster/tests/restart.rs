//! A node restarted under the same name (a new incarnation) is usable again: sessions reopen,
//! its re-registered `global:` names resolve to the new PIDs and stay registered, and new
//! sends and monitors reach it. Regression test for "no echo after B was SIGKILLed and
//! restarted" (docs/cluster.md).

use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_cluster::Cluster;
use wsrelay_process::{reason, Context, Event, ExitResult, Pid, SendError, SpawnOptions, Value};

/// Spawns an echo process on `c` registered as `name` (taking over a stale entry of an
/// earlier incarnation, as a Lua target does on start).
async fn echo_target(c: &Cluster, name: &str) -> Pid {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pid = c
        .node()
        .spawn(HOST, SpawnOptions::new(), {
            let name = name.to_owned();
            move |ctx| async move {
                let registered = tokio::task::block_in_place(|| ctx.register(&name));
                let _ = tx.send(registered);
                loop {
                    let msg = ctx.recv().await;
                    if msg.topic() == "stop" {
                        return;
                    }
                    let from = msg.from().unwrap().clone();
                    let _ = ctx.send(&from, "echo", msg.payload().clone());
                }
            }
        })
        .unwrap();
    rx.await.unwrap().expect("the name registers");
    pid
}

/// Resolves `name` on `c`'s node and expects an echo from `want` within `timeout`, retrying
/// the send (a send may be refused while the peer's restart is being noticed).
async fn echo_through_name(c: &Cluster, name: &str, want: &Pid, timeout: Duration) -> bool {
    let me = probe(c.node());
    let deadline = Instant::now() + timeout;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let node = c.node().clone();
        let n = name.to_owned();
        let found = tokio::task::block_in_place(|| node.lookup(&n));
        if found.as_ref() == Some(want) && me.send(want, "ping", Value::Int(i)).is_ok() {
            let got = tokio::time::timeout(Duration::from_millis(500), me.recv()).await;
            if let Ok(msg) = got {
                if msg.payload() == &Value::Int(i) {
                    return true;
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    false
}

fn restart_case(after_down: bool) {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start(&unique("ra")).await;
        let b_name = unique("rb");
        let b1 = start(&b_name).await;
        let name = format!("global:{}", unique("target"));
        let t1 = echo_target(&b1, &name).await;
        assert!(echo_through_name(&a, &name, &t1, Duration::from_secs(10)).await);

        b1.shutdown(); // SIGKILL: the connection closes, nothing is said
        if after_down {
            let a2 = a.clone();
            let bn = b_name.clone();
            assert!(
                eventually(Duration::from_secs(10), move || a2
                    .peers()
                    .iter()
                    .any(|(p, up)| *p == bn && !up))
                .await,
                "A declares B down"
            );
        }
        let b2 = start(&b_name).await;
        assert_ne!(b2.incarnation(), b1.incarnation());
        let t2 = echo_target(&b2, &name).await;
        assert!(
            echo_through_name(&a, &name, &t2, Duration::from_secs(15)).await,
            "echo from the restarted node's target"
        );
        // Still resolving and answering after both sides have certainly seen each other's
        // heartbeats (a restart noticed late must not release the new incarnation's names).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            echo_through_name(&a, &name, &t2, Duration::from_secs(5)).await,
            "name still registered and reachable after the restart settled"
        );
        let me = probe(a.node());
        assert!(
            matches!(
                me.send(&t1, "late", Value::Null),
                Err(SendError::NoProcess(_))
            ),
            "a PID of the earlier run fails locally once the restart is known"
        );
        me.monitor(&t2).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            me.try_next_event().is_none(),
            "a monitor on the new incarnation stays quiet"
        );
        b2.node().terminate(&t2).unwrap();
        match tokio::time::timeout(Duration::from_secs(10), me.next_event()).await {
            Ok(Event::Exit { from, .. }) => assert_eq!(from, t2),
            other => panic!("{other:?}"),
        }
        a.shutdown();
        b2.shutdown();
    });
}

#[test]
fn restarted_node_is_reachable_after_it_was_declared_down() {
    restart_case(true);
}

#[test]
fn restarted_node_is_reachable_when_restart_is_faster_than_detection() {
    restart_case(false);
}

/// Options of a node that is never declared down by the others: no DISCONNECT advisory and
/// a long silence limit, so only a new run's frames tell them about its restart. It
/// heartbeats every `heartbeat` seconds.
fn quiet(name: &str, heartbeat: u64) -> wsrelay_cluster::ClusterOptions {
    let mut o = options(name).with_heartbeat(
        Duration::from_secs(heartbeat),
        Duration::from_secs(3 * heartbeat.max(20)),
    );
    o.disconnect_advisory = None;
    o
}

/// Spawns on `c`'s node a process that ends with `result` at its first message.
fn ends_at_a_message(c: &Cluster, result: ExitResult) -> Pid {
    c.node()
        .spawn(HOST, SpawnOptions::new(), |ctx| async move {
            ctx.recv().await;
            result
        })
        .unwrap()
}

/// Expects `me`'s next event to be the EXIT of `from` with `result`.
async fn expect_exit(me: &Context, from: &Pid, result: ExitResult) {
    match next_event(me).await {
        Event::Exit { from: f, result: r } => assert_eq!((&f, r), (from, result)),
        other => panic!("{other:?}"),
    }
}

/// Expects no event for `me` yet, then the real EXIT of `target` (made by
/// [`ends_at_a_message`] with the normal reason "bye") once it is sent a message, and nothing
/// after it.
async fn only_the_real_exit(me: &Context, target: &Pid) {
    let early = me.try_next_event();
    assert!(early.is_none(), "no spurious event: {early:?}");
    me.send(target, "go", Value::Null).unwrap();
    expect_exit(me, target, ExitResult::normal("bye")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = me.try_next_event();
    assert!(late.is_none(), "exactly one EXIT: {late:?}");
}

/// A monitor of a PID of a restarted node, made before this node has noticed the restart
/// (no frame of the new run seen yet), gets the target's real EXIT, not a spurious
/// `noconnection` when the restart is noticed: it did not span the lost connection.
#[test]
fn an_early_monitor_of_a_restarted_node_gets_the_real_exit() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start_with(quiet(&unique("ea"), 1)).await;
        let b_name = unique("eb");
        let b = start_with(quiet(&b_name, 1)).await;
        let me = probe(a.node());
        let echo = b
            .node()
            .spawn(HOST, SpawnOptions::new(), |ctx| async move {
                let msg = ctx.recv().await;
                let _ = ctx.send(msg.from().unwrap(), "echo", Value::Null);
            })
            .unwrap();
        me.send(&echo, "ping", Value::Null).unwrap();
        tokio::time::timeout(Duration::from_secs(10), me.recv())
            .await
            .expect("b knows a, a knows b's first run");

        b.shutdown();
        let b2 = start_with(quiet(&b_name, 1)).await;
        let target = ends_at_a_message(&b2, ExitResult::normal("bye"));
        me.monitor(&target).unwrap();
        // a's next heartbeat reaches the new run, which answers: the restart is noticed.
        tokio::time::sleep(Duration::from_secs(3)).await;
        only_the_real_exit(&me, &target).await;
        a.shutdown();
        b2.shutdown();
    });
}

/// The same, when this node's session towards `b` carried no data before the monitor (only
/// `b`'s first run had sent data), so `b`'s new run accepts that session from its first
/// frame, and the new run's first frame here is data (it heartbeats rarely and sends two
/// messages after the monitor). Noticing the restart must not end the session the new run
/// accepted from its start: before, it did, the new run ended its side in turn, and that
/// ended this side again, failing the monitor with `noconnection`.
#[test]
fn an_early_monitor_of_a_restarted_node_whose_first_frame_is_data_gets_the_real_exit() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start_with(quiet(&unique("fa"), 1)).await;
        let b_name = unique("fb");
        let b = start_with(quiet(&b_name, 1)).await;
        let me = probe(a.node());
        // Only b's first run sends data: a's session towards b carries heartbeats only.
        probe(b.node()).send(me.pid(), "hi", Value::Null).unwrap();
        let msg = tokio::time::timeout(EVENT_WAIT, me.recv())
            .await
            .expect("a hears b's first run");
        assert_eq!(msg.topic(), "hi");

        b.shutdown();
        // The new run heartbeats once a minute: its first frame at a is data.
        let b2 = start_with(quiet(&b_name, 60)).await;
        let target = ends_at_a_message(&b2, ExitResult::normal("bye"));
        me.monitor(&target).unwrap();
        // The monitor is the first data frame of a's session: b2 accepts it from its start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let talker = probe(b2.node());
        for i in 0..2 {
            talker.send(me.pid(), "hello", Value::Int(i)).unwrap();
            let msg = tokio::time::timeout(EVENT_WAIT, me.recv())
                .await
                .expect("a hears b's new run");
            assert_eq!(msg.payload(), &Value::Int(i));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Both sides' next frames cross (a heartbeats every second).
        tokio::time::sleep(Duration::from_secs(2)).await;
        only_the_real_exit(&me, &target).await;
        a.shutdown();
        b2.shutdown();
    });
}

/// A monitor of a PID of `b`'s new run made just as the new run's first frame (data, sealed
/// before it heard anything from this node) is on its way here: the two cross. Both cases
/// failed the monitor with `noconnection` before:
///
/// - `a_sent_data`: this node's session towards `b` carried data to `b`'s first run, so the
///   new run can never accept it (it would see a gap). The monitor went out in it anyway: the
///   new run ended its side, after this node had accepted its first frame and started a new
///   session for it, so the new run's next frame opened yet another session and ended this
///   side again. Now the monitor waits here until the new run is heard and goes in the
///   session started for it (module `held`).
/// - otherwise the session had carried nothing, and the monitor was its first frame, which
///   the new run accepts. The new run's frame, sealed before, acknowledged no session, and
///   noticing the restart ended this one: the new run then ended its side in turn, which
///   ended this side again. Now the session counts as started for the new run (its first
///   frame came after a PID of that run was used here) and goes on.
///
/// With `stale`, a message to the old run's process goes out beside the monitor: a frame of
/// this node's old session in flight when the new run speaks.
fn crossing_case(a_sent_data: bool, stale: bool) {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start_with(quiet(&unique("ga"), 60)).await;
        let b_name = unique("gb");
        let b = start_with(quiet(&b_name, 60)).await;
        let me = probe(a.node());
        let pong = echo(b.node(), "pong");
        if a_sent_data {
            me.send(&pong, "ping", Value::Null).unwrap();
        } else {
            probe(b.node()).send(me.pid(), "pong", Value::Null).unwrap();
        }
        let msg = tokio::time::timeout(EVENT_WAIT, me.recv())
            .await
            .expect("a hears b's first run");
        assert_eq!(msg.topic(), "pong");

        b.shutdown();
        // Neither side heartbeats within the test: every frame is one the test caused.
        let b2 = start_with(quiet(&b_name, 60)).await;
        let target = ends_at_a_message(&b2, ExitResult::normal("bye"));
        let talker = probe(b2.node());
        talker.send(me.pid(), "hello", Value::Int(0)).unwrap();
        if stale {
            let _ = me.send(&pong, "stale", Value::Null);
        }
        me.monitor(&target).unwrap();
        // Each next frame of the new run would show a session it started over.
        for i in 0..3 {
            let msg = tokio::time::timeout(EVENT_WAIT, me.recv())
                .await
                .expect("a hears b's new run");
            assert_eq!((msg.topic(), msg.payload()), ("hello", &Value::Int(i)));
            tokio::time::sleep(Duration::from_millis(300)).await;
            talker.send(me.pid(), "hello", Value::Int(i + 1)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        only_the_real_exit(&me, &target).await;
        a.shutdown();
        b2.shutdown();
    });
}

#[test]
fn an_early_monitor_crossing_the_new_runs_first_frame_after_data_to_the_old_run_gets_the_real_exit()
{
    crossing_case(true, false);
}

#[test]
fn an_early_monitor_crossing_the_new_runs_first_frame_in_a_fresh_session_gets_the_real_exit() {
    crossing_case(false, false);
}

#[test]
fn an_early_monitor_with_a_frame_of_the_old_session_in_flight_gets_the_real_exit() {
    crossing_case(true, true);
}

/// A PID of a run of `b` never heard from, used while `b`'s run is up and this node's
/// session towards it has carried data: a monitor of it waits (it would end the live
/// connection as a gap at a new run), fails with `noconnection` exactly once after
/// `dead_after`, and a send to it is dropped; the live run's relations and sends are not
/// touched.
#[test]
fn what_waits_for_a_run_never_heard_fails_once_and_leaves_the_live_run_alone() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start(&unique("ha")).await;
        let b = start(&unique("hb")).await;
        let me = probe(a.node());
        let pong = echo(b.node(), "pong");
        me.monitor(&pong).unwrap();
        assert!(echo_works(&me, &pong, EVENT_WAIT).await);
        let other_run = (u64::from(!(pong.id() >> 32) as u32) << 32) | 1;
        let ghost = Pid::new(pong.node(), pong.host(), other_run);
        me.monitor(&ghost).unwrap();
        me.send(&ghost, "lost", Value::Null).unwrap();
        let made = Instant::now();
        expect_exit(&me, &ghost, ExitResult::error(reason::NOCONNECTION)).await;
        assert!(made.elapsed() >= Duration::from_secs(3), "after dead_after");
        assert!(
            echo_works(&me, &pong, EVENT_WAIT).await,
            "the live run still answers"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let other = me.try_next_event();
        assert!(
            other.is_none(),
            "one EXIT, the live monitor untouched: {other:?}"
        );
        let metrics = metrics_text(a.stats());
        let series = "wsrelay_remote_dropped_total{reason=\"unreachable\"} 2";
        assert!(
            metrics.contains(series),
            "monitor and send dropped: {series} in\n{metrics}"
        );
        a.shutdown();
        b.shutdown();
    });
}

/// A node `a` that has heard from `b`'s first run (`b1`) and then declared it down: the
/// scene of the early relations below. Returns `a`, a probe on it that traps links, the name
/// of `b` and a PID of its first run.
async fn b_declared_down(
    a_options: wsrelay_cluster::ClusterOptions,
) -> (Cluster, Context, String, Pid) {
    let a_name = a_options.node.clone();
    let a = start_with(a_options).await;
    let b_name = unique("db");
    let b1 = start(&b_name).await;
    let me = probe(a.node());
    me.set_trap_links(true);
    let t1 = echo(b1.node(), "echo");
    assert!(
        echo_works(&me, &t1, Duration::from_secs(10)).await,
        "{a_name} hears b's first run"
    );
    b1.shutdown(); // SIGKILL: the connection closes, nothing is said
    let (a2, bn) = (a.clone(), b_name.clone());
    assert!(
        eventually(Duration::from_secs(20), move || a2
            .peers()
            .contains(&(bn.clone(), false)))
        .await,
        "a declares b down"
    );
    (a, me, b_name, t1)
}

/// `b` restarted, silent towards `a` until it has something to say: no heartbeat for a
/// minute (and no hello: groups are off), so `a` still counts its first run down.
async fn restart_silent(b_name: &str) -> Cluster {
    start_with(options(b_name).with_heartbeat(Duration::from_secs(60), Duration::from_secs(180)))
        .await
}

/// The next two events of `me`: the EXIT and the link down of `from`, in either order;
/// returns their results.
async fn exit_and_link_down(me: &Context, from: &Pid) -> (ExitResult, ExitResult) {
    let (mut exit, mut down) = (None, None);
    for _ in 0..2 {
        match next_event(me).await {
            Event::Exit { from: f, result } if &f == from && exit.is_none() => exit = Some(result),
            Event::LinkDown { from: f, result } if &f == from && down.is_none() => {
                down = Some(result)
            }
            other => panic!("{other:?}"),
        }
    }
    (exit.unwrap(), down.unwrap())
}

/// `b`'s new run sends `me` a message, and `me` gets it: `me`'s node has heard the run.
async fn b_speaks(b2: &Cluster, me: &Context) {
    probe(b2.node()).send(me.pid(), "hi", Value::Null).unwrap();
    let msg = tokio::time::timeout(EVENT_WAIT, me.recv())
        .await
        .expect("b2 is heard");
    assert_eq!(msg.topic(), "hi");
}

/// A monitor and a link towards a PID of `b`'s new run, made while `a` still
/// counts `b`'s old run down (before it heard the new run), are held, not failed with
/// `noconnection`, and get the real exit; sends to that PID go through. A PID of the old run
/// still fails at once. With `b_speaks_first`, the new run is heard (a message of its own)
/// while they are held, and they must stay in place until the target exits.
fn early_relations_case(b_speaks_first: bool) {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        // A long silence limit: the relations below wait for b's new run this long at most.
        let a_options =
            options(&unique("da")).with_heartbeat(Duration::from_secs(1), Duration::from_secs(10));
        let (a, me, b_name, t1) = b_declared_down(a_options).await;
        let b2 = restart_silent(&b_name).await;
        let target = ends_at_a_message(&b2, ExitResult::error("boom"));

        me.monitor(&t1).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, t1);
                assert_eq!(
                    result.error_text(),
                    Some(reason::NOCONNECTION),
                    "old run: at once"
                );
            }
            other => panic!("{other:?}"),
        }
        me.monitor(&target).unwrap();
        me.link(&target).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let early = me.try_next_event();
        assert!(early.is_none(), "held, not failed: {early:?}");
        assert!(
            a.peers().contains(&(b_name.clone(), false)),
            "a has not heard b's new run yet: the relations were made and held before it"
        );
        if b_speaks_first {
            b_speaks(&b2, &me).await;
            // Both sides' next frames (heartbeats, answers) cross.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let early = me.try_next_event();
            assert!(early.is_none(), "kept once b2 was heard: {early:?}");
        }
        me.send(&target, "go", Value::Null)
            .expect("a send to the new run's PID is queued");
        let (exit, down) = exit_and_link_down(&me, &target).await;
        assert_eq!(exit.error_text(), Some("boom"));
        assert_eq!(down.error_text(), Some("boom"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = me.try_next_event();
        assert!(
            late.is_none(),
            "exactly one EXIT and one link down: {late:?}"
        );
        assert!(
            a.peers().contains(&(b_name.clone(), true)),
            "b's new run is up"
        );
        a.shutdown();
        b2.shutdown();
    });
}

#[test]
fn early_monitor_and_link_towards_a_node_restarted_after_it_was_declared_down_get_the_real_exit() {
    early_relations_case(false);
}

#[test]
fn early_monitor_and_link_stay_when_the_new_run_is_heard_before_the_target_exits() {
    early_relations_case(true);
}

/// If the new run is not heard from within the detection time (`dead_after`), the relations
/// held for it fail with `noconnection`, exactly once; past the cap, a new one fails at once.
/// Once the run is heard, monitors of its PIDs work as usual.
#[test]
fn early_relations_towards_a_new_run_not_heard_in_time_fail_once() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let mut a_options = options(&unique("sa"));
        a_options.early_relations_max = 2;
        let (a, me, b_name, _) = b_declared_down(a_options).await;
        let b2 = restart_silent(&b_name).await;
        let target = idle(b2.node());
        let extra = idle(b2.node());
        me.monitor(&target).unwrap();
        me.link(&target).unwrap();
        me.monitor(&extra).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, extra, "over the cap of 2: at once");
                assert_eq!(result.error_text(), Some(reason::NOCONNECTION));
            }
            other => panic!("{other:?}"),
        }
        let (exit, down) = exit_and_link_down(&me, &target).await;
        assert_eq!(exit.error_text(), Some(reason::NOCONNECTION));
        assert_eq!(down.error_text(), Some(reason::NOCONNECTION));
        assert!(
            a.peers().contains(&(b_name.clone(), false)),
            "still not heard"
        );

        // b's new run speaks: a hears it; nothing more arrives for the failed relations.
        b_speaks(&b2, &me).await;
        me.monitor(&target).unwrap();
        b2.node().terminate(&target).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, target);
                assert_ne!(
                    result.error_text(),
                    Some(reason::NOCONNECTION),
                    "{result:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = me.try_next_event();
        assert!(late.is_none(), "exactly once: {late:?}");
        a.shutdown();
        b2.shutdown();
    });
}
