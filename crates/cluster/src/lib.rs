//! Scale-out for wsrelay: every PID works across nodes connected through NATS.
//!
//! [`Cluster::start`] connects one node to NATS, creates its [`Node`] with a boot
//! *incarnation* in the high 32 bits of every PID number (a PID of an earlier run never
//! reaches a process of this one), and installs a [`Transport`](wsrelay_process::Transport)
//! that routes every PID of another node there. The design follows `CLUSTER.md`:
//!
//! - **Routing by node.** All traffic from node `src` to node `dst` — messages *and* control
//!   signals (monitor, demonitor, exit, link, unlink, link-down, cancel, terminate) — uses
//!   one subject, `wsr.<cluster>.n.<dst>.<src>`, so it stays in order. Only `src` may
//!   publish there (NATS permissions), and the receiver checks that every envelope speaks
//!   for a process of `src`.
//! - **Sessions.** Frames carry a session id and consecutive sequence numbers; heartbeats
//!   (every second) carry the last one published. A gap, an unknown session or a RESET ends
//!   the *connection* between the two nodes, as a lost Erlang distribution connection: each
//!   side fails every monitor and link it holds across the pair with `noconnection` — the
//!   watcher's node decides, take-then-deliver, so each monitor gets exactly one EXIT — and
//!   drops all later traffic of the ended sessions. Processes survive; the next send opens
//!   a new session.
//! - **Failure detection.** A peer silent for [`ClusterOptions::dead_after`] (3 s) is
//!   declared down; the `$SYS` DISCONNECT advisory, when the server exports it, makes a peer
//!   *suspect* and shortens that to [`ClusterOptions::suspect_window`]. Sends to a down peer
//!   fail with `node unreachable`; monitors and links get `noconnection` at once.
//! - **Flow control.** Each peer has a queue drained by one writer task, which alone talks to
//!   NATS (a NATS outage never blocks local work), and a window of unacknowledged frames.
//!   Above the queue's high-water mark `Node::is_congested` is true for PIDs of that peer, so
//!   the WebSocket relay stops reading its client.
//! - **Names.** Names starting with [`CLUSTER_NAME_PREFIX`] (`global:`) are cluster-wide, in
//!   the JetStream KV bucket `wsr_names` (module `names`); other names stay local.
//!
//! Counters for the metrics exporter are in [`ClusterStats`]. `docs/cluster.md` describes
//! running a cluster, the guarantees and the measured numbers.

mod names;
mod peer;
mod stats;
mod transport;
mod wire;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use wsrelay_process::Node;

pub use stats::{ClusterStats, DROP_REASONS};

use crate::transport::{Ctl, NatsTransport, Shared};

/// Names with this prefix are registered cluster-wide (`process.registry.register("global:lobby")`).
pub const CLUSTER_NAME_PREFIX: &str = "global:";

/// How the node authenticates to NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials (or credentials in the URL).
    #[default]
    None,
    /// User and password.
    UserPassword(String, String),
    /// A token.
    Token(String),
    /// An NKey seed (`SU...`).
    NkeySeed(String),
    /// A `.creds` file (JWT and seed).
    CredsFile(PathBuf),
}

impl Auth {
    /// Reads a credentials file: a NATS `.creds` file (JWT), an NKey seed (`SU…`), or one
    /// line `user:password`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is empty.
    pub fn from_file(path: &std::path::Path) -> Result<Auth, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClusterError::Credentials {
            file: path.to_owned(),
            problem: e.to_string(),
        })?;
        let line = text.trim();
        if text.contains("BEGIN NATS USER JWT") {
            Ok(Auth::CredsFile(path.to_owned()))
        } else if line.starts_with("SU") && !line.contains(':') {
            Ok(Auth::NkeySeed(line.to_owned()))
        } else if let Some((user, pass)) = line.split_once(':') {
            Ok(Auth::UserPassword(user.to_owned(), pass.to_owned()))
        } else {
            Err(ClusterError::Credentials {
                file: path.to_owned(),
                problem: "expected a .creds file, an NKey seed or `user:password`".into(),
            })
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA bundle to verify servers with.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (mutual TLS).
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// Settings of a cluster node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// The cluster name, the second token of every subject (`wsr.<cluster>.…`).
    pub cluster: String,
    /// This node's name (`[A-Za-z0-9_-]+`), as in PIDs `{node@host|…}`.
    pub node: String,
    /// NATS server URLs.
    pub urls: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS, if required.
    pub tls: Option<TlsOptions>,
    /// Heartbeat interval (1 s).
    pub heartbeat: Duration,
    /// A peer silent this long is declared down (3 s).
    pub dead_after: Duration,
    /// A peer named by a DISCONNECT advisory and silent this long is declared down (500 ms).
    pub suspect_window: Duration,
    /// The subject of the DISCONNECT advisory imported into the account, if any.
    pub disconnect_advisory: Option<String>,
    /// NATS disconnected this long makes remote sends fail with `node unreachable` (2 s).
    pub unreachable_grace: Duration,
    /// Queued envelopes per peer above which its PIDs count as congested (4096).
    pub queue_high_water: usize,
    /// Queued envelopes per peer above which remote sends fail (65536).
    pub queue_max: usize,
    /// Unacknowledged frames in flight per peer (512).
    pub window: u64,
    /// Envelopes per frame at most (256).
    pub batch_envelopes: usize,
    /// Bytes per frame at most, unless one envelope is larger (64 KiB).
    pub batch_bytes: usize,
    /// The KV bucket of cluster names; `None` disables cluster names.
    pub names_bucket: Option<String>,
    /// Replicas of the names bucket when it is created (1; use 3 on a 3-server cluster).
    pub names_replicas: usize,
    /// Worker threads of the cluster's own runtime (1).
    pub threads: usize,
}

