//! permessage-deflate (RFC 7692) and subprotocols against a raw client over real TCP, and
//! shared frames on real byte streams.

use crate::support::data::json;
use crate::support::raw::{deflate, inflate, RawClient};
use crate::support::TestServer;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use tokio::io::AsyncReadExt as _;
use wsrelay_ws::{CloseReason, Compression, Config, Event, Message, SharedFrame, WsConnection};

const OFFER: (&str, &str) = (
    "Sec-WebSocket-Extensions",
    "permessage-deflate; client_max_window_bits",
);

fn compressed_config() -> Config {
    Config::default().compression(Some(Compression::default()))
}

#[tokio::test]
async fn deflate_is_negotiated_with_no_context_takeover_both_ways() {
    let server = TestServer::start(compressed_config()).await;
    let client = RawClient::connect(server.addr, &[OFFER]).await;
    assert_eq!(
        client.header("sec-websocket-extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    // Off by default: the offer is ignored.
    let plain = TestServer::start(Config::default()).await;
    let client = RawClient::connect(plain.addr, &[OFFER]).await;
    assert_eq!(client.header("sec-websocket-extensions"), None);
}

#[tokio::test]
async fn compressed_messages_round_trip_and_long_replies_are_compressed() {
    let mut server = TestServer::start(compressed_config()).await;
    let mut client = RawClient::connect(server.addr, &[OFFER]).await;
    let data = json(64 * 1024);
    client.send_frame(true, true, 0x1, &deflate(&data)).await;
    let reply = client.read_frame().await.unwrap();
    assert!(reply.rsv1 && reply.fin && reply.opcode == 0x1);
    assert!(
        reply.payload.len() < data.len() / 4,
        "{}",
        reply.payload.len()
    );
    assert_eq!(inflate(&reply.payload, 15), data);
    assert_eq!(
        server.next_event().await,
        Event::Message(Message::Text(Bytes::from(data.clone())))
    );

    // A compressed message in three fragments: RSV1 on the first only.
    let compressed = deflate(&data);
    let third = compressed.len() / 3;
    client
        .send_frame(false, true, 0x2, &compressed[..third])
        .await;
    client
        .send_frame(false, false, 0x0, &compressed[third..2 * third])
        .await;
    client
        .send_frame(true, false, 0x0, &compressed[2 * third..])
        .await;
    let reply = client.read_frame().await.unwrap();
    assert!(reply.rsv1 && reply.opcode == 0x2);
    assert_eq!(inflate(&reply.payload, 15), data);

    // Below the threshold (256 bytes) the reply goes uncompressed; so may the client's.
    client.send_frame(true, false, 0x1, b"short").await;
    let reply = client.read_frame().await.unwrap();
    assert_eq!((reply.rsv1, &reply.payload[..]), (false, &b"short"[..]));
}

#[tokio::test]
async fn a_zip_bomb_closes_1009() {
    let mut server = TestServer::start(compressed_config().max_message_size(64 * 1024)).await;
    let mut client = RawClient::connect(server.addr, &[OFFER]).await;
    let bomb = deflate(&vec![0u8; 8 << 20]);
    assert!(
        bomb.len() < 16 * 1024,
        "8 MiB of zeros deflate to {}",
        bomb.len()
    );
    client.send_frame(true, true, 0x2, &bomb).await;
    assert_eq!(client.close_code().await, Some(1009));
    drop(client); // the server drains input until the client closes too
    let closed = server.closed().await;
    assert_eq!(
        (closed.reason, closed.code),
        (CloseReason::MessageTooBig, Some(1009))
    );
}

#[tokio::test]
async fn compression_violations_close_with_their_code() {
    /// A frame to send: (fin, rsv1, opcode, payload).
    type RawFrame = (bool, bool, u8, Vec<u8>);
    // (compression negotiated, frames, expected close code)
    let cases: Vec<(bool, Vec<RawFrame>, u16)> = vec![
        // RSV1 without permessage-deflate.
        (false, vec![(true, true, 0x1, deflate(b"hello"))], 1002),
        // RSV1 on a continuation frame.
        (
            true,
            vec![
                (false, true, 0x1, deflate(b"he")),
                (true, true, 0x0, vec![0]),
            ],
            1002,
        ),
        // Not deflate data.
        (true, vec![(true, true, 0x2, vec![0xff; 16])], 1007),
        // Inflates to text that is not UTF-8.
        (true, vec![(true, true, 0x1, deflate(&[0xce, 0xff]))], 1007),
    ];
    for (i, (negotiate, frames, code)) in cases.into_iter().enumerate() {
        let config = if negotiate {
            compressed_config()
        } else {
            Config::default()
        };
        let server = TestServer::start(config).await;
        let mut client = RawClient::connect(server.addr, &[OFFER]).await;
        for (fin, rsv1, opcode, payload) in frames {
            client.send_frame(fin, rsv1, opcode, &payload).await;
        }
        assert_eq!(client.close_code().await, Some(code), "case {i}");
    }
}

#[tokio::test]
async fn a_smaller_server_window_is_honoured() {
    let server = TestServer::start(compressed_config()).await;
    let offer = (
        "Sec-WebSocket-Extensions",
        "permessage-deflate; server_max_window_bits=9",
    );
    let mut client = RawClient::connect(server.addr, &[offer]).await;
    assert!(client
        .header("sec-websocket-extensions")
        .unwrap()
        .ends_with("server_max_window_bits=9"));
    let data = json(20_000);
    client.send_frame(true, true, 0x1, &deflate(&data)).await;
    let reply = client.read_frame().await.unwrap();
    // A 512-byte window inflater reads it: no back-reference reaches further.
    assert_eq!(inflate(&reply.payload, 9), data);
}

#[tokio::test]
async fn subprotocol_is_accepted_only_when_offered() {
    let mut request = http::Request::get("/")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "v2.chat, v1.chat")
        .body(())
        .unwrap();
    let handshake = wsrelay_ws::handshake(&mut request, Config::default()).unwrap();
    assert_eq!(handshake.request().protocols(), ["v2.chat", "v1.chat"]);
    assert_eq!(
        handshake.request().choose_protocol(&["v1.chat", "v2.chat"]),
        Some("v2.chat"),
        "the client's preference wins"
    );
    let err = wsrelay_ws::handshake(&mut request, Config::default())
        .unwrap()
        .accept::<()>(Some("v3.chat"))
        .unwrap_err();
    assert_eq!(err.offered, ["v2.chat", "v1.chat"]);
    let (response, _pending) = handshake.accept::<()>(Some("v1.chat")).unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1.chat");
}

/// Negotiates `offer` against the default compression, as a handshake would.
fn negotiated(offer: &str) -> Option<wsrelay_ws::Deflate> {
    let mut headers = HeaderMap::new();
    headers.insert(
        SEC_WEBSOCKET_EXTENSIONS,
        HeaderValue::from_str(offer).unwrap(),
    );
    Compression::default().negotiate(&headers)
}

/// Reads one unmasked frame's (rsv1, payload) from a byte stream.
async fn read_server_frame(stream: &mut tokio::io::DuplexStream) -> (bool, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.unwrap();
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x40 != 0, payload)
}

