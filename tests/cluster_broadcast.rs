//! End to end: `examples/broadcast` and the chat demo (`examples/chat`), unchanged, on two
//! `wsrelay run` nodes that join the cluster from the environment alone (`WSRELAY_NODE`,
//! `WSRELAY_NATS_URLS`; no `cluster` entry).
//!
//! Broadcast: each node's room process joins its own connections to the group `members`; the
//! group spans both nodes, so receivers on either node get every frame of a sender on either
//! node, in each sender's order. A third node runs an observer app with the same scope whose
//! HTTP handler reports the group's size; after node b is SIGKILLed, b's members leave the
//! group there.
//!
//! Chat: a room has a manager on each node with clients in it; users on either node read
//! each other's messages in order, every member list converges to the whole room, and the
//! users of a lost node leave the lists on the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::nats::{free_port, nats, Nats};
use crate::support::ops::{body_of, get, status_of};
use crate::support::NodeProc;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The observer: an app of the same scope whose `GET /` answers with the size of the group
/// `members` (all nodes) and of its local part, `all/local`. Its gateway's address is
/// replaced by `--listen`.
fn observer_app_yaml() -> String {
    r#"namespace: broadcast
entries:
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:9005"
  - name: root
    kind: http.router
    meta: { server: gateway }
    prefix: /
  - name: count
    kind: function.lua
    source: file://count.lua
    method: handler
    modules: [http, pg]
  - name: count_endpoint
    kind: http.endpoint
    meta: { router: root }
    method: GET
    path: /
    func: count
  - name: rooms
    kind: pg.scope
"#
    .to_owned()
}

const COUNT_LUA: &str = r#"
local http = require("http")
local pg = require("pg")
local function handler()
    local room = assert(pg.open("broadcast:rooms"))
    local all = #room:get_members("members")
    local here = #room:get_local_members("members")
    http.response():write(all .. "/" .. here)
end
return { handler = handler }
"#;

const SECRET: &str = "the broadcast cluster's shared secret\n";

/// Starts node `node` of `app` on `port`, first connected to NATS server `server`.
fn start_node(
    app: &Path,
    node: &str,
    port: u16,
    nats: &Nats,
    server: usize,
    secret: &Path,
    log: &Path,
) -> NodeProc {
    let log = std::fs::File::create(log.join(format!("{node}.log"))).unwrap();
    NodeProc::spawn(
        Command::new(env!("CARGO_BIN_EXE_wsrelay"))
            .arg("run")
            .arg(app)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("WSRELAY_NODE", node)
            .env(
                "WSRELAY_NATS_URLS",
                format!("{},{}", nats.url(server), nats.url(1)),
            )
            .env(
                "WSRELAY_CLUSTER_CREDENTIALS",
                nats.dir.join("creds").join(node),
            )
            .env("WSRELAY_CLUSTER_SECRET_FILE", secret)
            .env("WSRELAY_CLUSTER_REPLICAS", "3")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// Writes the cluster secret's file, once per test before any node starts: rewriting it for
/// each node truncated it under a node that was reading it (`cannot join the cluster: ...
/// 0 bytes`).
fn write_secret(nats: &Nats) -> PathBuf {
    let file = nats.dir.join("broadcast.secret");
    std::fs::write(&file, SECRET).unwrap();
    file
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, retrying while the node starts.
async fn connect(url: &str) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            return ws;
        }
        assert!(Instant::now() < deadline, "cannot connect to {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client whose received text frames are collected by a task.
struct Client {
    name: String,
    sink: futures_util::stream::SplitSink<Ws, Message>,
    got: Arc<Mutex<Vec<String>>>,
}

async fn client(url: &str, name: String) -> Client {
    let (sink, mut stream) = connect(url).await.split();
    let got = Arc::new(Mutex::new(Vec::new()));
    let into = got.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(t) = msg {
                into.lock().unwrap().push(t.to_string());
            }
        }
    });
    Client { name, sink, got }
}

/// Asks the observer on `port` for "all/local" members of the group.
async fn group_size(port: u16) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = tokio::time::timeout(Duration::from_secs(5), get(addr, "/", ""))
        .await
        .expect("an answer from the observer");
    assert_eq!(status_of(&answer), 200, "{answer}");
    body_of(&answer).to_owned()
}

