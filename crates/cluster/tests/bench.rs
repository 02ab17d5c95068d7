//! Cross-node benchmarks (ignored by default; numbers in docs/cluster.md):
//!
//! ```sh
//! cargo test --release -p wsrelay-cluster --test cluster bench:: -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `WSR_BENCH_SECRET=1` runs the latency and throughput benchmarks with signed frames (a
//! cluster secret), to measure what HMAC-SHA256 costs.

use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_process::{Event, SpawnOptions, Value};

/// A node of the benchmarks: with a cluster secret if `WSR_BENCH_SECRET` is set.
async fn bench_node(prefix: &str) -> wsrelay_cluster::Cluster {
    let mut options = options(&unique(prefix));
    if std::env::var_os("WSR_BENCH_SECRET").is_some() {
        let secret = wsrelay_cluster::ClusterSecret::new(b"benchmark cluster secret").unwrap();
        options = options.with_secret(secret);
        eprintln!("(frames signed)");
    }
    start_with(options).await
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[test]
#[ignore = "benchmark"]
fn bench_cross_node_ping_pong_latency() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = bench_node("pa").await;
        let b = bench_node("pb").await;
        for (label, remote) in [("local", false), ("cross-node", true)] {
            let host = if remote { &b } else { &a };
            let echo = echo(host.node(), "pong");
            let me = probe(a.node());
            let payload = Value::Bytes(bytes::Bytes::from(vec![7u8; 64]));
            for _ in 0..500 {
                me.send(&echo, "ping", payload.clone()).unwrap();
                me.recv().await;
            }
            let n = 10_000;
            let mut rtts = Vec::with_capacity(n);
            let started = Instant::now();
            for _ in 0..n {
                let t = Instant::now();
                me.send(&echo, "ping", payload.clone()).unwrap();
                me.recv().await;
                rtts.push(t.elapsed());
            }
            let total = started.elapsed();
            rtts.sort();
            println!(
                "BENCH ping-pong {label} 64 B, 1 in flight, {n} round trips: p50 {:?} p99 {:?} max {:?} ({:.0} rt/s)",
                pct(&rtts, 0.50),
                pct(&rtts, 0.99),
                rtts[n - 1],
                n as f64 / total.as_secs_f64()
            );
            host.node().terminate(&echo).unwrap();
        }
        a.shutdown();
        b.shutdown();
    });
}

#[test]
#[ignore = "benchmark"]
fn bench_cross_node_one_way_throughput() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = bench_node("ta").await;
        let b = bench_node("tb").await;
        for size in [64usize, 1024, 16 << 10] {
            let n: i64 = if size > 4096 { 20_000 } else { 200_000 };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sink = b
                .node()
                .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
                    let mut got = 0i64;
                    let mut first = None;
                    let mut in_order = true;
                    loop {
                        let msg = ctx.recv().await;
                        first.get_or_insert_with(Instant::now);
                        in_order &= msg.payload().get("i").and_then(|v| v.as_i64()) == Some(got);
                        got += 1;
                        if got == n {
                            let _ = tx.send((first.unwrap().elapsed(), in_order));
                            return;
                        }
                    }
                })
                .unwrap();
            let me = probe(a.node());
            let body = Value::Bytes(bytes::Bytes::from(vec![1u8; size]));
            let started = Instant::now();
            let mut refused = 0u64;
            for i in 0..n {
                let payload = wsrelay_process::Map::new().with("i", i).with("b", body.clone());
                let mut payload = Value::Map(payload);
                // Back off when the peer's queue is full, as the relay does via is_congested.
                while a.node().is_congested(Some(me.pid()), &sink) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                loop {
                    match me.send(&sink, "m", payload) {
                        Ok(()) => break,
                        Err(_) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            payload = Value::Map(
                                wsrelay_process::Map::new().with("i", i).with("b", body.clone()),
                            );
                        }
                    }
                }
            }
            let sent = started.elapsed();
            let (recv_span, in_order) = tokio::time::timeout(Duration::from_secs(120), rx)
                .await
                .expect("all received")
                .unwrap();
            let total = started.elapsed();
            println!(
                "BENCH one-way {size} B x {n}: {:.0} msgs/s end to end ({:.1} MB/s), sender side {:.0} msgs/s, in order {in_order}, refused {refused}, receive span {recv_span:?}",
                n as f64 / total.as_secs_f64(),
                n as f64 * size as f64 / total.as_secs_f64() / 1e6,
                n as f64 / sent.as_secs_f64(),
            );
            assert!(in_order);
        }
        a.shutdown();
        b.shutdown();
    });
}

