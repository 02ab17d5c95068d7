//! Scale-out for wsrelay: every PID works across nodes connected through NATS.
//!
//! [`Cluster::start`] connects one node to NATS, creates its [`Node`] with a boot
//! *incarnation* in the high 32 bits of every PID number (a PID of an earlier run never
//! reaches a process of this one), and installs a [`Transport`](wsrelay_process::Transport)
//! that routes every PID of another node there. The design follows
//! `docs/cluster-design.md §2`:
//!
//! - **Routing by node.** All traffic from node `src` to node `dst` — messages *and* control
//!   signals (monitor, demonitor, exit, link, unlink, link-down, cancel, terminate) — uses
//!   one subject, `wsr.<cluster>.n.<dst>.<src>`, so it stays in order.
//! - **Trusted sources.** A frame is looked at only if it decodes completely, names the
//!   node of its subject as source and this node as destination, and, with a
//!   [`ClusterSecret`], carries a valid HMAC-SHA256 tag. Without a secret, NATS permissions
//!   (only `src` may publish on `wsr.<cluster>.n.*.<src>`) make the source trustworthy;
//!   `docs/cluster.md` gives the exact configuration. The receiver also checks that every
//!   envelope speaks for a process of `src`.
//! - **Bounded peers.** A peer is created only by an accepted frame or by local use (a send
//!   to one of its PIDs); at most [`ClusterOptions::max_peers`] are known, and a peer down
//!   for [`ClusterOptions::forget_after`] is forgotten with its metric series.
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
//!   NATS (a NATS outage never blocks local work), within the credit the peer grants: bytes
//!   (4 MiB) and frames (512) unacknowledged. The queue has a lane per sending process,
//!   served round robin by bytes, so a large sender cannot starve small ones and each
//!   sender's order holds. Above the queue's high-water marks (envelopes, bytes)
//!   `Node::is_congested(from, to)` is true for the senders that fill the queue (each holding
//!   at least its even share), so the WebSocket relay stops reading their clients while
//!   others go on; halfway to the queue's limit it is true for every sender.
//! - **Names.** Names starting with [`CLUSTER_NAME_PREFIX`] (`global:`) are cluster-wide, in
//!   the JetStream KV bucket `wsr_names`; other names stay local.
//!
//! Metrics are in [`ClusterStats`], which registers them in the exporter's
//! `prometheus-client` registry. `docs/cluster.md` describes running a cluster, the
//! guarantees and the measured numbers.
//!
//! # Modules
//!
//! | module | job |
//! |---|---|
//! | `options`, `secret`, `error` | settings, the cluster secret, start-up errors |
//! | `connect` | the NATS connection and everything a node starts with |
//! | `shared` | the state all tasks share; ending a connection; control frames |
//! | `peers`, `peer` | the bounded peer table; one peer's sessions and relations |
//! | `routing` | the `Transport` seam: local signals into peer queues |
//! | `lanes` | one peer's queue: a lane per sending process, served round robin by bytes |
//! | `announce` | one peer's group membership announcements, coalesced, ahead of the lanes |
//! | `held` | what waits for a restarted peer's new run until a session it accepts serves it |
//! | `batch` | what a batch holds: envelopes stamped with their epoch, and its limits |
//! | `writer` | one task per peer: queue → batches → NATS, within credit (bytes and frames) |
//! | `control`, `inbound`, `advisory` | the control loop: frames in, heartbeats, liveness |
//! | `frame`, `envelope` | the wire format: frames (checked, signed) and envelopes |
//! | `names` | cluster names in JetStream KV |
//! | `stats`, `throttle` | metrics; rate-limited warnings |

mod advisory;
mod announce;
mod batch;
mod connect;
mod control;
mod envelope;
mod error;
mod frame;
mod held;
mod inbound;
mod lanes;
mod names;
mod options;
mod peer;
mod peers;
mod random;
mod routing;
mod secret;
mod shared;
mod stats;
mod throttle;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use wsrelay_process::Node;

pub use error::ClusterError;
pub use names::CLUSTER_NAME_PREFIX;
pub use options::{Auth, ClusterOptions, TlsOptions};
pub use secret::{ClusterSecret, MIN_SECRET_LEN};
pub use stats::{ClusterStats, DROP_REASONS};

use crate::shared::Shared;

/// A running cluster node: the [`Node`] and its NATS transport.
///
/// Cloning is cheap. The transport's tasks run on a runtime of their own, so nothing the
/// app's runtime does can stall them, and NATS can never stall the app.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Connects to NATS and starts the node `options.node`.
    ///
    /// # Errors
    ///
    /// Invalid names or limits, unusable credentials, NATS unreachable within 5 s, names
    /// bucket unavailable.
    pub async fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name(format!("wsr-cluster-{}", options.node))
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let handle = runtime.handle().clone();
        let shared = handle
            .spawn(connect::connect(options, handle.clone()))
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

    /// The cluster metrics.
    pub fn stats(&self) -> &Arc<ClusterStats> {
        &self.shared.stats
    }

    /// The peers known now, sorted by name, and whether each is up (heard from and not
    /// declared down since).
    pub fn peers(&self) -> Vec<(String, bool)> {
        let mut peers: Vec<(String, bool)> = self
            .shared
            .peers
            .all()
            .iter()
            .map(|p| (p.name.clone(), !p.is_down() && p.state.lock().heard_ever))
            .collect();
        peers.sort();
        peers
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
