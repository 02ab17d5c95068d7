//! docs/spec.md §7: the messages a connection accepts from any process.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{Map, Value};
use wsrelay_relay::Outgoing;

use crate::support::*;

#[tokio::test]
async fn ws_send_text_and_binary_from_any_process() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    let (other, _g2) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    let client_pid = joined(&target).await;
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("type", "text").with("data", "hi"),
    );
    send(
        &other,
        &client_pid,
        "ws.send",
        Map::new()
            .with("type", "binary")
            .with("data", Value::Bytes(vec![1u8, 2, 255].into())),
    );
    send(
        &other,
        &client_pid,
        "ws.send",
        Value::Opaque(std::sync::Arc::new(Outgoing::text("fast"))),
    );
    assert_eq!(next_frame(&mut client).await, T::text("hi"));
    assert_eq!(next_frame(&mut client).await, T::binary(vec![1u8, 2, 255]));
    assert_eq!(next_frame(&mut client).await, T::text("fast"));
}

#[tokio::test]
async fn invalid_payloads_are_ignored() {
    let h = Harness::start().await;
    let (target, _g, mut client, client_pid) = h.joined_client().await;
    send(&target, &client_pid, "ws.send", 42);
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new()
            .with("type", "text")
            .with("data", Value::Bytes(vec![0xffu8].into())),
    );
    send(
        &target,
        &client_pid,
        "ws.control",
        Map::new().with("target_pid", 5),
    );
    send(
        &target,
        &client_pid,
        "ws.control",
        Map::new().with("target_pid", "{broken"),
    );
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("data", "still alive"),
    );
    assert_eq!(next_frame(&mut client).await, T::text("still alive"));
}

/// The shapes of `ws.send` a connection takes apart itself: extra fields, `String` data sent
/// as binary, a shared map (a group send's payload on another path), and a Rust sender's
/// text frame that is not UTF-8 (still refused: only `String` text skips the check).
#[tokio::test]
async fn ws_send_payload_shapes() {
    let h = Harness::start().await;
    let (target, _g, mut client, client_pid) = h.joined_client().await;
    let extra = Map::new()
        .with("type", "text")
        .with("data", "extra")
        .with("id", 7);
    send(&target, &client_pid, "ws.send", extra);
    let binary = Map::new().with("type", "binary").with("data", "as bytes");
    send(&target, &client_pid, "ws.send", binary);
    let shared = Value::from(Map::new().with("data", "shared")).into_shared();
    send(&target, &client_pid, "ws.send", shared);
    let invalid = wsrelay_ws::Message::Text(vec![0xffu8, 0xfe].into());
    let invalid = Value::Opaque(std::sync::Arc::new(Outgoing::Frame(invalid)));
    send(&target, &client_pid, "ws.send", invalid);
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("data", "last"),
    );
    assert_eq!(next_frame(&mut client).await, T::text("extra"));
    assert_eq!(next_frame(&mut client).await, T::binary(&b"as bytes"[..]));
    assert_eq!(next_frame(&mut client).await, T::text("shared"));
    assert_eq!(next_frame(&mut client).await, T::text("last"));
}

#[tokio::test]
async fn ws_close_with_code_and_reason() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    for (code, expected) in [(4000, 4000), (1005, 1000), (2000, 1000)] {
        let client = h.connect().await;
        let client_pid = joined(&target).await;
        send(
            &target,
            &client_pid,
            "ws.close",
            Map::new()
                .with("code", code)
                .with("reason", "Sessão encerrada"),
        );
        assert_eq!(
            close_of(client).await,
            (expected, "Sessão encerrada".to_owned())
        );
        let leave = leave_of(&target).await;
        assert_eq!(leave.get("reason"), Some(&Value::from("server_closed")));
        assert_eq!(leave.get("code"), Some(&Value::Int(i64::from(expected))));
    }
    let client = h.connect().await;
    let client_pid = joined(&target).await;
    let long = "ü".repeat(100);
    send(
        &target,
        &client_pid,
        "ws.close",
        Map::new().with("reason", long.as_str()),
    );
    let (code, reason) = close_of(client).await;
    assert_eq!(code, 1000);
    assert!(
        reason.len() <= 123 && long.starts_with(&reason),
        "{}",
        reason.len()
    );
}

