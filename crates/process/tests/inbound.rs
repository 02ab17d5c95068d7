//! Remote PIDs through the `Transport` seam and the `Inbound` handle, with two nodes in one
//! test joined by an in-memory transport (`support::Loopback`) that hands every signal
//! straight to the other node's `Inbound` (what `wsrelay-cluster` does over NATS; its own
//! tests cover the network).
//!
//! Each test checks one promise of the seam from the runtime's side: exactly one EXIT per
//! remote monitor, `noproc` answered through the transport, link exits across nodes, and no
//! relation left behind on either node.

use std::time::Duration;

use wsrelay_process::{
    reason, Context, Event, ExitGuard, ExitResult, HostConfig, Node, SpawnOptions, Value,
};

use crate::support::join;

const HOST: &str = "app:processes";

/// Two nodes, `a` and `b`, each with the host [`HOST`], joined by `support::Loopback`s.
struct Pair {
    a: Node,
    b: Node,
}

impl Pair {
    fn new() -> Pair {
        let (a, b) = (Node::named("a", 1), Node::named("b", 1));
        join(&a, &b);
        for node in [&a, &b] {
            node.add_host(HOST, HostConfig::default());
        }
        Pair { a, b }
    }

    /// A detached process on `a` and one on `b`, for the test to act as.
    fn probes(&self) -> ((Context, ExitGuard), (Context, ExitGuard)) {
        (probe(&self.a), probe(&self.b))
    }

    /// The monitors and links held on both nodes, both ends counted.
    fn relations(&self) -> usize {
        self.a.relation_count() + self.b.relation_count()
    }
}

fn probe(node: &Node) -> (Context, ExitGuard) {
    node.attach(HOST, SpawnOptions::new()).unwrap().detach()
}

async fn next_event(ctx: &Context) -> Event {
    tokio::time::timeout(Duration::from_secs(5), ctx.next_event())
        .await
        .expect("an event within 5s")
}

/// The error of an EXIT or a LINK_DOWN.
fn error_of(event: &Event) -> Option<&str> {
    match event {
        Event::Exit { result, .. } | Event::LinkDown { result, .. } => result.error.as_deref(),
        other => panic!("expected an EXIT or a LINK_DOWN, got {other:?}"),
    }
}

#[tokio::test]
async fn a_remote_monitor_gets_exactly_one_exit_with_the_result() {
    let pair = Pair::new();
    let ((watcher, _w), (target, guard)) = pair.probes();
    watcher.monitor(target.pid()).unwrap();
    assert_eq!(pair.b.relation_count(), 1, "the target's end is on node b");
    guard.exit(ExitResult::error("boom"));
    assert_eq!(error_of(&next_event(&watcher).await), Some("boom"));
    assert!(watcher.try_next_event().is_none(), "one EXIT only");
    assert_eq!(pair.relations(), 0);
}

#[tokio::test]
async fn monitoring_a_dead_remote_pid_is_answered_noproc_through_the_transport() {
    let pair = Pair::new();
    let ((watcher, _w), (target, guard)) = pair.probes();
    guard.exit(());
    watcher.monitor(target.pid()).unwrap();
    assert_eq!(error_of(&next_event(&watcher).await), Some(reason::NOPROC));
    assert_eq!(pair.relations(), 0);
}

#[tokio::test]
async fn unmonitoring_a_remote_pid_removes_its_end_on_the_other_node() {
    let pair = Pair::new();
    let ((watcher, _w), (target, guard)) = pair.probes();
    watcher.monitor(target.pid()).unwrap();
    watcher.unmonitor(target.pid());
    assert_eq!(pair.relations(), 0);
    guard.exit(ExitResult::error("boom"));
    assert!(
        watcher.try_next_event().is_none(),
        "no EXIT after unmonitor"
    );
}

#[tokio::test]
async fn a_remote_link_failure_stops_a_process_that_does_not_trap() {
    let pair = Pair::new();
    let ((observer, _o), (remote, guard)) = pair.probes();
    let local = pair
        .a
        .spawn(HOST, SpawnOptions::new(), |ctx| async move {
            ctx.recv().await;
        })
        .unwrap();
    observer.monitor(&local).unwrap();
    remote.link(&local).unwrap();
    guard.exit(ExitResult::error("boom"));
    let exit = next_event(&observer).await;
    assert_eq!(error_of(&exit), Some(reason::LINKED_FAILED));
}

#[tokio::test]
async fn a_trapping_process_hears_a_remote_link_failure_as_an_event() {
    let pair = Pair::new();
    let ((local, _l), (remote, guard)) = pair.probes();
    local.set_trap_links(true);
    local.link(remote.pid()).unwrap();
    guard.exit(ExitResult::error("boom"));
    let down = next_event(&local).await;
    assert!(matches!(&down, Event::LinkDown { from, .. } if from == remote.pid()));
    assert_eq!(error_of(&down), Some("boom"));
    assert_eq!(pair.relations(), 0);
}

#[tokio::test]
async fn a_normal_remote_exit_drops_the_link_silently() {
    let pair = Pair::new();
    let ((local, _l), (remote, guard)) = pair.probes();
    local.link(remote.pid()).unwrap();
    guard.exit(());
    assert_eq!(pair.relations(), 0);
    assert!(local.try_next_event().is_none());
    assert!(local.stop_requested().is_none());
}

#[tokio::test]
async fn linking_to_a_dead_remote_pid_comes_back_as_noproc() {
    let pair = Pair::new();
    let ((local, _l), (remote, guard)) = pair.probes();
    local.set_trap_links(true);
    guard.exit(());
    local.link(remote.pid()).unwrap();
    let down = next_event(&local).await;
    assert!(matches!(down, Event::LinkDown { .. }), "{down:?}");
    assert_eq!(error_of(&down), Some(reason::NOPROC));
    assert_eq!(pair.relations(), 0);
}

#[tokio::test]
async fn unlinking_a_remote_pid_removes_both_ends() {
    let pair = Pair::new();
    let ((local, _l), (remote, guard)) = pair.probes();
    local.link(remote.pid()).unwrap();
    assert_eq!(pair.relations(), 2);
    local.unlink(remote.pid());
    assert_eq!(pair.relations(), 0);
    guard.exit(ExitResult::error("boom"));
    assert!(local.stop_requested().is_none());
}

#[tokio::test]
async fn messages_cancels_and_terminates_reach_the_other_node() {
    let pair = Pair::new();
    let ((sender, _s), (receiver, _r)) = pair.probes();
    sender.send(receiver.pid(), "hello", 1).unwrap();
    assert_eq!(receiver.try_recv().unwrap().payload(), &Value::Int(1));
    sender.cancel(receiver.pid(), "please").unwrap();
    assert!(matches!(
        receiver.try_next_event(),
        Some(Event::Cancel { from: Some(from), .. }) if &from == sender.pid()
    ));
    sender.terminate(receiver.pid()).unwrap();
    let stop = receiver.stop_requested().expect("a kill request");
    assert_eq!(stop.error.as_deref(), Some(reason::TERMINATED));
}
