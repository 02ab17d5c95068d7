//! docs/spec.md §8 and §9: how a connection ends, and its limits.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{Event, Map, Value};
use wsrelay_relay::Outgoing;

use crate::support::*;

#[tokio::test]
async fn target_exit_closes_1000_or_1011() {
    let h = Harness::start().await;
    for (error, code) in [(false, 1000), (true, 1011)] {
        let (target, guard) = h.probe();
        h.relay_to(target.pid().as_str(), "");
        let client = h.connect().await;
        joined(&target).await;
        if error {
            drop(guard); // exits with error "terminated"
        } else {
            guard.exit(());
        }
        assert_eq!(close_of(client).await.0, code);
    }
}

#[tokio::test]
async fn monitors_of_the_connection_see_its_exit_reason() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    let (watcher, _g2) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    // client_closed: normal exit
    let client = h.connect().await;
    let client_pid = joined(&target).await;
    watcher.monitor(&client_pid).unwrap();
    client_close(client, None).await;
    let Event::Exit { from, result } = event(&watcher).await else {
        panic!()
    };
    assert_eq!(from, client_pid);
    assert_eq!(result.value, Value::from("client_closed"));
    assert!(!result.is_error());
    leave_of(&target).await;
    // connection_lost: error exit, links fire
    let client = h.connect().await;
    let client_pid = joined(&target).await;
    watcher.monitor(&client_pid).unwrap();
    let (linked, _g3) = h.probe();
    linked.set_trap_links(true);
    linked.link(&client_pid).unwrap();
    drop(client);
    let Event::Exit { result, .. } = event(&watcher).await else {
        panic!()
    };
    assert_eq!(result.value, Value::from("connection_lost"));
    assert!(result.is_error());
    assert_eq!(event(&linked).await.kind(), "pid.link.down");
}

#[tokio::test]
async fn cancel_closes_1001_and_terminate_closes_1011() {
    let h = Harness::start().await;
    let (target, _g, client, client_pid) = h.joined_client().await;
    target.cancel(&client_pid, "bye").unwrap();
    assert_eq!(close_of(client).await.0, 1001);
    assert_eq!(
        leave_of(&target).await.get("reason"),
        Some(&Value::from("server_closed"))
    );

    let client = h.connect().await;
    let client_pid = joined(&target).await;
    target.monitor(&client_pid).unwrap();
    target.terminate(&client_pid).unwrap();
    assert_eq!(close_of(client).await.0, 1011);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("code"), Some(&Value::Int(1011)));
    let Event::Exit { result, .. } = event(&target).await else {
        panic!()
    };
    assert_eq!(result.error_text(), Some("terminated"));
}

#[tokio::test]
async fn shutdown_closes_1001_with_leave_shutdown() {
    let h = Harness::start().await;
    let (target, _g, client, client_pid) = h.joined_client().await;
    h.node
        .kill(&client_pid, wsrelay_process::ExitResult::error("shutdown"))
        .unwrap();
    assert_eq!(close_of(client).await.0, 1001);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("shutdown")));
}

// ===== docs/spec.md §9: limits =====

#[tokio::test]
async fn a_client_that_does_not_read_is_a_slow_consumer() {
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "64KiB")
        .option("wsrelay.write_timeout", "500ms")
        .start()
        .await;
    let (target, _g, client, client_pid) = h.joined_client().await; // never read
    let chunk = "x".repeat(16 * 1024);
    for _ in 0..2000 {
        if target
            .send(
                &client_pid,
                "ws.send",
                Map::new().with("data", chunk.as_str()),
            )
            .is_err()
        {
            break;
        }
    }
    let leave = tokio::time::timeout(Duration::from_secs(10), leave_of(&target))
        .await
        .unwrap();
    assert_eq!(leave.get("reason"), Some(&Value::from("slow_consumer")));
    drop(client);
}