#[tokio::test]
async fn other_topics_become_json_frames() {
    let h = Harness::start().await;
    let (target, _g, mut client, client_pid) = h.joined_client().await;
    send(&target, &client_pid, "update", Map::new().with("value", 42));
    let T::Text(text) = next_frame(&mut client).await else {
        panic!()
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"topic": "update", "data": {"value": 42}})
    );
}

#[tokio::test]
async fn ws_control_transfers_without_losing_or_misdelivering_frames() {
    let h = Harness::start().await;
    let (old, _g) = h.probe();
    let (new, _g2) = h.probe();
    let (watcher, _g3) = h.probe();
    h.relay_to(old.pid().as_str(), r#", "metadata": {"stage": "old"}"#);
    let mut client = h.connect().await;
    let client_pid = joined(&old).await;
    // Frames stream in while the transfer happens.
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            client.send(T::text(i.to_string())).await.unwrap();
        }
        client
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let control = Map::new()
        .with("target_pid", new.pid().as_str())
        .with("message_topic", "moved")
        .with("metadata", Map::new().with("stage", "new"));
    send(&watcher, &client_pid, "ws.control", control);
    let mut seen = Vec::new();
    loop {
        let (topic, payload) = recv(&old).await;
        if topic == "ws.leave" {
            assert_eq!(payload.get("reason"), Some(&Value::from("transferred")));
            assert_eq!(
                payload.get("metadata").unwrap().get("stage"),
                Some(&Value::from("old"))
            );
            break;
        }
        assert_eq!(topic, "ws.message");
        seen.push(data_number(&payload));
    }
    let (topic, join) = recv(&new).await;
    assert_eq!(topic, "ws.join");
    assert_eq!(
        join.get("metadata").unwrap().get("stage"),
        Some(&Value::from("new"))
    );
    let _client = writer.await.unwrap();
    while seen.len() < 200 {
        let (topic, payload) = recv(&new).await;
        assert_eq!(topic, "moved");
        seen.push(data_number(&payload));
    }
    assert_eq!(
        seen,
        (0..200).collect::<Vec<_>>(),
        "every frame once, in order"
    );
    assert!(old.try_recv().is_none(), "nothing after ws.leave");
    // The old target may exit now without closing the connection.
    drop(_g);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.node.is_alive(&client_pid));
}

#[tokio::test]
async fn ws_control_to_a_dead_target_closes_with_1011() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    let (dead, guard) = h.probe();
    let dead_pid = dead.pid().clone();
    guard.exit(());
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    let client_pid = joined(&target).await;
    send(
        &target,
        &client_pid,
        "ws.control",
        Map::new().with("target_pid", dead_pid.as_str()),
    );
    assert_eq!(close_of(client).await.0, 1011);
}

/// docs/spec.md §13: a group send of `ws.send` reaches every member connection once, with
/// the frame prepared once; a connection that closed has left the group by itself.
#[tokio::test]
async fn a_group_send_of_ws_send_reaches_every_member_connection() {
    let h = Harness::start().await;
    h.node
        .add_group_scope("app:pg", wsrelay_process::GroupLimits::default());
    let scope = h.node.group_scope("app:pg").unwrap();
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = h.connect().await;
        scope.join("room", &joined(&target).await).unwrap();
        clients.push(client);
    }
    let leaving = clients.pop().unwrap();
    drop(leaving);
    let _ = leave_of(&target).await;
    let frame: Value = Map::new()
        .with("type", "text")
        .with("data", "to all")
        .into();
    assert_eq!(
        scope.broadcast("room", Some(target.pid().clone()), "ws.send", frame, vec![]),
        2
    );
    for client in &mut clients {
        assert_eq!(next_frame(client).await, T::text("to all"));
    }
    for client in clients {
        client_close(client, None).await;
    }
    h.stop().await;
}

