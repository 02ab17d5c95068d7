//! Test support: a 3-server NATS cluster and in-process cluster nodes.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use wsrelay_cluster::{Auth, Cluster, ClusterOptions};
use wsrelay_process::{Context, Event, HostConfig, Node, Pid, SpawnOptions};

pub const HOST: &str = "app:processes";
pub const ADVISORY: &str = "$SYS.ACCOUNT.WSR.DISCONNECT";

mod nats;
pub mod netem;
mod routes;
mod rt;
#[allow(unused_imports)]
pub use nats::{nats, ports, repo_root, Nats, Ports, CLIENT_HOST_VAR, PORTS_VAR};
#[allow(unused_imports)]
pub use routes::RouteCut;
pub use rt::rt;

/// The client URLs of this binary's NATS servers ([`ports`]).
pub fn urls() -> Vec<String> {
    ports().urls()
}

/// A raw NATS client of the test (not a cluster node), as `user`.
pub async fn raw_client(user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .connect(urls())
        .await
        .expect("raw NATS client connects")
}

pub fn options(node: &str) -> ClusterOptions {
    ClusterOptions::new("wsr", node, ports().urls())
        .with_auth(Auth::UserPassword("admin".into(), "admin-pw".into()))
        .with_disconnect_advisory(ADVISORY)
        .with_names_replicas(3)
}

/// [`options`] for a node that connects only to server `n` first (it fails over to the
/// others it learns of).
pub fn options_on(node: &str, n: usize) -> ClusterOptions {
    let mut o = options(node);
    o.urls = vec![ports().url(n)];
    o
}

/// A node connecting only to server `n` first ([`options_on`]).
pub async fn start_on(node: &str, n: usize) -> Cluster {
    start_with(options_on(node, n)).await
}

/// A unique node name per test run (node names must not collide across tests).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn start(node: &str) -> Cluster {
    start_with(options(node)).await
}

pub async fn start_with(options: ClusterOptions) -> Cluster {
    let c = Cluster::start(options).await.expect("cluster node starts");
    c.node().add_host(HOST, HostConfig::default());
    c
}

/// Spawns a process on `node` that only waits: a target to monitor and link to.
pub fn idle(node: &Node) -> Pid {
    node.spawn(HOST, SpawnOptions::new(), |ctx| async move {
        std::future::pending::<()>().await;
        drop(ctx);
    })
    .unwrap()
}

/// Spawns a process on `node` that answers every message with its payload under the topic
/// `reply`, to the message's sender; it ends on a message `stop` or one without a sender.
pub fn echo(node: &Node, reply: &'static str) -> Pid {
    node.spawn(HOST, SpawnOptions::new(), move |ctx| async move {
        loop {
            let msg = ctx.recv().await;
            let Some(from) = msg.from().cloned().filter(|_| msg.topic() != "stop") else {
                return;
            };
            let _ = ctx.send(&from, reply, msg.payload().clone());
        }
    })
    .unwrap()
}

/// How long a test waits for one event (a hang detector, not a timing assertion).
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

/// The next event of `ctx`; fails the test after [`EVENT_WAIT`].
pub async fn next_event(ctx: &Context) -> Event {
    tokio::time::timeout(EVENT_WAIT, ctx.next_event())
        .await
        .expect("event in time")
}

/// A detached process to act as in tests.
pub fn probe(node: &Node) -> Context {
    let (ctx, guard) = node.attach(HOST, SpawnOptions::new()).unwrap().detach();
    std::mem::forget(guard);
    ctx
}

/// The node's metrics as the ops listener renders them (OpenMetrics text).
pub fn metrics_text(stats: &wsrelay_cluster::ClusterStats) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    stats.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Sends pings to `to` (an echo process) until one comes back, for up to `timeout`: sends
/// may be refused or lost while sessions recover after a fault.
pub async fn echo_works(me: &Context, to: &Pid, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        if me.send(to, "ping", wsrelay_process::Value::Int(i)).is_ok() {
            let wait = tokio::time::timeout(Duration::from_millis(500), async {
                while me.recv().await.payload() != &wsrelay_process::Value::Int(i) {}
            });
            if wait.await.is_ok() {
                return true;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    false
}
