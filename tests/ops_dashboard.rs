//! The live dashboard through a real app (`App::start`, real sockets, real WebSocket
//! clients): the page and its assets carry a strict CSP, its event stream needs the admin
//! token, a snapshot's `connections` follows clients connecting and disconnecting, the
//! connection listing carries peer, route and target, and the operator actions (close with a
//! code, terminate) reach real clients and processes.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as T;

use crate::support::ops::{
    body_of, close_frame, get, header_of, raw, status_of, ws, TestApp, ADMIN, ADMIN_AUTH,
};

/// An open `/admin/events` stream, read one snapshot at a time.
struct Events {
    lines: BufReader<TcpStream>,
}

impl Events {
    /// Opens the stream; `Err(answer head)` when it is refused.
    async fn open(ops: SocketAddr, auth: &str) -> Result<Events, String> {
        let mut stream = TcpStream::connect(ops).await.unwrap();
        let request = format!("GET /admin/events HTTP/1.1\r\nHost: {ops}\r\n{auth}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), lines.read_line(&mut line))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            head.push_str(&line);
            if n == 0 || line == "\r\n" {
                break;
            }
        }
        if status_of(&head) != 200 {
            return Err(head);
        }
        assert_eq!(header_of(&head, "content-type"), Some("text/event-stream"));
        Ok(Events { lines })
    }

    /// The next snapshot (chunked framing lines are skipped: only `data:` lines count).
    async fn next(&mut self) -> serde_json::Value {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), self.lines.read_line(&mut line))
                .await
                .expect("a snapshot within 5 s")
                .unwrap();
            assert!(n > 0, "the stream ended");
            if let Some(json) = line.trim_end().strip_prefix("data: ") {
                return serde_json::from_str(json).unwrap();
            }
        }
    }

    /// Reads snapshots until `connections` is `want` (a snapshot a second); fails the test if
    /// none says so within 10 s.
    async fn until_connections(&mut self, want: u64) {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while self.next().await["connections"] != want {}
        })
        .await;
        assert!(found.is_ok(), "no snapshot with {want} connections in 10 s");
    }
}

fn encode(pid: &str) -> String {
    pid.replace('{', "%7B")
        .replace('}', "%7D")
        .replace('|', "%7C")
}

async fn post(ops: SocketAddr, path: &str, auth: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw(ops, request.as_bytes()).await
}

