//! NATS faults under live cross-node monitors and traffic: one NATS server crashes (clients
//! fail over; sessions may reset), and all NATS servers are down for ~3 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_cluster::Cluster;
use wsrelay_process::{reason, Context, Event, Pid, SendError, Value};

fn spawn_echo(c: &Cluster) -> Pid {
    echo(c.node(), "echo")
}

/// Collects EXITs of `me` until every target has one or `timeout` passes, then a quiet period
/// to catch duplicates.
async fn exits(me: &Context, targets: &[Pid], timeout: Duration) -> BTreeMap<Pid, Vec<String>> {
    let mut got: BTreeMap<Pid, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while got.len() < targets.len() && Instant::now() < deadline {
        if let Ok(Event::Exit { from, result }) =
            tokio::time::timeout(Duration::from_millis(100), me.next_event()).await
        {
            let why = result.error_text().unwrap_or("normal").to_owned();
            got.entry(from).or_default().push(why);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Some(Event::Exit { from, result }) = me.try_next_event() {
        let why = result.error_text().unwrap_or("normal").to_owned();
        got.entry(from).or_default().push(why);
    }
    got
}

#[test]
fn nats_server_crash_fails_over_with_one_exit_per_monitor() {
    let Some(nats) = nats() else { return };
    rt().block_on(async {
        let a = start_on(&unique("ka"), 1).await;
        let b = start_on(&unique("kb"), 2).await;
        let c = start_on(&unique("kc"), 3).await;
        let me = probe(a.node());
        let targets: Vec<Pid> = (0..20)
            .map(|i| spawn_echo(if i % 2 == 0 { &b } else { &c }))
            .collect();
        for t in &targets {
            me.monitor(t).unwrap();
        }
        // Monitors are in place once an echo behind them returned.
        for t in &targets {
            assert!(echo_works(&me, t, Duration::from_secs(10)).await);
        }
        // Traffic in flight while A's server crashes.
        let pump = probe(b.node());
        let sink = spawn_echo(&a);
        for i in 0..500 {
            let _ = pump.send(&sink, "ping", Value::Int(i));
        }
        let crashed = Instant::now();
        nats.kill_server(1);
        for t in &targets {
            let node = if t.node() == b.node().name() { &b } else { &c };
            node.node().terminate(t).unwrap();
        }
        let got = exits(&me, &targets, Duration::from_secs(30)).await;
        eprintln!(
            "after a NATS server crash, EXITs within {:?}: {got:?}",
            crashed.elapsed()
        );
        for t in &targets {
            let whys = got.get(t).cloned().unwrap_or_default();
            assert_eq!(whys.len(), 1, "exactly one EXIT for {t}: {whys:?}");
            assert!(
                whys[0] == reason::TERMINATED || whys[0] == reason::NOCONNECTION,
                "{whys:?}"
            );
        }
        // New sessions work after the failover.
        let t = spawn_echo(&b);
        assert!(
            echo_works(&me, &t, Duration::from_secs(20)).await,
            "A→B after failover"
        );
        let t = spawn_echo(&a);
        assert!(
            echo_works(&pump, &t, Duration::from_secs(20)).await,
            "B→A after failover"
        );
        eprintln!(
            "session resets: a {}, b {}",
            a.stats().session_resets(),
            b.stats().session_resets()
        );
        nats.start_server(1);
        a.shutdown();
        b.shutdown();
        c.shutdown();
    });
}

#[test]
fn all_nats_servers_down_then_back() {
    let Some(nats) = nats() else { return };
    rt().block_on(async {
        let a = start(&unique("da")).await;
        let b = start(&unique("db")).await;
        let me = probe(a.node());
        let remote = spawn_echo(&b);
        me.monitor(&remote).unwrap();
        assert!(echo_works(&me, &remote, Duration::from_secs(10)).await);
        let local = spawn_echo(&a);

        nats.kill_all();
        let down = Instant::now();
        // Remote sends fail with `node unreachable` once the grace period (2 s) has passed
        // (the loop waits up to 10 s for it; how soon is printed, not asserted); local work
        // carries on meanwhile.
        let mut unreachable_after = None;
        let mut exit_after = None;
        let mut exits = Vec::new();
        while down.elapsed() < Duration::from_secs(3) || unreachable_after.is_none() || exit_after.is_none() {
            assert!(down.elapsed() < Duration::from_secs(10), "unreachable {unreachable_after:?}, exit {exit_after:?}");
            if unreachable_after.is_none() {
                if let Err(SendError::NodeUnreachable(_)) = me.send(&remote, "ping", Value::Null) {
                    unreachable_after = Some(down.elapsed());
                }
            }
            while let Some(ev) = me.try_next_event() {
                exits.push(ev);
                exit_after.get_or_insert(down.elapsed());
            }
            assert!(echo_works(&me, &local, Duration::from_secs(2)).await, "local echo while NATS is down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("all NATS down: sends fail after {unreachable_after:?}, monitor EXIT after {exit_after:?}");
        nats.start_all();
        let up = Instant::now();
        assert!(echo_works(&me, &remote, Duration::from_secs(30)).await, "A→B after NATS is back");
        eprintln!("all NATS back: remote echo again after {:?}", up.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        while let Some(ev) = me.try_next_event() {
            exits.push(ev);
        }
        assert_eq!(exits.len(), 1, "exactly one EXIT: {exits:?}");
        assert!(matches!(&exits[0], Event::Exit { from, result } if from == &remote && result.error_text() == Some(reason::NOCONNECTION)), "{exits:?}");
        // A new monitor across works again: real EXIT.
        me.monitor(&remote).unwrap();
        assert!(echo_works(&me, &remote, Duration::from_secs(10)).await);
        b.node().terminate(&remote).unwrap();
        match tokio::time::timeout(Duration::from_secs(10), me.next_event()).await {
            Ok(Event::Exit { from, result }) => {
                assert_eq!(from, remote);
                assert_eq!(result.error_text(), Some(reason::TERMINATED));
            }
            other => panic!("{other:?}"),
        }
        a.shutdown();
        b.shutdown();
    });
}
