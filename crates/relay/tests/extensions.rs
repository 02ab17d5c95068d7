//! docs/spec.md §4, §13: subprotocols and permessage-deflate through the relay.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsrelay_process::Value;

use crate::support::*;

/// Connects with `Sec-WebSocket-Protocol: offers`; returns the client and the protocol the
/// server accepted.
async fn connect_offering(h: &Harness, offers: &str) -> (Client, Option<String>) {
    let mut request = h.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", offers.parse().unwrap());
    let (client, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (client, protocol)
}

/// The `ws.join` payload's `protocol`.
async fn joined_protocol(target: &wsrelay_process::Context) -> Option<String> {
    let (topic, payload) = recv(target).await;
    assert_eq!(topic, "ws.join");
    payload
        .get("protocol")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn the_protocol_named_in_the_header_is_accepted_and_joins() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "protocol": "v1.chat""#);
    let (_client, accepted) = connect_offering(&h, "v2.chat, v1.chat").await;
    assert_eq!(accepted.as_deref(), Some("v1.chat"));
    assert_eq!(joined_protocol(&target).await.as_deref(), Some("v1.chat"));
}

#[tokio::test]
async fn a_protocol_the_client_did_not_offer_is_a_500_and_the_target_is_turned_away() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "protocol": "v3.chat""#);
    let request = format!("{UPGRADE}Sec-WebSocket-Protocol: v2.chat\r\nConnection: close\r\n\r\n");
    let (status, body) = h.raw(&request).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("protocol") && body.contains("v3.chat"),
        "{body}"
    );
    let leave = leave_of(&target).await;
    assert_eq!(leave.get("reason"), Some(&Value::from("not_upgraded")));
}

#[tokio::test]
async fn the_router_list_picks_the_clients_first_listed_offer() {
    let h = Harness::builder()
        .option("wsrelay.subprotocols", "mqtt, graphql-transport-ws")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let (_client, accepted) = connect_offering(&h, "v2.chat, graphql-transport-ws, mqtt").await;
    assert_eq!(accepted.as_deref(), Some("graphql-transport-ws"));
    assert_eq!(
        joined_protocol(&target).await.as_deref(),
        Some("graphql-transport-ws")
    );
    // No offer in the list: no protocol header (the client decides: tungstenite would
    // give up, so this one is raw), and no protocol in ws.join.
    let head = answer_head(&h, "Sec-WebSocket-Protocol: v2.chat\r\n").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    assert_eq!(joined_protocol(&target).await, None);
}

/// The head of the answer to an upgrade request with `extra` headers.
async fn answer_head(h: &Harness, extra: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(format!("{UPGRADE}{extra}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[tokio::test]
async fn compression_is_negotiated_only_when_the_router_turns_it_on() {
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let head = answer_head(&h, offer).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");

    let h = Harness::builder()
        .option("wsrelay.compression", "permessage-deflate")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let head = answer_head(&h, offer).await;
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{head}"
    );
}
