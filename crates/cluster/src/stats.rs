//! The cluster's metrics, as `prometheus-client` metrics that register in the exporter's
//! registry ([`ClusterStats::register`]); the hot path only adds to atomics.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `wsrelay_cluster_connected` | gauge | NATS connection up (0/1) |
//! | `wsrelay_cluster_peers` | gauge | peers known now (at most `max_peers`) |
//! | `wsrelay_peer_up{peer}` | gauge | 1 heard from and up, 0 declared down; one series per peer heard from and not forgotten |
//! | `wsrelay_session_resets_total` | counter | connections ended (gap, reset, down, restart) |
//! | `wsrelay_peer_down_total` | counter | peers declared down |
//! | `wsrelay_remote_dropped_total{reason}` | counter | `reason` one of [`DROP_REASONS`] |
//! | `wsrelay_remote_envelopes_total{direction}` | counter | envelopes `out` / `in` |
//! | `wsrelay_remote_batches_total{direction}` | counter | NATS messages (batches) `out` / `in` |
//! | `wsrelay_cluster_server_errors_total` | counter | NATS server errors (permission violations) |
//!
//! The `peer` label takes only names of peers in the peer table, which holds at most
//! `max_peers` and forgets peers long down, so the series stay bounded whatever is published
//! to this node's subjects.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `reason` label values of `wsrelay_remote_dropped_total`, in the order of
/// [`ClusterStats::dropped`].
pub const DROP_REASONS: &[&str] = &[
    "noproc",
    "unreachable",
    "queue_full",
    "too_big",
    "fenced",
    "malformed",
    "forged",
    "unauthenticated",
    "peer_limit",
];

/// Why a remote message, signal or frame was dropped (index into [`DROP_REASONS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    /// The target process is not alive (or of an earlier incarnation).
    NoProc = 0,
    /// The peer is declared down or NATS has been away too long.
    Unreachable = 1,
    /// The peer's outbound queue is full.
    QueueFull = 2,
    /// The envelope exceeds the largest NATS payload.
    TooBig = 3,
    /// Traffic of a connection that has ended.
    Fenced = 4,
    /// A frame or envelope that does not decode.
    Malformed = 5,
    /// A frame or envelope that claims another sender or receiver than its subject.
    Forged = 6,
    /// A frame without a valid tag of the cluster secret.
    Unauthenticated = 7,
    /// A frame or send for a new peer while the peer table is full.
    PeerLimit = 8,
}

