//! The demo chat end to end: real WebSocket clients in rooms.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn join(addr: SocketAddr, room: &str, user: &str) -> Client {
    let url = format!("ws://{addr}/ws/{room}?user={user}");
    let (client, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    client
}

/// The next JSON event, within 5 s.
async fn next_event(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: no event within 5 s",
                    std::thread::current().name().unwrap_or("?")
                )
            })
            .expect("connection open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON event");
        }
    }
}

async fn say(client: &mut Client, text: &str) {
    let frame = json!({ "text": text }).to_string();
    client.send(Message::text(frame)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_in_a_room_chat_and_a_third_room_stays_quiet() {
    let server = Server::start(None);
    let addr = server.addr;

    let mut alice = join(addr, "lobby", "alice").await;
    let ev = next_event(&mut alice).await;
    assert_eq!(ev["event"], "join");
    assert_eq!(ev["user"], "alice");
    assert_eq!(ev["count"], 1);

    let mut bob = join(addr, "lobby", "bob").await;
    for client in [&mut alice, &mut bob] {
        let ev = next_event(client).await;
        assert_eq!(ev["event"], "join");
        assert_eq!(ev["user"], "bob");
        assert_eq!(ev["count"], 2);
        assert_eq!(ev["members"], json!(["alice", "bob"]));
    }

    let mut carol = join(addr, "garden", "carol").await;
    assert_eq!(next_event(&mut carol).await["user"], "carol");

    say(&mut alice, "hi bob").await;
    for client in [&mut alice, &mut bob] {
        let ev = next_event(client).await;
        assert_eq!(
            ev,
            json!({"event": "message", "user": "alice", "text": "hi bob", "room": "lobby"})
        );
    }
    say(&mut bob, "hello alice").await;
    for client in [&mut alice, &mut bob] {
        let ev = next_event(client).await;
        assert_eq!(ev["user"], "bob");
        assert_eq!(ev["text"], "hello alice");
    }

    // Finish the close handshake (read until the server's close and EOF).
    bob.close(None).await.unwrap();
    while let Some(Ok(_)) = bob.next().await {}
    drop(bob);
    let ev = next_event(&mut alice).await;
    assert_eq!(ev["event"], "leave");
    assert_eq!(ev["user"], "bob");
    assert_eq!(ev["count"], 1);

    // Carol's room heard none of it.
    let quiet = tokio::time::timeout(Duration::from_millis(300), carol.next()).await;
    assert!(quiet.is_err(), "carol got {quiet:?}");

    // Shutdown closes the remaining connections with 1001 (docs/spec.md §8).
    // Keep reading while it stops, so the close handshake can complete.
    let stopped = tokio::task::spawn_blocking(move || server.terminate());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), alice.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame").code), 1001);
    while let Some(Ok(_)) = alice.next().await {}
    drop((alice, carol));
    assert_eq!(stopped.await.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_joins_share_one_room() {
    let server = Server::start(None);
    let addr = server.addr;
    let joins: Vec<_> = (0..4)
        .map(|i| tokio::spawn(async move { join(addr, "race", &format!("u{i}")).await }))
        .collect();
    let mut clients = Vec::new();
    for handle in joins {
        clients.push(handle.await.unwrap());
    }
    // Everyone sees the same room: the last join notice counts all four.
    let mut last = clients.pop().unwrap();
    let mut count = 0;
    while count < 4 {
        count = next_event(&mut last).await["count"].as_u64().unwrap();
    }
    say(&mut last, "all here?").await;
    for client in &mut clients {
        loop {
            let ev = next_event(client).await;
            if ev["event"] == "message" {
                assert_eq!(ev["text"], "all here?");
                break;
            }
        }
    }
}