#[tokio::test]
async fn a_congested_target_stops_the_reading_without_dropping() {
    let h = Harness::builder().high_water(8).start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    joined(&target).await;
    let (mut sink, _stream) = client.split();
    let writer = tokio::spawn(async move {
        for i in 0..500 {
            if sink.send(T::text(i.to_string())).await.is_err() {
                break;
            }
        }
        sink
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        target.inbox_len() <= 9,
        "relay kept reading: {}",
        target.inbox_len()
    );
    let mut got = Vec::new();
    while got.len() < 500 {
        let (_, payload) = recv(&target).await;
        got.push(data_number(&payload));
    }
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    let _ = writer.await;
}

#[tokio::test]
async fn a_silent_client_is_lost_after_the_pong_timeout() {
    let h = Harness::builder()
        .option("wsrelay.ping_interval", "100ms")
        .option("wsrelay.pong_timeout", "100ms")
        .option("wsrelay.close_timeout", "100ms")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    // A raw TCP client that completes the upgrade and then never answers pings.
    let _stream = h.raw_upgraded().await;
    joined(&target).await;
    let leave = tokio::time::timeout(Duration::from_secs(5), leave_of(&target))
        .await
        .unwrap();
    assert_eq!(leave.get("reason"), Some(&Value::from("connection_lost")));
}

#[tokio::test]
async fn a_live_client_answers_pings_and_stays() {
    let h = Harness::builder()
        .option("wsrelay.ping_interval", "50ms")
        .option("wsrelay.pong_timeout", "100ms")
        .start()
        .await;
    let (_target, _g, mut client, client_pid) = h.joined_client().await;
    // tungstenite answers pings while it is polled.
    let reader = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        while tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), client.next()).await;
        }
        client
    });
    let _client = reader.await.unwrap();
    assert!(h.node.is_alive(&client_pid));
}

#[tokio::test]
async fn terminate_is_not_held_up_by_a_blocked_write() {
    let h = Harness::builder()
        .option("wsrelay.write_timeout", "60s")
        .option("wsrelay.max_outbound_bytes", "1GiB")
        .option("wsrelay.close_timeout", "200ms")
        .start()
        .await;
    let (target, _g, client, client_pid) = h.joined_client().await; // never read: the socket buffers fill and writes block
    target.monitor(&client_pid).unwrap();
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..200 {
        target
            .send(
                &client_pid,
                "ws.send",
                Map::new().with("data", chunk.as_str()),
            )
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    target.terminate(&client_pid).unwrap();
    // The EXIT comes within `event`'s wait (5 s), far below the 60 s write timeout a
    // terminate held up by the write would wait for.
    let Event::Exit { result, .. } = event(&target).await else {
        panic!()
    };
    assert_eq!(result.error_text(), Some("terminated"));
    drop(client);
}

#[tokio::test]
async fn the_outbound_byte_limit_closes_a_stalled_client_before_the_write_timeout() {
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "1MiB")
        .option("wsrelay.write_timeout", "60s")
        .option("wsrelay.close_timeout", "200ms")
        .start()
        .await;
    let (target, _g, client, client_pid) = h.joined_client().await; // never read
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let started = std::time::Instant::now();
    let (mut sent, mut refused) = (0usize, false);
    while !refused && started.elapsed() < Duration::from_secs(10) {
        let frame = Value::Opaque(std::sync::Arc::new(Outgoing::binary(chunk.clone())));
        refused = target.send(&client_pid, "ws.send", frame).is_err();
        sent += usize::from(!refused);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The connection ended (sends to it fail) within the 10 s of sending, and `ws.leave`
    // comes within `recv`'s wait: both far below the 60 s write timeout.
    assert!(
        refused,
        "the client was still open after 10 s ({sent} frames accepted)"
    );
    let leave = leave_of(&target).await;
    assert_eq!(
        leave.get("reason"),
        Some(&Value::from("slow_consumer")),
        "{sent} frames accepted"
    );
    drop(client);
}

/// A client that completes the close handshake but keeps its TCP connection open: the target
/// hears `ws.leave` when the close frame arrives, not when the server gives up waiting for
/// the TCP end (`close_timeout`, 60 s here).
#[tokio::test]
async fn leave_is_sent_when_the_close_frame_arrives_not_when_tcp_ends() {
    let h = Harness::builder()
        .option("wsrelay.close_timeout", "60s")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = h.raw_upgraded().await;
    joined(&target).await;
    // A masked close frame, code 1000, empty reason; then nothing, TCP stays open.
    let mask = [1u8, 2, 3, 4];
    let payload = 1000u16.to_be_bytes();
    let mut frame = vec![0x88, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    stream.write_all(&frame).await.unwrap();
    let leave = tokio::time::timeout(Duration::from_secs(5), leave_of(&target))
        .await
        .expect("ws.leave within 5 s of the close frame");
    assert_eq!(leave.get("reason"), Some(&Value::from("client_closed")));
    assert_eq!(leave.get("code"), Some(&Value::from(1000)));
    // The echo arrives too.
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..2.min(n)], &[0x88, 2]);
    drop(stream);
}