#[tokio::test]
async fn a_shared_frame_is_compressed_once_and_fits_each_connection() {
    let data = json(4096);
    let frame = SharedFrame::text(data.clone(), Some(&Compression::default())).unwrap();
    assert_eq!(frame.compressed_window_bits(), Some(15));
    // (negotiated deflate, expect the compressed payload)
    let cases = [
        (negotiated("permessage-deflate"), true),
        (None, false),
        // A 512-byte window cannot hold a message compressed with a 32 KiB one.
        (
            negotiated("permessage-deflate; server_max_window_bits=9"),
            false,
        ),
    ];
    let mut compressed_payloads = Vec::new();
    for (deflate, compressed) in cases {
        let (server_io, mut client_io) = tokio::io::duplex(1 << 20);
        let mut conn =
            WsConnection::with_parts(server_io, &Config::default(), deflate, Bytes::new());
        conn.feed_shared(&frame).await.unwrap();
        conn.flush().await.unwrap();
        let (rsv1, payload) = read_server_frame(&mut client_io).await;
        assert_eq!(rsv1, compressed);
        if compressed {
            assert_eq!(inflate(&payload, 15), data);
            compressed_payloads.push(payload);
        } else {
            assert_eq!(payload, data);
        }
    }
    let (_, shared) = frame.payload_for(negotiated("permessage-deflate").as_ref());
    assert_eq!(compressed_payloads, [shared.to_vec()]);
    assert!(SharedFrame::text(vec![0xff], None).is_err());
}