/// A group send's frame that must wait for its client (the client's write queue is full):
/// every member still gets every frame once and in order, and a member that reads is never
/// held back by one that does not read yet.
#[tokio::test]
async fn group_sends_that_wait_for_a_slow_member_keep_order_and_spare_the_others() {
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "64MiB")
        .start()
        .await;
    h.node
        .add_group_scope("app:pg", wsrelay_process::GroupLimits::default());
    let scope = h.node.group_scope("app:pg").unwrap();
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut reader = h.connect().await;
    scope.join("room", &joined(&target).await).unwrap();
    let mut sleeper = h.connect().await;
    scope.join("room", &joined(&target).await).unwrap();

    // 256 KiB each, more than a write queue takes at once and than loopback buffers hold:
    // the sleeper's connection queues the shared frames, then waits to write them.
    let frames = 24;
    let text = |seq: usize| format!("{seq:04}:{}", "x".repeat(256 * 1024));
    for seq in 0..frames {
        let frame: Value = Map::new()
            .with("type", "text")
            .with("data", text(seq).as_str())
            .into();
        assert_eq!(
            scope.broadcast("room", Some(target.pid().clone()), "ws.send", frame, vec![]),
            2
        );
    }
    // The reader gets all of them while the sleeper has read nothing.
    for seq in 0..frames {
        assert_eq!(next_frame(&mut reader).await, T::text(text(seq)), "reader");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for seq in 0..frames {
        assert_eq!(
            next_frame(&mut sleeper).await,
            T::text(text(seq)),
            "sleeper"
        );
    }
    client_close(reader, None).await;
    client_close(sleeper, None).await;
    h.stop().await;
}

#[tokio::test]
async fn a_transfer_away_from_a_congested_target_reads_the_client_again() {
    const HIGH_WATER: usize = 4;
    let h = Harness::builder().high_water(HIGH_WATER).start().await;
    let (old, _g) = h.probe();
    let (new, _g2) = h.probe();
    let (watcher, _g3) = h.probe();
    h.relay_to(old.pid().as_str(), "");
    let mut client = h.connect().await;
    let client_pid = joined(&old).await;
    // The old target reads nothing more: its inbox passes the mark and the relay leaves the
    // client unread (backpressure), holding the rest of these frames in the socket.
    for i in 0..20 {
        client.send(T::text(i.to_string())).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(5), || old.inbox_len() >= HIGH_WATER).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = old.inbox_len();
    assert!(held < 20, "the relay kept reading: {held} queued");

    send(
        &watcher,
        &client_pid,
        "ws.control",
        Map::new().with("target_pid", new.pid().as_str()),
    );
    // The new target has room: the frames left unread reach it although the old target
    // still holds its full inbox.
    let (topic, _) = recv(&new).await;
    assert_eq!(topic, "ws.join");
    let mut seen = Vec::new();
    while seen.len() < 20 - held {
        let (topic, payload) = recv(&new).await;
        assert_eq!(topic, "ws.message");
        seen.push(data_number(&payload));
    }
    assert_eq!(seen, (held as u32..20).collect::<Vec<_>>());
}

/// A `ws.send` to an idle connection is written by its sender, in the sender's call: it
/// reaches the client without passing through the connection's inbox (`parked.rs`).
#[tokio::test]
async fn a_send_to_an_idle_connection_is_written_in_the_senders_call() {
    let h = Harness::start().await;
    let (target, _g, mut client, client_pid) = h.joined_client().await;
    // The connection's task sent `ws.join` just before it parks: the first sends may find it
    // still running (then they are queued, and written by the task).
    let mut attempts = 0;
    loop {
        let before = h.relay.stats().sends_taken();
        let text = format!("ping {attempts}");
        send(
            &target,
            &client_pid,
            "ws.send",
            Map::new().with("data", text.as_str()),
        );
        assert_eq!(next_frame(&mut client).await, T::text(text));
        if h.relay.stats().sends_taken() == before + 1 {
            break;
        }
        attempts += 1;
        assert!(attempts < 100, "no send was taken by the idle connection");
    }
    // Idle again after the write: the next send is taken too, and its frame counted.
    let (taken, (frames, _)) = (h.relay.stats().sends_taken(), h.relay.stats().outbound());
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("data", "again"),
    );
    assert_eq!(next_frame(&mut client).await, T::text("again"));
    assert_eq!(h.relay.stats().sends_taken(), taken + 1);
    assert_eq!(h.relay.stats().outbound().0, frames + 1);
    client_close(client, None).await;
    h.stop().await;
}

