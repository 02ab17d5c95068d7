//! Counters of the cluster transport, for the metrics exporter.
//!
//! Names the Prometheus exporter should use (see `docs/cluster.md`):
//!
//! | counter | metric |
//! |---|---|
//! | [`ClusterStats::connected`] | `wsrelay_cluster_connected` (gauge, 0/1) |
//! | [`ClusterStats::peers`] | `wsrelay_peer_up{peer}` (gauge, 0/1) |
//! | `session_resets` | `wsrelay_session_resets_total` |
//! | `peer_downs` | `wsrelay_peer_down_total` |
//! | `dropped_*` | `wsrelay_remote_dropped_total{reason}` with `reason` one of [`DROP_REASONS`] |
//! | `sent_envelopes`, `received_envelopes` | `wsrelay_remote_envelopes_total{direction}` |
//! | `sent_batches`, `received_batches` | `wsrelay_remote_batches_total{direction}` |
//! | `permission_errors` | `wsrelay_cluster_server_errors_total` |

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// The `reason` label values of `wsrelay_remote_dropped_total`.
pub const DROP_REASONS: &[&str] = &[
    "noproc",
    "unreachable",
    "queue_full",
    "too_big",
    "fenced",
    "malformed",
    "forged",
];

/// Live counters of one cluster node; every field is cheap to read at any time.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub(crate) connected: AtomicBool,
    pub(crate) peers: Mutex<Vec<(String, bool)>>,
    pub(crate) session_resets: AtomicU64,
    pub(crate) peer_downs: AtomicU64,
    pub(crate) dropped: [AtomicU64; 7],
    pub(crate) sent_envelopes: AtomicU64,
    pub(crate) received_envelopes: AtomicU64,
    pub(crate) sent_batches: AtomicU64,
    pub(crate) received_batches: AtomicU64,
    pub(crate) server_errors: AtomicU64,
}

/// Why a remote message or signal was dropped (index into [`DROP_REASONS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    NoProc = 0,
    Unreachable = 1,
    QueueFull = 2,
    TooBig = 3,
    Fenced = 4,
    Malformed = 5,
    Forged = 6,
}

impl ClusterStats {
    pub(crate) fn count_drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_peer(&self, peer: &str, up: bool) {
        let mut peers = self.peers.lock();
        match peers.iter_mut().find(|(p, _)| p == peer) {
            Some(entry) => entry.1 = up,
            None => {
                peers.push((peer.to_owned(), up));
                peers.sort();
            }
        }
    }

    /// Whether the NATS connection is up (`wsrelay_cluster_connected`).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Every peer seen so far and whether it is up (`wsrelay_peer_up{peer}`).
    pub fn peers(&self) -> Vec<(String, bool)> {
        self.peers.lock().clone()
    }

    /// Sessions ended (gap, reset, peer down, peer restart): `wsrelay_session_resets_total`.
    pub fn session_resets(&self) -> u64 {
        self.session_resets.load(Ordering::Relaxed)
    }

    /// How often a peer was declared down: `wsrelay_peer_down_total`.
    pub fn peer_downs(&self) -> u64 {
        self.peer_downs.load(Ordering::Relaxed)
    }

    /// Remote messages and signals dropped, per reason of [`DROP_REASONS`]:
    /// `wsrelay_remote_dropped_total{reason}`.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        DROP_REASONS
            .iter()
            .zip(&self.dropped)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Envelopes sent and received (`wsrelay_remote_envelopes_total{direction}`).
    pub fn envelopes(&self) -> (u64, u64) {
        (
            self.sent_envelopes.load(Ordering::Relaxed),
            self.received_envelopes.load(Ordering::Relaxed),
        )
    }

    /// NATS messages (batches) sent and received (`wsrelay_remote_batches_total{direction}`).
    pub fn batches(&self) -> (u64, u64) {
        (
            self.sent_batches.load(Ordering::Relaxed),
            self.received_batches.load(Ordering::Relaxed),
        )
    }

    /// Errors reported by the NATS server, such as permission violations
    /// (`wsrelay_cluster_server_errors_total`).
    pub fn server_errors(&self) -> u64 {
        self.server_errors.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition of all counters (for an exporter that just appends it).
    pub fn render_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wsrelay_cluster_connected {}",
            u8::from(self.connected())
        );
        for (peer, up) in self.peers() {
            let _ = writeln!(out, "wsrelay_peer_up{{peer=\"{peer}\"}} {}", u8::from(up));
        }
        let _ = writeln!(
            out,
            "wsrelay_session_resets_total {}",
            self.session_resets()
        );
        let _ = writeln!(out, "wsrelay_peer_down_total {}", self.peer_downs());
        for (reason, n) in self.dropped() {
            let _ = writeln!(
                out,
                "wsrelay_remote_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let (s, r) = self.envelopes();
        let _ = writeln!(
            out,
            "wsrelay_remote_envelopes_total{{direction=\"out\"}} {s}"
        );
        let _ = writeln!(
            out,
            "wsrelay_remote_envelopes_total{{direction=\"in\"}} {r}"
        );
        let _ = writeln!(
            out,
            "wsrelay_cluster_server_errors_total {}",
            self.server_errors()
        );
        out
    }
}
