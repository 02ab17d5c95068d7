//! examples/wippy-chat end to end: JWT-authenticated clients (tokens signed here, HS256),
//! rooms as pg groups, presence announcements from the pg scope's events, and refused tokens.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{repo, Server};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "end-to-end-secret";

/// An HS256 JWT with `claims`, signed with `secret`.
fn sign(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn token(user: &str, room: &str) -> String {
    sign(
        &json!({"sub": user, "room": room, "exp": now() + 300}),
        SECRET,
    )
}

async fn connect(addr: SocketAddr, token: &str) -> Result<Client, WsError> {
    let url = format!("ws://{addr}/ws?token={token}");
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(client, _)| client)
}

/// The next JSON event, within 5 s.
async fn next_event(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("an event within 5 s")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON event");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wippy_chat_authenticates_chats_and_announces_presence() {
    let server = Server::start_with_env(
        Some(&repo("examples/wippy-chat")),
        &[("WSRELAY_APP_JWT_SECRET", SECRET)],
    );
    let addr = server.addr;

    let mut alice = connect(addr, &token("alice", "lobby")).await.unwrap();
    let ev = next_event(&mut alice).await;
    assert_eq!(
        ev,
        json!({"event": "join", "user": "alice", "room": "lobby", "count": 1})
    );
    let mut bob = connect(addr, &token("bob", "lobby")).await.unwrap();
    for client in [&mut alice, &mut bob] {
        let ev = next_event(client).await;
        assert_eq!(
            (&ev["event"], &ev["user"], &ev["count"]),
            (&json!("join"), &json!("bob"), &json!(2))
        );
    }

    let frame = json!({"text": "hi bob"}).to_string();
    alice.send(Message::text(frame)).await.unwrap();
    for client in [&mut alice, &mut bob] {
        assert_eq!(
            next_event(client).await,
            json!({"event": "message", "user": "alice", "room": "lobby", "text": "hi bob"})
        );
    }

    // Bob's connection ends; nobody tells the rooms service but the pg scope's events.
    bob.close(None).await.unwrap();
    while let Some(Ok(_)) = bob.next().await {}
    drop(bob);
    let ev = next_event(&mut alice).await;
    assert_eq!(
        ev,
        json!({"event": "leave", "user": "bob", "room": "lobby", "count": 1})
    );

    // Refused without an upgrade: no token, a token signed with another secret, an expired one.
    let expired = sign(
        &json!({"sub": "eve", "room": "lobby", "exp": now() - 120}),
        SECRET,
    );
    let forged = sign(
        &json!({"sub": "eve", "room": "lobby", "exp": now() + 60}),
        "guess",
    );
    for bad in ["", forged.as_str(), expired.as_str()] {
        match connect(addr, bad).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 401, "{bad:?}"),
            other => panic!("{bad:?}: expected a 401, got {other:?}"),
        }
    }
    // Alice heard none of it.
    let quiet = tokio::time::timeout(Duration::from_millis(300), alice.next()).await;
    assert!(quiet.is_err(), "alice got {quiet:?}");

    alice.close(None).await.unwrap();
    while let Some(Ok(_)) = alice.next().await {}
    assert_eq!(server.terminate().code(), Some(0));
}
