//! The relay contract end to end (SPEC §3–§9): one test per row of its tables, a real server,
//! a real client (tokio-tungstenite) and real processes as targets.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{Event, Map, Value};
use wsrelay_relay::{ClientEvent, ClientEventKind, Outgoing};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

// ===== §3: from handler to WebSocket =====

#[tokio::test]
async fn without_the_header_the_response_passes_through() {
    let h = Harness::start().await;
    h.answer_with(Answer {
        relay_header: None,
        body: Some("plain".into()),
    });
    let (status, body) = h
        .raw("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!((status, body.as_str()), (200, "plain"));
    let (status, _) = h.raw(&format!("{UPGRADE}Connection: close\r\n\r\n")).await;
    assert_eq!(
        status, 200,
        "an upgrade request without X-WS-Relay is not upgraded"
    );
}

#[tokio::test]
async fn foreign_origin_is_refused_before_the_handler_runs() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let before = h.node.process_count();
    let err = h
        .connect_with_origin("https://evil.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(
        h.handler_runs.load(Ordering::SeqCst),
        0,
        "the handler must not run"
    );
    assert_eq!(h.node.process_count(), before, "nothing spawned");
    // Same origin passes.
    let origin = format!("http://{}", h.addr);
    h.connect_with_origin(&origin).await.unwrap();
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn allowed_origins_option_is_applied() {
    let h = Harness::builder()
        .option("wsrelay.allowed.origins", "https://*.example.com")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    h.connect_with_origin("https://app.example.com")
        .await
        .unwrap();
    assert!(h
        .connect_with_origin(&format!("http://{}", h.addr))
        .await
        .is_err());
}

#[tokio::test]
async fn not_an_upgrade_request_gets_426() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let (status, body) = h
        .raw("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 426);
    assert!(body.contains("upgrade"), "{body}");
}

#[tokio::test]
async fn bad_version_or_key_gets_400() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let bad_version = UPGRADE.replace("Version: 13", "Version: 8");
    let (status, body) = h.raw(&format!("{bad_version}\r\n")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Version"), "{body}");
    let bad_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    let (status, body) = h.raw(&format!("{bad_key}\r\n")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
}

#[tokio::test]
async fn a_handler_that_wrote_a_body_gets_500() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.answer_with(Answer {
        relay_header: Some(format!(r#"{{"target_pid":"{}"}}"#, target.pid())),
        body: Some("oops".into()),
    });
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 500);
    assert!(body.contains("body"), "{body}");
}

#[tokio::test]
async fn bad_header_values_get_500_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        ("not json", "JSON"),
        ("[1,2]", "object"),
        ("{}", "target_pid"),
        (r#"{"target_pid": 1}"#, "target_pid"),
        (r#"{"target_pid": "{bad"}"#, "target_pid"),
        (
            r#"{"target_pid": "x", "heartbeat_interval": "0s"}"#,
            "heartbeat_interval",
        ),
        (
            r#"{"target_pid": "x", "heartbeat_interval": "later"}"#,
            "heartbeat_interval",
        ),
        (r#"{"target_pid": "x", "metadata": 5}"#, "metadata"),
        (
            r#"{"target_pid": "x", "message_topic": "@x"}"#,
            "message_topic",
        ),
    ];
    for (header, field) in cases {
        h.answer_with(Answer {
            relay_header: Some(header.into()),
            body: None,
        });
        let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
        assert_eq!(status, 500, "{header}");
        assert!(body.contains(field), "{header}: {body}");
    }
}

#[tokio::test]
async fn a_dead_target_gets_503_naming_the_pid() {
    let h = Harness::start().await;
    let (target, guard) = h.probe();
    let pid = target.pid().clone();
    guard.exit(());
    h.relay_to(pid.as_str(), "");
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 503);
    assert!(body.contains(pid.as_str()), "{body}");
    h.relay_to("no-such-name", "");
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 503);
    assert!(body.contains("no-such-name"), "{body}");
}

#[tokio::test]
async fn join_comes_first_with_metadata_and_a_pid_on_the_server_host() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "metadata": {"user_id": "u1"}"#);
    let mut client = h.connect().await;
    send_text(&mut client, "hello").await;
    let (topic, join) = recv(&target).await;
    assert_eq!(topic, "ws.join");
    let client_pid = join.get("client_pid").unwrap().as_str().unwrap().to_owned();
    assert!(client_pid.starts_with("{app:gateway|0x"), "{client_pid}");
    assert_eq!(
        join.get("metadata").unwrap().get("user_id"),
        Some(&Value::from("u1"))
    );
    let (topic, msg) = recv(&target).await;
    assert_eq!(topic, "ws.message");
    assert_eq!(msg.get("data"), Some(&Value::from("hello")));
}

#[tokio::test]
async fn a_registered_name_can_be_the_target() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    target.register("hub").unwrap();
    h.relay_to("hub", "");
    let _client = h.connect().await;
    joined(&target).await;
}

// ===== §6: messages to the target =====

#[tokio::test]
async fn text_and_binary_frames_reach_the_target_with_metadata() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(
        target.pid().as_str(),
        r#", "message_topic": "chat.in", "metadata": {"room": "r1"}"#,
    );
    let mut client = h.connect().await;
    let client_pid = joined(&target).await;
    send_text(&mut client, "héllo").await;
    client.send(T::binary(vec![0u8, 255, 1])).await.unwrap();
    let (topic, text) = recv(&target).await;
    assert_eq!(topic, "chat.in");
    assert_eq!(text.get("type"), Some(&Value::from("text")));
    assert_eq!(text.get("data"), Some(&Value::from("héllo")));
    assert_eq!(
        text.get("client_pid"),
        Some(&Value::from(client_pid.as_str()))
    );
    assert_eq!(
        text.get("metadata").unwrap().get("room"),
        Some(&Value::from("r1"))
    );
    let (_, binary) = recv(&target).await;
    assert_eq!(binary.get("type"), Some(&Value::from("binary")));
    assert_eq!(
        binary.get("data").unwrap().as_bytes(),
        Some(&[0u8, 255, 1][..])
    );
}

