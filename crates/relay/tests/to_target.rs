//! docs/spec.md §6: the messages a target gets from its connection.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::Value;
use wsrelay_relay::{ClientEvent, ClientEventKind};

use crate::support::*;

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
    // The client's address comes with the join (docs/spec.md §13); the harness is local.
    assert_eq!(
        event.kind,
        ClientEventKind::Join {
            protocol: None,
            remote_addr: Some("127.0.0.1".into())
        }
    );
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
