//! Flow control between two nodes over a real NATS cluster: credit counted in bytes, an
//! envelope larger than the whole window still going through, and fairness between the
//! senders of one node (in the queue, and in who is held back when it fills) (`docs/cluster-design.md §2`, "Flow control").
//!
//! Assertions are about the order in which messages arrive, never about time: a process on
//! the receiving node records where each message came from.

use std::time::Duration;

use crate::support::*;
use wsrelay_process::{Map, Message, Pid, SpawnOptions, Value};

/// How long a test waits for everything to arrive (a hang detector).
const ALL_IN: Duration = Duration::from_secs(120);
/// A large message: below the NATS `max_payload` (1 MB) of `scripts/nats-cluster.sh`, far
/// above a batch (64 KiB) and the windows used here.
const LARGE: usize = 900 << 10;

/// Spawns a process on `node` that receives `n` messages and hands them over in the order
/// they arrived.
fn recorder(
    node: &wsrelay_process::Node,
    n: usize,
) -> (Pid, tokio::sync::oneshot::Receiver<Vec<Message>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pid = node
        .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
            let mut got = Vec::with_capacity(n);
            while got.len() < n {
                got.push(ctx.recv().await);
            }
            let _ = tx.send(got);
        })
        .unwrap();
    (pid, rx)
}

fn numbered(i: usize, body: &Value) -> Value {
    Value::Map(Map::new().with("i", i as i64).with("b", body.clone()))
}

fn number(msg: &Message) -> Option<i64> {
    msg.payload().get("i").and_then(Value::as_i64)
}

/// The numbers of the messages with `topic`, in arrival order.
fn numbers_of(got: &[Message], topic: &str) -> Vec<i64> {
    got.iter()
        .filter(|m| m.topic() == topic)
        .filter_map(number)
        .collect()
}

#[test]
fn a_large_sender_does_not_starve_small_messages_to_the_same_node() {
    let Some(_nats) = nats() else { return };
    const BULK: usize = 32;
    const SMALL: usize = 200;
    rt().block_on(async {
        let a = start(&unique("fla")).await;
        let b = start(&unique("flb")).await;
        let (sink, all_in) = recorder(b.node(), BULK + SMALL);
        let bulk = probe(a.node());
        let chatty = probe(a.node());
        // The bulk process queues ~29 MiB (the queue takes up to 64 MiB) before the chatty one
        // sends anything; a single queue would deliver every large message first.
        let large = Value::Bytes(bytes::Bytes::from(vec![7u8; LARGE]));
        for i in 0..BULK {
            bulk.send(&sink, "bulk", numbered(i, &large)).unwrap();
        }
        // The queue is above its high-water mark (8 MiB): the bulk process, which fills it,
        // is held back; the chatty one, with nothing queued, is not (a relay client of
        // another target on b keeps reading).
        assert!(a.node().is_congested(Some(bulk.pid()), &sink));
        assert!(!a.node().is_congested(Some(chatty.pid()), &sink));
        let small = Value::Bytes(bytes::Bytes::from_static(b"hi"));
        for i in 0..SMALL {
            chatty.send(&sink, "small", numbered(i, &small)).unwrap();
        }
        let got = tokio::time::timeout(ALL_IN, all_in)
            .await
            .expect("every message arrives")
            .unwrap();
        let in_order = |n: usize| (0..n as i64).collect::<Vec<_>>();
        assert_eq!(numbers_of(&got, "bulk"), in_order(BULK), "bulk in order");
        assert_eq!(numbers_of(&got, "small"), in_order(SMALL), "small in order");
        let last_small = got.iter().rposition(|m| m.topic() == "small").unwrap();
        let bulk_before = got[..last_small]
            .iter()
            .filter(|m| m.topic() == "bulk")
            .count();
        // Only what was in flight or being batched when the small messages were queued
        // (the 4 MiB window holds four large frames) may go before them.
        assert!(
            bulk_before < BULK / 2,
            "the small messages waited for {bulk_before} of {BULK} large ones"
        );
        eprintln!("all {SMALL} small messages arrived after {bulk_before} of {BULK} large ones");
        a.shutdown();
        b.shutdown();
    });
}

#[test]
fn envelopes_larger_than_the_window_still_go_in_order() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        // 64 KiB and two frames of credit both ways: each large envelope is 14 windows.
        let window = |node: &str| options(node).with_window(64 << 10, 2);
        let a = start_with(window(&unique("fwa"))).await;
        let b = start_with(window(&unique("fwb"))).await;
        let n = 12;
        let (sink, all_in) = recorder(b.node(), n);
        let me = probe(a.node());
        let large = Value::Bytes(bytes::Bytes::from(vec![1u8; LARGE]));
        let small = Value::Bytes(bytes::Bytes::from_static(b"x"));
        // Large and small from one sender: each large one must go alone, in its place.
        for i in 0..n {
            let body = if i % 3 == 0 { &small } else { &large };
            me.send(&sink, "m", numbered(i, body)).unwrap();
        }
        let got = tokio::time::timeout(ALL_IN, all_in)
            .await
            .expect("envelopes larger than the window arrive")
            .unwrap();
        assert_eq!(numbers_of(&got, "m"), (0..n as i64).collect::<Vec<_>>());
        for msg in &got {
            let len = msg
                .payload()
                .get("b")
                .and_then(Value::as_bytes)
                .map(<[u8]>::len);
            let want = if number(msg).unwrap() % 3 == 0 {
                1
            } else {
                LARGE
            };
            assert_eq!(len, Some(want), "payload intact");
        }
        // The session survived: nothing was reset or dropped on the way.
        for node in [&a, &b] {
            assert_eq!(node.stats().session_resets(), 0);
        }
        a.shutdown();
        b.shutdown();
    });
}
