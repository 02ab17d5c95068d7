//! `WsConnection` against an independent client (tokio-tungstenite) over real TCP.

use crate::support;

use std::time::Duration;

use crate::support::{expect_close, TestServer};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_ws::{CloseReason, Config, Event, Message};

fn raw(opcode: OpCode, is_final: bool, payload: impl Into<Bytes>) -> T {
    let header = FrameHeader {
        is_final,
        opcode,
        ..FrameHeader::default()
    };
    T::Frame(Frame::from_payload(header, payload.into()))
}

async fn next_data(client: &mut support::Client) -> T {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("reply within 5s")
            .expect("stream open")
            .expect("no client error");
        if message.is_text() || message.is_binary() || message.is_pong() {
            return message;
        }
    }
}

#[tokio::test]
async fn echoes_text_and_binary() {
    let mut server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    client.send(T::text("héllo")).await.unwrap();
    assert_eq!(next_data(&mut client).await, T::text("héllo"));
    client.send(T::binary(vec![0u8, 255, 1])).await.unwrap();
    assert_eq!(next_data(&mut client).await, T::binary(vec![0u8, 255, 1]));
    assert_eq!(
        server.next_event().await,
        Event::Message(Message::text("héllo"))
    );
    assert_eq!(
        server.next_event().await,
        Event::Message(Message::binary(vec![0u8, 255, 1]))
    );
}

/// `feed_text_now`: text that is UTF-8 by type reaches the client as a text frame, short or
/// split into frames.
#[tokio::test]
async fn feed_text_now_sends_string_text() {
    let server = TestServer::start(Config::default().frame_size(256)).await;
    let mut client = server.client().await;
    let long = "é".repeat(600);
    for text in ["héllo", long.as_str()] {
        client
            .send(T::text(format!("feed_text {text}")))
            .await
            .unwrap();
        assert_eq!(next_data(&mut client).await, T::text(text));
    }
}

#[tokio::test]
async fn reassembles_fragments_with_interleaved_ping() {
    let mut server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    client
        .send(raw(OpCode::Data(Data::Text), false, "frag"))
        .await
        .unwrap();
    client
        .send(T::Ping(Bytes::from_static(b"mid")))
        .await
        .unwrap();
    client
        .send(raw(OpCode::Data(Data::Continue), false, "men"))
        .await
        .unwrap();
    client
        .send(raw(OpCode::Data(Data::Continue), true, "ted"))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut client).await,
        T::Pong(Bytes::from_static(b"mid"))
    );
    assert_eq!(next_data(&mut client).await, T::text("fragmented"));
    assert_eq!(
        server.next_event().await,
        Event::Message(Message::text("fragmented"))
    );
}

#[tokio::test]
async fn large_message_survives_select_cancellation() {
    // The server loop cancels next_event every millisecond; a 1 MiB message arriving in many
    // reads must still come back whole.
    let server = TestServer::start(Config::default().max_message_size(2 << 20)).await;
    let mut client = server.client().await;
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    client.send(T::binary(payload.clone())).await.unwrap();
    assert_eq!(next_data(&mut client).await, T::binary(payload));
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    client
        .send(T::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut client).await,
        T::Pong(Bytes::from_static(b"are you there"))
    );
}

#[tokio::test]
async fn server_ping_reports_pong() {
    let mut server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    client.send(T::text("ping")).await.unwrap();
    // tungstenite answers the ping while we wait for more input.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} });
    loop {
        if let Event::Pong(payload) = server.next_event().await {
            assert_eq!(payload, Bytes::from_static(b"server-ping"));
            break;
        }
    }
    reader.abort();
}

#[tokio::test]
async fn too_big_closes_1009() {
    let mut server = TestServer::start(Config::default().max_message_size(1024)).await;
    let mut client = server.client().await;
    client.send(T::binary(vec![7u8; 2048])).await.unwrap();
    assert_eq!(expect_close(&mut client).await.0, 1009);
    drop(client);
    let closed = server.closed().await;
    assert_eq!(closed.reason, CloseReason::MessageTooBig);
    assert_eq!(closed.code, Some(1009));
}

#[tokio::test]
async fn too_big_across_fragments_closes_1009() {
    let mut server = TestServer::start(Config::default().max_message_size(1024)).await;
    let mut client = server.client().await;
    client
        .send(raw(OpCode::Data(Data::Binary), false, vec![1u8; 600]))
        .await
        .unwrap();
    for _ in 0..2 {
        client
            .send(raw(OpCode::Data(Data::Continue), false, vec![1u8; 600]))
            .await
            .ok();
    }
    assert_eq!(expect_close(&mut client).await.0, 1009);
    drop(client);
    assert_eq!(server.closed().await.reason, CloseReason::MessageTooBig);
}