#[tokio::test]
async fn the_page_and_its_assets_carry_a_strict_csp() {
    let t = TestApp::start(ADMIN, false).await;
    let ops = t.ops();
    let page = get(ops, "/dashboard", "").await;
    assert_eq!(status_of(&page), 200, "{page}");
    let csp = header_of(&page, "content-security-policy").expect("a CSP header");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(!csp.contains("http"), "no other origin: {csp}");
    let body = body_of(&page);
    assert!(body.contains(r#"name="token""#), "a login field");
    assert!(body.contains(r#"data-metric="connections""#));
    assert!(!body.contains("<script>"), "no inline script");
    for (path, kind) in [
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let answer = get(ops, path, "").await;
        assert_eq!(status_of(&answer), 200, "{path}");
        assert!(header_of(&answer, "content-type")
            .unwrap()
            .starts_with(kind));
        assert!(
            header_of(&answer, "content-security-policy").is_some(),
            "{path}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn without_admin_there_is_no_dashboard() {
    let t = TestApp::start("", true).await;
    assert_eq!(status_of(&get(t.ops(), "/dashboard", "").await), 404);
    assert_eq!(
        status_of(&get(t.ops(), "/admin/events", ADMIN_AUTH).await),
        404
    );
    t.stop().await;
}

#[tokio::test]
async fn the_event_stream_needs_the_token_and_follows_connections() {
    let t = TestApp::start(ADMIN, false).await;
    let ops = t.ops();
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let refused = Events::open(ops, auth).await.err().expect("refused");
        assert_eq!(status_of(&refused), 401, "{auth:?}: {refused}");
    }
    let mut events = Events::open(ops, ADMIN_AUTH).await.expect("stream");
    let first = events.next().await;
    assert_eq!(first["connections"], 0, "{first}");
    assert!(first["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["id"] == "app:processes"));
    assert_eq!(first["lua_errors"]["function"], 0);

    let mut client = ws(&t.url("/ws?target=spawn"), None).await.expect("upgrade");
    events.until_connections(1).await;
    client.send(T::text("hello")).await.unwrap();
    // The echo proves the frame went both ways; then the snapshot counts it.
    loop {
        if let Some(Ok(T::Text(_))) = client.next().await {
            break;
        }
    }
    let snapshot = loop {
        let s = events.next().await;
        if s["frames"]["out"].as_u64() >= Some(1) {
            break s;
        }
    };
    assert_eq!(snapshot["frames"]["in"], 1, "{snapshot}");
    let row = &snapshot["rows"][0];
    assert_eq!(row["route"], "/ws", "{row}");
    assert_eq!(row["peer"], "127.0.0.1", "{row}");
    assert!(
        row["target"]
            .as_str()
            .unwrap()
            .starts_with("{app:processes|"),
        "{row}"
    );
    assert_eq!(row["bytes_in"], 5, "{row}");
    assert_eq!(row["bytes_out"], 5, "{row}");

    client.close(None).await.unwrap();
    events.until_connections(0).await;
    t.stop().await;
}

#[tokio::test]
async fn event_streams_are_capped() {
    let t = TestApp::start(ADMIN, false).await;
    let ops = t.ops();
    let mut open = Vec::new();
    for _ in 0..wsrelay_app::ops::dashboard::MAX_SUBSCRIBERS {
        open.push(Events::open(ops, ADMIN_AUTH).await.expect("under the cap"));
    }
    let refused = Events::open(ops, ADMIN_AUTH)
        .await
        .err()
        .expect("over the cap");
    assert_eq!(status_of(&refused), 503, "{refused}");
    // A stream that goes away frees its slot.
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        if let Ok(events) = Events::open(ops, ADMIN_AUTH).await {
            again = Some(events);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "the slot was never freed");
    t.stop().await;
}

#[tokio::test]
async fn listing_shows_peer_route_target_and_actions_reach_clients() {
    let t = TestApp::start(ADMIN, false).await;
    let ops = t.ops();
    let mut client = ws(&t.url("/ws"), None).await.expect("upgrade");
    let answer = get(ops, "/admin/connections", ADMIN_AUTH).await;
    let list: serde_json::Value = serde_json::from_str(body_of(&answer)).unwrap();
    assert_eq!(list["count"], 1, "{list}");
    let row = &list["connections"][0];
    assert_eq!(row["peer"], "127.0.0.1", "{row}");
    assert_eq!(row["route"], "/ws", "{row}");
    let echo = t.app.node().lookup("echo").unwrap().to_string();
    assert_eq!(row["target"], echo, "{row}");
    assert_eq!(row["queue_depth"], 0, "{row}");
    let pid = row["pid"].as_str().unwrap().to_owned();

    // A code a server may not send is refused, and the client stays open.
    let path = format!("/admin/connections/{}/close", encode(&pid));
    let bad = post(ops, &format!("{path}?code=1006"), ADMIN_AUTH).await;
    assert_eq!(status_of(&bad), 400, "{bad}");
    let answer = post(
        ops,
        &format!("{path}?code=4001&reason=maintenance+window"),
        ADMIN_AUTH,
    )
    .await;
    assert_eq!(status_of(&answer), 202, "{answer}");
    assert_eq!(
        close_frame(&mut client).await,
        (4001, "maintenance window".to_owned())
    );

    // Terminate: needs the token; stops the process, whose clients then close.
    let mut client = ws(&t.url("/ws?target=spawn"), None).await.expect("upgrade");
    let answer = get(ops, "/admin/connections", ADMIN_AUTH).await;
    let list: serde_json::Value = serde_json::from_str(body_of(&answer)).unwrap();
    let room = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap().to_owned())
        .find(|target| *target != echo)
        .expect("the spawned room");
    let path = format!("/admin/processes/{}/terminate", encode(&room));
    assert_eq!(status_of(&post(ops, &path, "").await), 401);
    assert_eq!(status_of(&post(ops, &path, ADMIN_AUTH).await), 202);
    // The target failed: the relay closes its client with 1011 (docs/spec.md §8).
    assert_eq!(close_frame(&mut client).await.0, 1011);
    assert!(!t.app.node().is_alive(&room.parse().unwrap()));
    assert_eq!(status_of(&post(ops, &path, ADMIN_AUTH).await), 404);
    t.stop().await;
}
