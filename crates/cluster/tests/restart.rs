//! A node restarted under the same name (a new incarnation) is usable again: sessions reopen,
//! its re-registered `global:` names resolve to the new PIDs and stay registered, and new
//! sends and monitors reach it. Regression test for "no echo after B was SIGKILLed and
//! restarted" (docs/cluster.md).

use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_cluster::Cluster;
use wsrelay_process::{Event, Pid, SendError, SpawnOptions, Value};

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

/// A monitor of a PID of a restarted node, made before this node has noticed the restart
/// (no frame of the new run seen yet), gets the target's real EXIT, not a spurious
/// `noconnection` when the restart is noticed: it did not span the lost connection.
#[test]
fn an_early_monitor_of_a_restarted_node_gets_the_real_exit() {
    let Some(_nats) = nats() else { return };
    let quiet = |name: &str| {
        // No DISCONNECT advisory and a long silence limit: the old run is never declared
        // down, so only the new run's frames tell this node about the restart.
        let mut o = options(name).with_heartbeat(Duration::from_secs(1), Duration::from_secs(60));
        o.disconnect_advisory = None;
        o
    };
    rt().block_on(async {
        let a = start_with(quiet(&unique("ea"))).await;
        let b_name = unique("eb");
        let b = start_with(quiet(&b_name)).await;
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
        let b2 = start_with(quiet(&b_name)).await;
        let target = b2
            .node()
            .spawn(HOST, SpawnOptions::new(), |ctx| async move {
                ctx.recv().await;
                wsrelay_process::ExitResult::normal("bye")
            })
            .unwrap();
        me.monitor(&target).unwrap();
        // a's next heartbeat reaches the new run, which answers: the restart is noticed.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let early = me.try_next_event();
        assert!(early.is_none(), "no spurious event: {early:?}");
        me.send(&target, "go", Value::Null).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, target);
                assert_eq!(result, wsrelay_process::ExitResult::normal("bye"));
            }
            other => panic!("{other:?}"),
        }
        a.shutdown();
        b2.shutdown();
    });
}
