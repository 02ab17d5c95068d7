//! End to end: `wsrelay run` nodes in separate OS processes, a WebSocket client on node A
//! relayed to a Lua target on node B (found through the cluster name `global:echo`), then
//! node B frozen (SIGSTOP) and node C killed (SIGKILL): the client is closed with 1011; then
//! C restarted: new clients reach its re-registered target. Every node signs its frames with
//! a cluster secret (`WSRELAY_CLUSTER_SECRET_FILE`), and node A's `/metrics` (ops listener)
//! carries the cluster's metrics. A second test configures its nodes by the `cluster` entry
//! alone (`secret_file`, `max_peers`): nodes with the same secret talk, a node with another
//! does not.
//!
//! `WSR_BENCH=1` adds a closed-loop echo benchmark: remote target vs. local target.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::nats::{free_port, nats, Nats};
use crate::support::{cluster_app_head_with, relay_gateway_entries, NodeProc};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The echo the cluster benchmark runs: one per node, registered under the name it is given.
const ECHO_LUA: &str = include_str!("../crates/bench/apps/cluster-echo/echo.lua");

const CONNECT_LUA: &str = r#"
local http = require("http")
local json = require("json")
local function handler()
    local req = http.request()
    local res = http.response()
    local target = "global:echo"
    if req:query("local") then target = "local_echo" end
    if req:query("t") then target = "global:" .. req:query("t") end
    res:header("X-WS-Relay", json.encode({ target_pid = target }))
end
return { handler = handler }
"#;

/// Node `node`'s app; `cluster_fields`: more fields of its `cluster` entry.
fn app_yaml(
    node: &str,
    creds: &Path,
    nats: &Nats,
    gateway_port: Option<u16>,
    cluster_fields: &str,
) -> String {
    let global = if node == "b" {
        "global:echo".to_owned()
    } else {
        format!("global:echo_{node}")
    };
    let urls = [nats.url(1), nats.url(2), nats.url(3)];
    let mut y = cluster_app_head_with(node, &urls, &creds.display().to_string(), cluster_fields);
    y.push_str(
        r#"  - name: echo
    kind: process.lua
    source: file://echo.lua
    method: run
"#,
    );
    match gateway_port {
        None => y.push_str(&format!(
            r#"  - name: echo_service
    kind: process.service
    process: echo
    host: app:processes
    input: ["{global}"]
    lifecycle:
      auto_start: true
"#
        )),
        Some(port) => {
            y.push_str(
                r#"  - name: local_echo
    kind: process.service
    process: echo
    host: app:processes
    input: ["local_echo"]
    lifecycle:
      auto_start: true
"#,
            );
            y.push_str(&relay_gateway_entries(port));
        }
    }
    y
}

/// The `wsrelay` binary cargo built for this test run (never a build from inside a test).
fn wsrelay_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wsrelay"))
}

/// Starts node `name`, its cluster secret named by `WSRELAY_CLUSTER_SECRET_FILE`; node A with
/// its ops listener on `metrics_port`.
fn start_node(bin: &Path, dir: &Path, name: &str, metrics_port: u16) -> NodeProc {
    let secret = dir.parent().unwrap().join("cluster.secret");
    let metrics = (name == "a").then_some(metrics_port);
    NodeProc::spawn(
        node_command(bin, dir, name, metrics).env("WSRELAY_CLUSTER_SECRET_FILE", secret),
    )
}

/// `wsrelay run` of node `name`'s app in `dir`, logging to `dir/NAME.log`, with an ops
/// listener on `metrics_port` if given. Of the cluster variables only the replicas of the
/// names bucket are set: the bucket outlives a test in this binary's NATS cluster, and every
/// test's nodes create it alike.
fn node_command(bin: &Path, dir: &Path, name: &str, metrics_port: Option<u16>) -> Command {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg(dir);
    if let Some(port) = metrics_port {
        cmd.arg("--metrics").arg(format!("127.0.0.1:{port}"));
    }
    for var in CLUSTER_VARIABLES {
        cmd.env_remove(var);
    }
    cmd.env("WSRELAY_CLUSTER_REPLICAS", "3")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// The variables that would override the `cluster` entry (docs/cluster.md).
const CLUSTER_VARIABLES: [&str; 8] = [
    "WSRELAY_NODE",
    "WSRELAY_NATS_URLS",
    "WSRELAY_CLUSTER_CREDENTIALS",
    "WSRELAY_CLUSTER_NAME",
    "WSRELAY_CLUSTER_ADVISORY",
    "WSRELAY_CLUSTER_REPLICAS",
    "WSRELAY_CLUSTER_SECRET_FILE",
    "WSRELAY_CLUSTER_MAX_PEERS",
];

/// Writes node `node`'s app into `base/NODE` (its NATS credentials copied in); `cluster_fields`:
/// more fields of its `cluster` entry.
fn make_app(
    base: &Path,
    node: &str,
    nats: &Nats,
    port: Option<u16>,
    cluster_fields: &str,
) -> PathBuf {
    let dir = base.join(node);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(nats.dir.join("creds").join(node), dir.join("nats.creds")).unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        app_yaml(node, Path::new("nats.creds"), nats, port, cluster_fields),
    )
    .unwrap();
    std::fs::write(dir.join("echo.lua"), ECHO_LUA).unwrap();
    std::fs::write(dir.join("connect.lua"), CONNECT_LUA).unwrap();
    dir
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Option<Ws> {
    tokio_tungstenite::connect_async(url)
        .await
        .ok()
        .map(|(ws, _)| ws)
}

async fn echo_once(ws: &mut Ws, text: &str) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text
    )
}