/// A fixed label set (`reason`, `direction`).
type StaticLabel = [(&'static str, &'static str); 1];
/// The `peer` label.
type PeerLabel = [(&'static str, String); 1];

/// Live metrics of one cluster node; cheap to read and to register at any time.
#[derive(Debug)]
pub struct ClusterStats {
    connected: Gauge,
    peers_known: Gauge,
    peer_up: Family<PeerLabel, Gauge>,
    session_resets: Counter,
    peer_downs: Counter,
    dropped_family: Family<StaticLabel, Counter>,
    /// The family's counters, indexed by [`DropReason`], so counting takes no lock.
    dropped: Vec<Counter>,
    envelopes: Family<StaticLabel, Counter>,
    sent_envelopes: Counter,
    received_envelopes: Counter,
    batches: Family<StaticLabel, Counter>,
    sent_batches: Counter,
    received_batches: Counter,
    group_sets: Family<StaticLabel, Counter>,
    sent_group_sets: Counter,
    received_group_sets: Counter,
    server_errors: Counter,
}

impl Default for ClusterStats {
    fn default() -> ClusterStats {
        let dropped_family = Family::<StaticLabel, Counter>::default();
        let dropped = DROP_REASONS
            .iter()
            .map(|r| dropped_family.get_or_create(&[("reason", *r)]).clone())
            .collect();
        let envelopes = Family::<StaticLabel, Counter>::default();
        let batches = Family::<StaticLabel, Counter>::default();
        let group_sets = Family::<StaticLabel, Counter>::default();
        let direction = |family: &Family<StaticLabel, Counter>, d| {
            family.get_or_create(&[("direction", d)]).clone()
        };
        ClusterStats {
            connected: Gauge::default(),
            peers_known: Gauge::default(),
            peer_up: Family::default(),
            session_resets: Counter::default(),
            peer_downs: Counter::default(),
            dropped_family,
            dropped,
            sent_envelopes: direction(&envelopes, "out"),
            received_envelopes: direction(&envelopes, "in"),
            envelopes,
            sent_batches: direction(&batches, "out"),
            received_batches: direction(&batches, "in"),
            batches,
            sent_group_sets: direction(&group_sets, "out"),
            received_group_sets: direction(&group_sets, "in"),
            group_sets,
            server_errors: Counter::default(),
        }
    }
}

impl ClusterStats {
    /// Registers every metric in `registry` (the ops listener's). The registry shares the
    /// metrics, so registering again (e.g. for every scrape) costs no copy of the values.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wsrelay_cluster_connected",
            "NATS connection up (0/1)",
            self.connected.clone(),
        );
        registry.register(
            "wsrelay_cluster_peers",
            "Cluster peers known now (at most max_peers)",
            self.peers_known.clone(),
        );
        registry.register(
            "wsrelay_peer_up",
            "Peer heard from and not declared down (0/1), per peer not yet forgotten",
            self.peer_up.clone(),
        );
        registry.register(
            "wsrelay_session_resets",
            "Cluster connections ended (gap, reset, peer down, peer restart)",
            self.session_resets.clone(),
        );
        registry.register(
            "wsrelay_peer_down",
            "Peers declared down",
            self.peer_downs.clone(),
        );
        registry.register(
            "wsrelay_remote_dropped",
            "Remote messages, signals and frames dropped, by reason",
            self.dropped_family.clone(),
        );
        registry.register(
            "wsrelay_remote_envelopes",
            "Envelopes (messages and signals) to and from other nodes, by direction",
            self.envelopes.clone(),
        );
        registry.register(
            "wsrelay_remote_batches",
            "NATS messages (batches of envelopes) to and from other nodes, by direction",
            self.batches.clone(),
        );
        registry.register(
            "wsrelay_group_sets",
            "Group membership envelopes (one group's members each) to and from other nodes, by direction",
            self.group_sets.clone(),
        );
        registry.register(
            "wsrelay_cluster_server_errors",
            "Errors reported by the NATS server, such as permission violations",
            self.server_errors.clone(),
        );
    }

    /// Whether the NATS connection is up (`wsrelay_cluster_connected`).
    pub fn connected(&self) -> bool {
        self.connected.get() != 0
    }

    /// Peers known now (`wsrelay_cluster_peers`).
    pub fn peers_known(&self) -> u64 {
        u64::try_from(self.peers_known.get()).unwrap_or_default()
    }

    /// Sessions ended (gap, reset, peer down, peer restart): `wsrelay_session_resets_total`.
    pub fn session_resets(&self) -> u64 {
        self.session_resets.get()
    }

    /// How often a peer was declared down: `wsrelay_peer_down_total`.
    pub fn peer_downs(&self) -> u64 {
        self.peer_downs.get()
    }

    /// Remote messages, signals and frames dropped, per reason of [`DROP_REASONS`]:
    /// `wsrelay_remote_dropped_total{reason}`.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        DROP_REASONS
            .iter()
            .zip(&self.dropped)
            .map(|(r, n)| (*r, n.get()))
            .collect()
    }

    /// Envelopes sent and received (`wsrelay_remote_envelopes_total{direction}`).
    pub fn envelopes(&self) -> (u64, u64) {
        (self.sent_envelopes.get(), self.received_envelopes.get())
    }

    /// NATS messages (batches) sent and received (`wsrelay_remote_batches_total{direction}`).
    pub fn batches(&self) -> (u64, u64) {
        (self.sent_batches.get(), self.received_batches.get())
    }

    /// Group membership envelopes (`GroupSet`: one group's members, changes coalesced or a
    /// snapshot's chunk) handed to the writer and received
    /// (`wsrelay_group_sets_total{direction}`).
    pub fn group_sets(&self) -> (u64, u64) {
        (self.sent_group_sets.get(), self.received_group_sets.get())
    }

    /// Errors reported by the NATS server, such as permission violations
    /// (`wsrelay_cluster_server_errors_total`).
    pub fn server_errors(&self) -> u64 {
        self.server_errors.get()
    }

    // ===== updates (crate only) =====

    pub(crate) fn count_drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].inc_by(n);
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }

    pub(crate) fn set_peers_known(&self, n: usize) {
        self.peers_known.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the `wsrelay_peer_up` series of a peer heard from.
    pub(crate) fn set_peer_up(&self, peer: &str, up: bool) {
        self.peer_up
            .get_or_create(&[("peer", peer.to_owned())])
            .set(i64::from(up));
    }

    /// Removes the series of a forgotten peer.
    pub(crate) fn remove_peer(&self, peer: &str) {
        self.peer_up.remove(&[("peer", peer.to_owned())]);
    }

    pub(crate) fn count_session_reset(&self) {
        self.session_resets.inc();
    }

    pub(crate) fn count_peer_down(&self) {
        self.peer_downs.inc();
    }

    pub(crate) fn count_sent(&self, envelopes: usize) {
        self.sent_envelopes.inc_by(envelopes as u64);
        self.sent_batches.inc();
    }

    pub(crate) fn count_received_batch(&self) {
        self.received_batches.inc();
    }

    pub(crate) fn count_received_envelopes(&self, n: usize) {
        self.received_envelopes.inc_by(n as u64);
    }

    pub(crate) fn count_group_sets_out(&self, n: usize) {
        self.sent_group_sets.inc_by(n as u64);
    }

    pub(crate) fn count_group_set_in(&self) {
        self.received_group_sets.inc();
    }

    pub(crate) fn count_server_error(&self) {
        self.server_errors.inc();
    }
}