#[tokio::test]
async fn rust_targets_read_events_without_conversion() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    let join = tokio::time::timeout(Duration::from_secs(5), target.recv())
        .await
        .unwrap();
    let event = join
        .payload()
        .downcast_ref::<ClientEvent>()
        .expect("opaque ClientEvent");
    assert_eq!(event.kind, ClientEventKind::Join);
    send_text(&mut client, "x").await;
    let msg = tokio::time::timeout(Duration::from_secs(5), target.recv())
        .await
        .unwrap();
    let event = msg.payload().downcast_ref::<ClientEvent>().unwrap();
    assert!(
        matches!(&event.kind, ClientEventKind::Message { text: true, data } if &data[..] == b"x")
    );
}

#[tokio::test(start_paused = false)]
async fn heartbeats_carry_uptime_and_message_count() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(
        target.pid().as_str(),
        r#", "heartbeat_interval": "100ms", "metadata": {"k": 1}"#,
    );
    let mut client = h.connect().await;
    joined(&target).await;
    send_text(&mut client, "a").await;
    send_text(&mut client, "b").await;
    let mut beats = 0;
    while beats < 2 {
        let (topic, payload) = recv(&target).await;
        if topic == "ws.heartbeat" {
            beats += 1;
            assert!(
                payload.get("uptime").unwrap().as_i64().is_some()
                    || matches!(payload.get("uptime"), Some(Value::Float(_)))
            );
            assert!(payload.get("client_pid").is_some());
            assert_eq!(
                payload.get("metadata").unwrap().get("k"),
                Some(&Value::Int(1))
            );
            if beats == 2 {
                assert_eq!(payload.get("message_count"), Some(&Value::Int(2)));
            }
        }
    }
}

async fn leave_of(target: &wsrelay_process::Context) -> Value {
    loop {
        let (topic, payload) = recv(target).await;
        if topic == "ws.leave" {
            return payload;
        }
    }
}

#[tokio::test]
async fn leave_client_closed_with_the_code() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "metadata": {"u": "1"}"#);
    let client = h.connect().await;
    joined(&target).await;
    client_close(
        client,
        Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "bye".into(),
        }),
    )
    .await;
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("client_closed")));
    assert_eq!(leave.get("code"), Some(&Value::Int(4001)));
    assert_eq!(
        leave.get("metadata").unwrap().get("u"),
        Some(&Value::from("1"))
    );
}

#[tokio::test]
async fn leave_connection_lost_when_tcp_drops() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    joined(&target).await;
    drop(client);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("connection_lost")));
}

#[tokio::test]
async fn leave_protocol_error_on_invalid_utf8() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    joined(&target).await;
    // A text frame that is not UTF-8, written raw (tungstenite refuses to build one).
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    let frame = Frame::from_payload(
        FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        },
        vec![0xff, 0xfe].into(),
    );
    client.send(T::Frame(frame)).await.unwrap();
    let (code, _) = close_of(client).await;
    assert_eq!(code, 1007);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("protocol_error")));
    assert_eq!(leave.get("code"), Some(&Value::Int(1007)));
}

#[tokio::test]
async fn leave_message_too_big_with_1009() {
    let h = Harness::builder()
        .option("wsrelay.max_message_size", "1KiB")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    joined(&target).await;
    send_text(&mut client, &"x".repeat(2048)).await;
    let (code, _) = close_of(client).await;
    assert_eq!(code, 1009);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("message_too_big")));
}

// ===== §7: messages the connection accepts =====

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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    let client_pid = joined(&target).await;
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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    let client_pid = joined(&target).await;
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
        seen.push(
            payload
                .get("data")
                .unwrap()
                .as_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
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
        seen.push(
            payload
                .get("data")
                .unwrap()
                .as_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
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

// ===== §8: lifetime and process semantics =====

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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    let client_pid = joined(&target).await;
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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await;
    let client_pid = joined(&target).await;
    h.node
        .kill(&client_pid, wsrelay_process::ExitResult::error("shutdown"))
        .unwrap();
    assert_eq!(close_of(client).await.0, 1001);
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("shutdown")));
}

// ===== §9: limits =====

#[tokio::test]
async fn a_client_that_does_not_read_is_a_slow_consumer() {
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "64KiB")
        .option("wsrelay.write_timeout", "500ms")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await; // never read
    let client_pid = joined(&target).await;
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
        got.push(
            payload
                .get("data")
                .unwrap()
                .as_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(format!("{UPGRADE}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut client = h.connect().await;
    let client_pid = joined(&target).await;
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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await; // never read: the socket buffers fill and writes block
    let client_pid = joined(&target).await;
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
    let started = std::time::Instant::now();
    target.terminate(&client_pid).unwrap();
    let Event::Exit { result, .. } = event(&target).await else {
        panic!()
    };
    assert_eq!(result.error_text(), Some("terminated"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
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
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let client = h.connect().await; // never read
    let client_pid = joined(&target).await;
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(10) {
        let frame = Value::Opaque(std::sync::Arc::new(Outgoing::binary(chunk.clone())));
        if target.send(&client_pid, "ws.send", frame).is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("slow_consumer")));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} ({sent} frames accepted)",
        started.elapsed()
    );
    drop(client);
}