/// Senders on the connection's runtime write to a connection whose task is kept busy by its
/// client: the sends that find it idle on their own thread are taken in the sender's call, the
/// others queued, and each sender's frames still reach the client once each and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_taken_and_queued_keep_each_senders_order() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 3_000;
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "64MiB")
        .start()
        .await;
    let (target, _g, client, client_pid) = h.joined_client().await;
    let (mut write, mut read) = futures_util::StreamExt::split(client);
    // The client keeps its connection's task busy (a frame to forward to the target, again
    // and again) while the senders write.
    let busy = tokio::spawn(async move {
        for i in 0..20_000u32 {
            if write.send(T::text(i.to_string())).await.is_err() {
                break;
            }
        }
        write
    });
    let taken = h.relay.stats().sends_taken();
    // Tasks on both of the runtime's threads: some share the connection's thread at times.
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (sender, guard) = h.probe();
            let to = client_pid.clone();
            tokio::spawn(async move {
                for seq in 0..PER_SENDER {
                    let text = format!("{s}:{seq}");
                    sender
                        .send(&to, "ws.send", Map::new().with("data", text.as_str()))
                        .unwrap();
                    if seq % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                drop(guard);
            })
        })
        .collect();
    let mut next = [0usize; SENDERS];
    while next.iter().sum::<usize>() < SENDERS * PER_SENDER {
        let frame = futures_util::StreamExt::next(&mut read)
            .await
            .expect("the connection ended")
            .unwrap();
        let text = frame.into_text().unwrap();
        let (s, seq) = text.split_once(':').unwrap();
        let s: usize = s.parse().unwrap();
        assert_eq!(
            seq.parse::<usize>().unwrap(),
            next[s],
            "sender {s} out of order"
        );
        next[s] += 1;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let taken = h.relay.stats().sends_taken() - taken;
    println!(
        "{taken} of {} sends taken in the sender's call",
        SENDERS * PER_SENDER
    );
    let _ = busy.await;
    drop(target);
    h.stop().await;
}

/// A sender on another thread than the connection's leaves the write to the connection's
/// own thread (so a broadcast's writes stay on the shards that own the sockets), and a send
/// that finds a message queued before it is queued behind it, though the connection is idle.
#[tokio::test]
async fn a_send_behind_a_queued_one_keeps_its_place() {
    let h = Harness::start().await;
    let (target, _g, mut client, client_pid) = h.joined_client().await;
    let taken = h.relay.stats().sends_taken();
    // The test runs on the connection's thread, which runs no task until the test awaits:
    // "first", from another thread, waits in the connection's inbox meanwhile.
    let (other, guard) = h.probe();
    let to = client_pid.clone();
    std::thread::spawn(move || {
        send(&other, &to, "ws.send", Map::new().with("data", "first"));
        drop(guard);
    })
    .join()
    .unwrap();
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("data", "second"),
    );
    assert_eq!(next_frame(&mut client).await, T::text("first"));
    assert_eq!(next_frame(&mut client).await, T::text("second"));
    assert_eq!(h.relay.stats().sends_taken(), taken, "neither was taken");

    // Drained, idle, on its thread: taken.
    send(
        &target,
        &client_pid,
        "ws.send",
        Map::new().with("data", "third"),
    );
    assert_eq!(next_frame(&mut client).await, T::text("third"));
    assert_eq!(h.relay.stats().sends_taken(), taken + 1);
    client_close(client, None).await;
    h.stop().await;
}