impl ClusterOptions {
    /// Defaults for `node` in `cluster`, connecting to `urls`.
    pub fn new(cluster: &str, node: &str, urls: Vec<String>) -> ClusterOptions {
        ClusterOptions {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            urls,
            auth: Auth::None,
            tls: None,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            suspect_window: Duration::from_millis(500),
            disconnect_advisory: None,
            unreachable_grace: Duration::from_secs(2),
            queue_high_water: 4096,
            queue_max: 65536,
            window: 512,
            batch_envelopes: 256,
            batch_bytes: 64 << 10,
            names_bucket: Some("wsr_names".to_owned()),
            names_replicas: 1,
            threads: 1,
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Listens to the DISCONNECT advisory on `subject` (e.g. `$SYS.ACCOUNT.WSR.DISCONNECT`).
    #[must_use]
    pub fn with_disconnect_advisory(mut self, subject: impl Into<String>) -> Self {
        self.disconnect_advisory = Some(subject.into());
        self
    }

    /// Sets the replicas of the names bucket.
    #[must_use]
    pub fn with_names_replicas(mut self, replicas: usize) -> Self {
        self.names_replicas = replicas;
        self
    }

    /// Sets the failure detector: heartbeat interval and dead-after time.
    #[must_use]
    pub fn with_heartbeat(mut self, interval: Duration, dead_after: Duration) -> Self {
        self.heartbeat = interval;
        self.dead_after = dead_after;
        self
    }

    /// Sets TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node or cluster name is not a valid subject token.
    #[error("invalid {what} name {name:?}: use letters, digits, '-' and '_'")]
    InvalidName {
        /// `node` or `cluster`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The credentials file is unusable.
    #[error("credentials file {file}: {problem}")]
    Credentials {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// NATS could not be reached.
    #[error("cannot connect to NATS at {urls}: {problem}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// Why.
        problem: String,
    },
    /// The names bucket could not be opened.
    #[error("cluster names: {0}")]
    Names(String),
    /// The cluster runtime could not start.
    #[error("cannot start the cluster runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A running cluster node: the [`Node`] and its NATS transport.
///
/// Cloning is cheap. The transport's tasks run on a runtime of their own, so nothing the
/// app's runtime does can stall them, and NATS can never stall the app.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

/// Owns the cluster runtime. The node and its transport refer to each other, so a started
/// cluster lives until [`Cluster::shutdown`] or the end of the OS process; the runtime is
/// shut down without blocking either way.
#[derive(Debug)]
pub(crate) struct RuntimeGuard(Mutex<Option<tokio::runtime::Runtime>>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.lock().take() {
            rt.shutdown_background();
        }
    }
}

impl Cluster {
    /// Connects to NATS and starts the node `options.node`.
    ///
    /// # Errors
    ///
    /// Invalid names, unusable credentials, NATS unreachable within 5 s, names bucket
    /// unavailable.
    pub async fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        for (what, name) in [("node", &options.node), ("cluster", &options.cluster)] {
            if !valid_node_name(name) {
                return Err(ClusterError::InvalidName {
                    what,
                    name: name.clone(),
                });
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name(format!("wsr-cluster-{}", options.node))
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let handle = runtime.handle().clone();
        let shared = handle
            .spawn(connect(options, handle.clone()))
            .await
            .map_err(|e| ClusterError::Connect {
                urls: String::new(),
                problem: e.to_string(),
            });
        match shared {
            Ok(Ok(shared)) => {
                *shared.runtime.0.lock() = Some(runtime);
                Ok(Cluster { shared })
            }
            Ok(Err(e)) | Err(e) => {
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    /// The node; add hosts and spawn processes on it as usual.
    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    /// This run's incarnation (the high 32 bits of every local PID number).
    pub fn incarnation(&self) -> u32 {
        self.shared.inc
    }

    /// The cluster counters.
    pub fn stats(&self) -> &Arc<ClusterStats> {
        &self.shared.stats
    }

    /// The peers seen so far and whether each is up.
    pub fn peers(&self) -> Vec<(String, bool)> {
        self.shared.stats.peers()
    }

    /// Stops the node's cluster side at once, as a crash would: the NATS connection and every
    /// cluster task end; peers see this node go down. Local processes are not touched (call
    /// [`Node::shutdown`] for that).
    pub fn shutdown(&self) {
        if let Some(rt) = self.shared.runtime.0.lock().take() {
            rt.shutdown_background();
        }
    }

    /// Flushes what is queued for NATS (best effort, bounded by `timeout`).
    pub async fn flush(&self, timeout: Duration) {
        let client = self.shared.client.clone();
        let _ = tokio::time::timeout(timeout, async move {
            let _ = self
                .shared
                .rt
                .spawn(async move { client.flush().await })
                .await;
        })
        .await;
    }
}

async fn connect(
    options: ClusterOptions,
    rt: tokio::runtime::Handle,
) -> Result<Arc<Shared>, ClusterError> {
    let inc = loop {
        let r = random_u64() as u32;
        if r != 0 {
            break r;
        }
    };
    let urls = options.urls.join(",");
    let connect_error = |problem: String| ClusterError::Connect {
        urls: urls.clone(),
        problem,
    };
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(ClusterStats::default());
    let disconnected = Arc::new(Mutex::new(None));
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("wsr:{}:{}:{}", options.cluster, options.node, inc))
        .custom_inbox_prefix(format!("_INBOX_{}", options.node))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .subscription_capacity(1 << 17)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).min(500))
        });
    {
        let ctl = ctl_tx.clone();
        let stats = stats.clone();
        let disconnected = disconnected.clone();
        opts = opts.event_callback(move |event| {
            let ctl = ctl.clone();
            let stats = stats.clone();
            let disconnected = disconnected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        stats.connected.store(true, Ordering::Relaxed);
                        *disconnected.lock() = None;
                        let _ = ctl.send(Ctl::Reconnected);
                    }
                    async_nats::Event::Disconnected => {
                        stats.connected.store(false, Ordering::Relaxed);
                        disconnected
                            .lock()
                            .get_or_insert_with(std::time::Instant::now);
                    }
                    async_nats::Event::ServerError(e) => {
                        stats.server_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "NATS server error");
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        });
    }
    opts = match &options.auth {
        Auth::None => opts,
        Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        Auth::Token(t) => opts.token(t.clone()),
        Auth::NkeySeed(s) => opts.nkey(s.clone()),
        Auth::CredsFile(f) => {
            opts.credentials_file(f)
                .await
                .map_err(|e| ClusterError::Credentials {
                    file: f.clone(),
                    problem: e.to_string(),
                })?
        }
    };
    if let Some(tls) = &options.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let addrs: Vec<async_nats::ServerAddr> = options
        .urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, std::io::Error>>()
        .map_err(|e| connect_error(e.to_string()))?;
    let client = opts
        .connect(addrs)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    stats.connected.store(true, Ordering::Relaxed);
    let max_envelope = (client.server_info().max_payload)
        .saturating_sub(1024)
        .max(1024);
    let sub = client
        .subscribe(format!("wsr.{}.n.{}.>", options.cluster, options.node))
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let advisories = match &options.disconnect_advisory {
        Some(subject) => client.subscribe(subject.clone()).await.ok(),
        None => None,
    };
    let names = match &options.names_bucket {
        Some(bucket) => Some(
            names::Names::open(client.clone(), bucket, options.names_replicas)
                .await
                .map_err(ClusterError::Names)?,
        ),
        None => None,
    };
    let node = Node::named(&options.node, inc);
    let shared = Arc::new(Shared {
        node: node.clone(),
        me: options.node.clone(),
        inc,
        client,
        opts: options,
        rt,
        peers: RwLock::new(Default::default()),
        stats,
        disconnected_since: Mutex::new(None),
        ctl: ctl_tx,
        names: OnceLock::new(),
        max_envelope,
        runtime: RuntimeGuard(Mutex::new(None)),
    });
    if let Some(names) = names {
        let _ = shared.names.set(names);
    }
    // The event callback's view of disconnection feeds the transport's.
    {
        let sh = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let d = *disconnected.lock();
                *sh.disconnected_since.lock() = d;
            }
        });
    }
    node.set_transport(Arc::new(NatsTransport {
        shared: shared.clone(),
    }));
    tokio::spawn(transport::control_loop(
        shared.clone(),
        sub,
        advisories,
        ctl_rx,
    ));
    tracing::info!(node = %shared.me, inc, "cluster node connected");
    Ok(shared)
}

/// Whether `name` can be a node or cluster name (one NATS subject token).
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `wsr:<cluster>:<node>:<inc>` → (node, inc).
pub(crate) fn parse_client_name(name: &str) -> Option<(String, u32)> {
    let mut parts = name.split(':');
    if parts.next()? != "wsr" {
        return None;
    }
    let _cluster = parts.next()?;
    let node = parts.next()?;
    let inc = parts.next()?.parse().ok()?;
    Some((node.to_owned(), inc))
}

/// A random number from the OS-seeded hasher (no extra dependency).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
