//! Counters of the relay, read by the metrics exporter and the admin endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Cumulative counters and the current number of open connections.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub(crate) open: AtomicU64,
    pub(crate) upgrades_ok: AtomicU64,
    pub(crate) upgrades_refused: AtomicU64,
    pub(crate) plain_refused: AtomicU64,
    pub(crate) not_upgraded: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) sends_taken: AtomicU64,
    pub(crate) closes: [AtomicU64; CLOSE_REASONS.len()],
    /// The open connections, one record each (for operators).
    pub(crate) table: crate::table::ConnectionTable,
}

/// The close reasons counted by [`RelayStats::closes`] (docs/spec.md §6 words).
pub const CLOSE_REASONS: [&str; 9] = [
    "client_closed",
    "connection_lost",
    "server_closed",
    "transferred",
    "protocol_error",
    "message_too_big",
    "slow_consumer",
    "shutdown",
    "target_exited",
];

impl RelayStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Upgrades accepted (101) and refused (any other answer to an upgrade request).
    pub fn upgrades(&self) -> (u64, u64) {
        (
            self.upgrades_ok.load(Ordering::Relaxed),
            self.upgrades_refused.load(Ordering::Relaxed),
        )
    }

    /// Plain requests (not upgrades) refused before their handler ran: a foreign `Origin`
    /// (`403`) or an admission limit (`429`/`503`), docs/spec.md §3.1. Upgrade requests
    /// refused so are counted by [`LimitStats`](crate::LimitStats).
    pub fn plain_refused(&self) -> u64 {
        self.plain_refused.load(Ordering::Relaxed)
    }

    /// Targets sent `ws.leave` with reason `not_upgraded` (docs/spec.md §3.3): named by a
    /// request that did not become a connection (mostly plain requests answered `426`).
    pub fn not_upgraded(&self) -> u64 {
        self.not_upgraded.load(Ordering::Relaxed)
    }

    /// Data frames and payload bytes received from clients.
    pub fn inbound(&self) -> (u64, u64) {
        (
            self.frames_in.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
        )
    }

    /// Data frames and payload bytes sent to clients.
    pub fn outbound(&self) -> (u64, u64) {
        (
            self.frames_out.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// `ws.send` messages a connection took in its sender's call, handled without passing
    /// through its inbox or waking its task (the connection was idle; `parked.rs`): written,
    /// or ignored as invalid with the usual warning. Their frames are counted in
    /// [`outbound`](Self::outbound) too.
    pub fn sends_taken(&self) -> u64 {
        self.sends_taken.load(Ordering::Relaxed)
    }

    /// Closed connections per reason, in the order of [`CLOSE_REASONS`].
    pub fn closes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLOSE_REASONS
            .iter()
            .zip(&self.closes)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
    }

    pub(crate) fn count_close(&self, reason: &str) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.closes[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}