#[tokio::test]
async fn bad_utf8_closes_1007() {
    let mut server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    client
        .send(raw(OpCode::Data(Data::Text), true, vec![0xce, 0xba, 0xff]))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut client).await.0, 1007);
    drop(client);
    let closed = server.closed().await;
    assert_eq!(
        (closed.reason, closed.code),
        (CloseReason::ProtocolError, Some(1007))
    );
}

#[tokio::test]
async fn client_close_is_echoed_and_reported() {
    let mut server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    let frame = CloseFrame {
        code: CloseCode::from(4001),
        reason: "bye".into(),
    };
    client.send(T::Close(Some(frame))).await.unwrap();
    assert_eq!(expect_close(&mut client).await.0, 4001);
    drop(client);
    let closed = server.closed().await;
    assert_eq!(closed.reason, CloseReason::ClientClosed);
    assert_eq!(closed.code, Some(4001));
    assert_eq!(closed.detail, "bye");
}

#[tokio::test]
async fn invalid_close_frames_close_1002_or_1007() {
    // (payload of the client's close frame, expected close code from the server)
    let cases: [(&[u8], u16); 5] = [
        (&[0x03], 1002),                   // length 1
        (&[0x03, 0xed], 1002),             // code 1005 may not be sent
        (&[0x03, 0xe7], 1002),             // 999: not a close code
        (&[0x0b, 0xb8, 0xff, 0xfe], 1007), // 3000 with a reason that is not UTF-8
        (&[0x03, 0xe8], 1000),             // valid: echoed
    ];
    for (payload, expected) in cases {
        let server = TestServer::start(Config::default()).await;
        let mut client = server.client().await;
        client
            .send(raw(OpCode::Control(Control::Close), true, payload.to_vec()))
            .await
            .unwrap();
        assert_eq!(
            expect_close(&mut client).await.0,
            expected,
            "payload {payload:?}"
        );
    }
    // Over 125 bytes: a control frame that is too long.
    let server = TestServer::start(Config::default()).await;
    let mut client = server.client().await;
    let mut payload = vec![0x03, 0xe8];
    payload.extend(std::iter::repeat_n(b'a', 124));
    client
        .send(raw(OpCode::Control(Control::Close), true, payload))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut client).await.0, 1002);
}

#[tokio::test]
async fn server_close_maps_code_and_truncates_reason() {
    let long = "é".repeat(100);
    // (requested code, expected code on the wire)
    for (code, expected) in [(4999, 4999), (1011, 1011), (1005, 1000), (2000, 1000)] {
        let mut server = TestServer::start(Config::default()).await;
        let mut client = server.client().await;
        client
            .send(T::text(format!("close {code} {long}")))
            .await
            .unwrap();
        let (wire_code, reason) = expect_close(&mut client).await;
        assert_eq!(wire_code, expected);
        assert_eq!(reason.len(), 122);
        assert!(long.starts_with(&reason));
        // tungstenite answers the close; the server then reports a clean server close.
        while let Some(Ok(_)) = client.next().await {}
        drop(client);
        let closed = server.closed().await;
        assert_eq!(
            (closed.reason, closed.code),
            (CloseReason::ServerClosed, Some(expected))
        );
    }
}

#[tokio::test]
async fn server_close_is_bounded_when_peer_never_answers() {
    let mut server =
        TestServer::start(Config::default().close_timeout(Duration::from_millis(200))).await;
    let mut client = server.client().await;
    client.send(T::text("close 1000 done")).await.unwrap();
    // The client does not read, so it never answers the close: the server gives up after
    // close_timeout and shuts TCP down.
    let closed = tokio::time::timeout(Duration::from_secs(3), server.closed())
        .await
        .unwrap();
    assert_eq!(closed.reason, CloseReason::ServerClosed);
    drop(client);
}

#[tokio::test]
async fn connection_lost_without_close_frame() {
    let mut server = TestServer::start(Config::default()).await;
    let client = server.client().await;
    drop(client); // TCP FIN without a close frame
    let closed = server.closed().await;
    assert_eq!(closed.reason, CloseReason::ConnectionLost);
    assert_eq!(closed.code, None);
}