async fn wait_for_size(observer: u16, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let size = group_size(observer).await;
        if size == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "group size {size}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn broadcast_example_spans_two_nodes_joined_from_the_environment() {
    let Some(nats) = nats() else { return };
    let base = std::env::temp_dir().join(format!("wsr-e2e-broadcast-{}", std::process::id()));
    std::fs::create_dir_all(base.join("observer")).unwrap();
    let observer_app = base.join("observer");
    std::fs::write(observer_app.join("app.yaml"), observer_app_yaml()).unwrap();
    std::fs::write(observer_app.join("count.lua"), COUNT_LUA).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broadcast");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let secret = write_secret(&nats);
    let _a = start_node(&example, "a", pa, &nats, 1, &secret, &base);
    let b = start_node(&example, "b", pb, &nats, 2, &secret, &base);
    let _c = start_node(&observer_app, "c", pc, &nats, 3, &secret, &base);
    let rt = crate::support::rt();
    rt.block_on(async {
        // The observer's node serves once it accepts connections.
        let observer = pc;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", observer))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the observer's node does not listen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut clients = Vec::new();
        for (node, port) in [("a", pa), ("b", pb)] {
            for i in 0..3 {
                // The first client of each node is its sender (a member too).
                let query = if i == 0 { "?sender=1" } else { "" };
                let url = format!("ws://127.0.0.1:{port}/{query}");
                clients.push(client(&url, format!("{node}{i}")).await);
            }
        }
        // Membership reaches the observer's node: 6 members, none of them local there.
        let took = wait_for_size(observer, "6/0", Duration::from_secs(20)).await;
        eprintln!("group of 6 members on two nodes seen from a third after {took:?}");

        // Both senders' frames reach all six clients before the measured run.
        for (sender, tag) in [(0, "a"), (3, "b")] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                clients[sender]
                    .sink
                    .send(Message::text(format!("sync-{tag}")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let all = clients.iter().all(|c| {
                    c.got
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|t| *t == format!("sync-{tag}"))
                });
                if all {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sync-{tag} never reached everyone"
                );
            }
        }

        const N: usize = 300;
        for i in 0..N {
            for (sender, tag) in [(0, "a"), (3, "b")] {
                clients[sender]
                    .sink
                    .send(Message::text(format!("{tag}:{i}")))
                    .await
                    .unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for c in &clients {
            loop {
                let (a, b) = {
                    let got = c.got.lock().unwrap();
                    let of = |tag: &str| -> Vec<usize> {
                        got.iter()
                            .filter_map(|t| t.strip_prefix(tag).and_then(|n| n.parse().ok()))
                            .collect()
                    };
                    (of("a:"), of("b:"))
                };
                if a.len() >= N && b.len() >= N {
                    let want: Vec<usize> = (0..N).collect();
                    assert_eq!(a, want, "{}: sender a's frames in order, once each", c.name);
                    assert_eq!(b, want, "{}: sender b's frames in order, once each", c.name);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} got {} of a's and {} of b's {N} frames",
                    c.name,
                    a.len(),
                    b.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // Node b is lost: its three members leave the group on the other nodes.
        let killed = Instant::now();
        drop(b);
        let took = wait_for_size(observer, "3/0", Duration::from_secs(10)).await;
        eprintln!(
            "SIGKILL of node b: its members gone from the group after {:?}",
            killed.elapsed().max(took)
        );
        // And they stay gone; a's members still get a's frames.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(group_size(observer).await, "3/0");
        clients[0].sink.send(Message::text("after")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &clients[..3] {
            while !c.got.lock().unwrap().iter().any(|t| t == "after") {
                assert!(
                    Instant::now() < deadline,
                    "{} missed a frame after the loss",
                    c.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let _ = std::fs::remove_dir_all(&base);
}

/// The JSON events a chat client has received so far.
fn events(c: &Client) -> Vec<serde_json::Value> {
    c.got
        .lock()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_str(t).expect("a JSON event"))
        .collect()
}

/// Waits until `c`'s latest notice (join, leave or members) lists exactly `want`.
async fn wait_for_members(c: &Client, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let latest = events(c)
            .into_iter()
            .rev()
            .find(|ev| ev.get("members").is_some());
        if latest.as_ref().map(|ev| &ev["members"]) == Some(&serde_json::json!(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: members {:?}, expected {want:?}",
            c.name,
            latest.map(|ev| ev["members"].clone())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn chat_example_spans_two_nodes_joined_from_the_environment() {
    let Some(nats) = nats() else { return };
    let base = std::env::temp_dir().join(format!("wsr-e2e-chat-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chat");
    let (pa, pb) = (free_port(), free_port());
    let secret = write_secret(&nats);
    let _a = start_node(&example, "a", pa, &nats, 1, &secret, &base);
    let b = start_node(&example, "b", pb, &nats, 2, &secret, &base);
    let rt = crate::support::rt();
    rt.block_on(async {
        let mut alice = client(
            &format!("ws://127.0.0.1:{pa}/ws/lobby?user=alice"),
            "alice".into(),
        )
        .await;
        wait_for_members(&alice, &["alice"], Duration::from_secs(10)).await;
        let mut bob = client(
            &format!("ws://127.0.0.1:{pb}/ws/lobby?user=bob"),
            "bob".into(),
        )
        .await;
        // Each node's manager learns the other's users: both lists become the whole room.
        for c in [&alice, &bob] {
            wait_for_members(c, &["alice", "bob"], Duration::from_secs(20)).await;
        }

        // Both ways, in each sender's order, once each.
        const N: usize = 50;
        for i in 0..N {
            for (c, tag) in [(&mut alice, "a"), (&mut bob, "b")] {
                let text = serde_json::json!({ "text": format!("{tag}:{i}") }).to_string();
                c.sink.send(Message::text(text)).await.unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for c in [&alice, &bob] {
            loop {
                let texts: Vec<(String, String)> = events(c)
                    .into_iter()
                    .filter(|ev| ev["event"] == "message")
                    .map(|ev| {
                        let user = ev["user"].as_str().unwrap_or_default().to_owned();
                        let text = ev["text"].as_str().unwrap_or_default().to_owned();
                        (user, text)
                    })
                    .collect();
                let of = |user: &str| -> Vec<String> {
                    texts
                        .iter()
                        .filter(|(u, _)| u == user)
                        .map(|(_, t)| t.clone())
                        .collect()
                };
                let (from_a, from_b) = (of("alice"), of("bob"));
                if from_a.len() >= N && from_b.len() >= N {
                    let want = |tag: &str| (0..N).map(|i| format!("{tag}:{i}")).collect::<Vec<_>>();
                    assert_eq!(from_a, want("a"), "{}: alice's messages", c.name);
                    assert_eq!(from_b, want("b"), "{}: bob's messages", c.name);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} got {} of alice's and {} of bob's {N} messages",
                    c.name,
                    from_a.len(),
                    from_b.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // Node b is lost with bob's connection: bob leaves alice's list.
        drop(b);
        wait_for_members(&alice, &["alice"], Duration::from_secs(15)).await;
    });
    let _ = std::fs::remove_dir_all(&base);
}