/// Connects and echoes once, retrying until `timeout` (the target node may still be starting).
async fn connected_echo(url: &str, timeout: Duration) -> Ws {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(mut ws) = connect(url).await {
            if echo_once(&mut ws, "hello").await {
                return ws;
            }
        }
        assert!(Instant::now() < deadline, "no echo through {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the close frame; returns its code and how long it took.
async fn close_code(ws: &mut Ws, timeout: Duration) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return (None, start.elapsed()),
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(frame))) => return (frame.map(|f| u16::from(f.code)), start.elapsed()),
                Some(Ok(_)) => {}
                _ => return (None, start.elapsed()),
            }
        }
    }
}

#[test]
fn relay_to_lua_target_on_another_node_and_node_faults() {
    let Some(nats) = nats() else { return };
    let bin = wsrelay_bin();
    let base = std::env::temp_dir().join(format!("wsr-e2e-{}", std::process::id()));
    let port = free_port();
    let metrics_port = free_port();
    let app_a = make_app(&base, "a", &nats, Some(port), "");
    let app_b = make_app(&base, "b", &nats, None, "");
    std::fs::write(
        base.join("cluster.secret"),
        "a secret shared by a, b and c\n",
    )
    .unwrap();
    let url = format!("ws://127.0.0.1:{port}/");
    let rt = crate::support::rt();
    let _a = start_node(&bin, &app_a, "a", metrics_port);
    let app_c = make_app(&base, "c", &nats, None, "");
    let b = start_node(&bin, &app_b, "b", metrics_port);
    let c = start_node(&bin, &app_c, "c", metrics_port);
    rt.block_on(async {
        // join / message / ws.send across nodes.
        let mut ws = connected_echo(&url, Duration::from_secs(30)).await;
        for i in 0..100 {
            assert!(echo_once(&mut ws, &format!("m{i}")).await, "echo {i}");
        }
        cluster_metrics_on_the_ops_listener(metrics_port).await;
        if std::env::var("WSR_BENCH").is_ok() {
            bench(&url).await;
        }

        // A second target node, c, for the crash case.
        let url_c = format!("{url}?t=echo_c");
        let mut ws_c = connected_echo(&url_c, Duration::from_secs(30)).await;

        // SIGSTOP: a frozen node is detected by heartbeats (no advisory: its TCP is open).
        b.signal("STOP");
        let (code, took) = close_code(&mut ws, Duration::from_secs(10)).await;
        eprintln!("SIGSTOP of the target node: client closed with {code:?} after {took:?}");
        assert_eq!(code, Some(1011));
        b.signal("CONT");

        // SIGKILL: the DISCONNECT advisory makes the peer suspect at once.
        c.signal("KILL");
        let (code, took) = close_code(&mut ws_c, Duration::from_secs(8)).await;
        eprintln!("SIGKILL of the target node: client closed with {code:?} after {took:?}");
        assert_eq!(code, Some(1011));

        // Restart c (a new incarnation): new relay connections reach its re-registered
        // target, also after the survivors noticed the restart (regression: they used to
        // release the new incarnation's names then).
        drop(c);
        let restarted = Instant::now();
        let _c = start_node(&bin, &app_c, "c", metrics_port);
        let mut ws_c = connected_echo(&url_c, Duration::from_secs(30)).await;
        eprintln!(
            "restarted target node: echo after {:?}",
            restarted.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(echo_once(&mut ws_c, "still there").await);
        let mut ws_c2 = connected_echo(&url_c, Duration::from_secs(10)).await;
        for i in 0..20 {
            assert!(
                echo_once(&mut ws_c2, &format!("r{i}")).await,
                "echo {i} after restart"
            );
        }
    });
    drop(b);
    let _ = std::fs::remove_dir_all(&base);
}

/// Nodes configured by their YAML alone (no cluster variable but the names bucket's
/// replicas): A (the gateway) and B (the target `global:echo`) name the same secret in
/// `secret_file` and talk. C names another secret: its frames are dropped at B as
/// unauthenticated, and a client on C gets no echo from B's target.
#[test]
fn nodes_configured_by_yaml_alone_talk_only_with_the_same_secret() {
    let Some(nats) = nats() else { return };
    let bin = wsrelay_bin();
    let base = std::env::temp_dir().join(format!("wsr-e2e-yaml-{}", std::process::id()));
    let (port_a, port_c, metrics_b) = (free_port(), free_port(), free_port());
    let fields = "    secret_file: cluster.secret\n    max_peers: 8\n";
    let node = |name: &str, port: Option<u16>, secret: &str| {
        let dir = make_app(&base, name, &nats, port, fields);
        std::fs::write(dir.join("cluster.secret"), secret).unwrap();
        dir
    };
    let app_a = node("a", Some(port_a), "the secret of a and b\n");
    let app_b = node("b", None, "the secret of a and b\n");
    let app_c = node("c", Some(port_c), "another secret, only c's\n");
    let _a = NodeProc::spawn(&mut node_command(&bin, &app_a, "a", None));
    let _b = NodeProc::spawn(&mut node_command(&bin, &app_b, "b", Some(metrics_b)));
    crate::support::rt().block_on(async {
        let mut ws = connected_echo(
            &format!("ws://127.0.0.1:{port_a}/"),
            Duration::from_secs(30),
        )
        .await;
        for i in 0..10 {
            assert!(
                echo_once(&mut ws, &format!("m{i}")).await,
                "echo {i} through a"
            );
        }
        // C starts once B is up: C's only frame towards B before a client comes is its
        // hello at the start (it takes nobody's heartbeats for a peer's), and a hello sent
        // before B subscribed was missed (a CI run under load once started C first).
        let _c = NodeProc::spawn(&mut node_command(&bin, &app_c, "c", None));
        // C's frames reach B and are refused there.
        let dropped = r#"wsrelay_remote_dropped_total{reason="unauthenticated"} "#;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = metrics_text(metrics_b).await;
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix(dropped))
                .and_then(|n| n.trim().parse::<u64>().ok());
            if count.is_some_and(|n| n > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b never refused c's frames:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A client on C: refused (C cannot reach B), or upgraded with no echo ever coming.
        if let Some(mut ws) = connect(&format!("ws://127.0.0.1:{port_c}/")).await {
            assert!(!echo_once(&mut ws, "across secrets").await, "c talked to b");
        }
        // A and B still talk.
        assert!(echo_once(&mut ws, "still").await);
    });
    let _ = std::fs::remove_dir_all(&base);
}

/// The `/metrics` text of the ops listener on `port`.
async fn metrics_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("an ops listener");
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

/// Node A's `/metrics`: the cluster's families, registered in the ops registry, with the
/// names operators alert on, and one OpenMetrics document (a single `# EOF`, at the end).
async fn cluster_metrics_on_the_ops_listener(metrics_port: u16) {
    let text = metrics_text(metrics_port).await;
    for line in [
        "# TYPE wsrelay_cluster_connected gauge",
        "wsrelay_cluster_connected 1",
        "wsrelay_peer_up{peer=\"b\"} 1",
        "# TYPE wsrelay_session_resets counter",
        "wsrelay_peer_down_total 0",
        "wsrelay_remote_dropped_total{reason=\"unauthenticated\"} 0",
        "wsrelay_remote_dropped_total{reason=\"peer_limit\"} 0",
        "wsrelay_cluster_server_errors_total",
        "wsrelay_remote_envelopes_total{direction=\"in\"}",
        "wsrelay_connections_open 1",
    ] {
        assert!(text.contains(line), "{line:?} in /metrics:\n{text}");
    }
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

async fn bench(url: &str) {
    let local = format!("{url}?local=1");
    let secs = 5;
    let conns = 50;
    let remote_rate = closed_loop(url, conns, secs).await;
    let local_rate = closed_loop(&local, conns, secs).await;
    eprintln!(
        "BENCH relay echo, {conns} conns x 20 B closed loop, {secs} s: remote target {remote_rate:.0} msg/s, local target {local_rate:.0} msg/s, ratio {:.2}",
        remote_rate / local_rate
    );
}

async fn closed_loop(url: &str, conns: usize, secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ws = connected_echo(&url, Duration::from_secs(10)).await;
            let mut n = 0u64;
            let payload = "x".repeat(20);
            while Instant::now() < deadline {
                if !echo_once(&mut ws, &payload).await {
                    break;
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / secs as f64
}