/// Fairness: round trips of small messages to a node while another process streams 900 KiB
/// messages to the same node, as fast as its queue lets it (it backs off while the node
/// counts as congested, as the relay does).
#[test]
#[ignore = "benchmark"]
fn bench_small_round_trips_beside_a_bulk_sender() {
    let Some(_nats) = nats() else { return };
    const BULK: usize = 96;
    rt().block_on(async {
        let a = bench_node("ba").await;
        let b = bench_node("bb").await;
        let echo = echo(b.node(), "pong");
        let (tx, mut done) = tokio::sync::oneshot::channel();
        let sink = b
            .node()
            .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
                for _ in 0..BULK {
                    ctx.recv().await;
                }
                let _ = tx.send(());
            })
            .unwrap();
        let me = probe(a.node());
        let payload = Value::Bytes(bytes::Bytes::from(vec![7u8; 64]));
        for _ in 0..200 {
            me.send(&echo, "ping", payload.clone()).unwrap();
            me.recv().await;
        }
        let bulk = probe(a.node());
        let node = a.node().clone();
        let large = Value::Bytes(bytes::Bytes::from(vec![7u8; 900 << 10]));
        let started = Instant::now();
        tokio::spawn(async move {
            for _ in 0..BULK {
                while node.is_congested(Some(bulk.pid()), &sink) || bulk.send(&sink, "bulk", large.clone()).is_err() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        });
        let mut rtts = Vec::new();
        loop {
            let t = Instant::now();
            me.send(&echo, "ping", payload.clone()).unwrap();
            me.recv().await;
            rtts.push(t.elapsed());
            if done.try_recv().is_ok() {
                break;
            }
        }
        let bulk_span = started.elapsed();
        rtts.sort();
        println!(
            "BENCH small round trips beside a bulk sender ({BULK} x 900 KiB, {:.0} MB/s): {} round trips, p50 {:?} p99 {:?} max {:?}",
            BULK as f64 * (900 << 10) as f64 / bulk_span.as_secs_f64() / 1e6,
            rtts.len(),
            pct(&rtts, 0.50),
            pct(&rtts, 0.99),
            rtts[rtts.len() - 1],
        );
        a.shutdown();
        b.shutdown();
    });
}

#[test]
#[ignore = "benchmark"]
fn bench_failure_detection_in_process() {
    let Some(nats) = nats() else { return };
    rt().block_on(async {
        // Node crash: its NATS connection closes (DISCONNECT advisory + suspect window).
        let mut crash = Vec::new();
        for _ in 0..3 {
            let a = start(&unique("fa")).await;
            let b = start(&unique("fb")).await;
            let me = probe(a.node());
            let t = idle(b.node());
            me.monitor(&t).unwrap();
            me.send(&t, "x", Value::Null).unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let s = Instant::now();
            b.shutdown();
            let ev = tokio::time::timeout(Duration::from_secs(10), me.next_event()).await;
            assert!(matches!(ev, Ok(Event::Exit { .. })));
            crash.push(s.elapsed());
            a.shutdown();
        }
        println!("BENCH detection, node connection closed (crash): {crash:?}");
        // All NATS servers crash: monitors across get noconnection by heartbeat silence.
        let a = start(&unique("fc")).await;
        let b = start(&unique("fd")).await;
        let me = probe(a.node());
        let t = idle(b.node());
        me.monitor(&t).unwrap();
        me.send(&t, "x", Value::Null).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.kill_all();
        let s = Instant::now();
        let ev = tokio::time::timeout(Duration::from_secs(10), me.next_event()).await;
        assert!(matches!(ev, Ok(Event::Exit { .. })));
        println!(
            "BENCH detection, all NATS servers crashed: {:?}",
            s.elapsed()
        );
        nats.start_all();
        a.shutdown();
        b.shutdown();
    });
}

/// A connect storm: 10,000 joins of one group on node a, as fast as one thread makes them;
/// how many envelopes, frames and bytes cross to b, and how long until b sees every member.
/// Three rounds, each with two new nodes.
#[test]
#[ignore = "benchmark"]
fn bench_group_join_storm() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        for round in 0..3 {
            let (a, ga) = crate::groups::group_node(&unique("ja")).await;
            let (b, gb) = crate::groups::group_node(&unique("jb")).await;
            let first = probe(a.node());
            ga.join("lobby", first.pid()).unwrap();
            assert!(eventually(Duration::from_secs(15), || gb.members("lobby").len() == 1).await);
            // What crosses from a to b, on the wire (heartbeats included).
            let raw = raw_client("admin", "admin-pw").await;
            let subject = format!("wsr.wsr.n.{}.{}", b.node().name(), a.node().name());
            let mut sub = raw.subscribe(subject).await.unwrap();
            raw.flush().await.unwrap();
            let wire = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counter = {
                let (wire, frames) = (wire.clone(), frames.clone());
                tokio::spawn(async move {
                    use futures_util::StreamExt;
                    while let Some(m) = sub.next().await {
                        wire.fetch_add(m.payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            };
            let n = 10_000;
            let members: Vec<_> = (0..n).map(|_| probe(a.node())).collect();
            let envelopes_before = a.stats().envelopes().0;
            let started = Instant::now();
            for ctx in &members {
                ga.join("lobby", ctx.pid()).unwrap();
            }
            let joined = started.elapsed();
            while gb.members("lobby").len() < n + 1 {
                assert!(started.elapsed() < Duration::from_secs(60), "b sees every member");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let seen = started.elapsed();
            // Let the last frames reach the raw subscriber too.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let envelopes = a.stats().envelopes().0 - envelopes_before;
            let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "BENCH group join storm, round {round}: {n} joins in {joined:.1?}, b sees all after {seen:.1?}; \
                 a→b {envelopes} envelopes, {} frames, {} bytes on the wire",
                load(&frames),
                load(&wire),
            );
            counter.abort();
            a.shutdown();
            b.shutdown();
        }
    });
}
