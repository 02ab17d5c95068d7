//! Settings of a cluster node: names, NATS connection, credentials, detector and limits.

use std::path::PathBuf;
use std::time::Duration;

use wsrelay_process::GroupLimits;

use crate::frame::{valid_node_name, Grant};
use crate::{ClusterError, ClusterSecret};

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
    /// The shared secret that signs every frame; `None`: the source of a frame is trusted
    /// to NATS permissions (see [`ClusterSecret`]).
    pub secret: Option<ClusterSecret>,
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
    /// Peers known at once at most (256). A new peer beyond it replaces the peer down the
    /// longest, or is refused (`wsrelay_remote_dropped_total{reason="peer_limit"}`).
    pub max_peers: usize,
    /// A peer declared down and silent this long is forgotten: its state, its writer and its
    /// `wsrelay_peer_up` series go (5 min). It is created again by its next frame.
    pub forget_after: Duration,
    /// Queued envelopes per peer above which the senders that fill the queue count as
    /// congested towards it (4096); halfway from here to `queue_max`, every sender does.
    pub queue_high_water: usize,
    /// Queued bytes (encoded envelopes) per peer above which the senders that fill the
    /// queue count as congested towards it (8 MiB); halfway to `queue_max_bytes`, every
    /// sender does.
    pub queue_high_water_bytes: usize,
    /// Queued envelopes per peer above which remote sends fail (65536).
    pub queue_max: usize,
    /// Queued bytes per peer above which remote sends fail (64 MiB). An empty queue takes
    /// any envelope up to the NATS `max_payload`.
    pub queue_max_bytes: usize,
    /// The credit this node grants each peer: bytes of data frames the peer may have sent
    /// here and not yet had acknowledged (4 MiB). A frame larger than this still goes when
    /// nothing else is in flight.
    pub window_bytes: usize,
    /// The credit in frames, whatever their size (512): bounds the NATS messages this
    /// node's subscription holds for one peer.
    pub window_frames: u32,
    /// Envelopes per frame at most (256).
    pub batch_envelopes: usize,
    /// Bytes per frame at most, unless one envelope is larger (64 KiB).
    pub batch_bytes: usize,
    /// Monitors and links per peer held while the peer is declared down, towards PIDs of a
    /// run of it not heard from yet (16,384); beyond it a new one fails at once with
    /// `noconnection` (`docs/cluster.md`, "Incarnations").
    pub early_relations_max: usize,
    /// The KV bucket of cluster names; `None` disables cluster names.
    pub names_bucket: Option<String>,
    /// Replicas of the names bucket when it is created (1; use 3 on a 3-server cluster).
    pub names_replicas: usize,
    /// Worker threads of the cluster's own runtime (1).
    pub threads: usize,
    /// Process groups span the cluster (false): nodes announce themselves on
    /// `wsr.<cluster>.all.<node>` and exchange their group memberships, and a group send
    /// reaches members on every node (`docs/cluster.md`, "Process groups across nodes").
    pub groups: bool,
    /// Group scopes the node has from its start, with their limits. They are added before
    /// the node announces itself, so the other nodes' memberships, which answer that
    /// announcement, find them: a scope added to the node later does not learn the members
    /// the others had before (an unknown scope's announcements are ignored, as nodes may run
    /// different apps).
    pub group_scopes: Vec<(String, GroupLimits)>,
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
            secret: None,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            suspect_window: Duration::from_millis(500),
            disconnect_advisory: None,
            unreachable_grace: Duration::from_secs(2),
            max_peers: 256,
            forget_after: Duration::from_secs(300),
            queue_high_water: 4096,
            queue_high_water_bytes: 8 << 20,
            queue_max: 65536,
            queue_max_bytes: 64 << 20,
            window_bytes: 4 << 20,
            window_frames: 512,
            batch_envelopes: 256,
            batch_bytes: 64 << 10,
            early_relations_max: 16384,
            names_bucket: Some("wsr_names".to_owned()),
            names_replicas: 1,
            threads: 1,
            groups: false,
            group_scopes: Vec::new(),
        }
    }

    /// Lets process groups span the cluster (see [`ClusterOptions::groups`]).
    #[must_use]
    pub fn with_groups(mut self, groups: bool) -> Self {
        self.groups = groups;
        self
    }

    /// Adds group scope `name` with `limits` (see [`ClusterOptions::group_scopes`]).
    #[must_use]
    pub fn with_group_scope(mut self, name: &str, limits: GroupLimits) -> Self {
        self.group_scopes.push((name.to_owned(), limits));
        self
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Signs and checks every frame with `secret`.
    #[must_use]
    pub fn with_secret(mut self, secret: ClusterSecret) -> Self {
        self.secret = Some(secret);
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

    /// Sets how many peers may be known at once, and when a peer down is forgotten.
    #[must_use]
    pub fn with_peer_limits(mut self, max_peers: usize, forget_after: Duration) -> Self {
        self.max_peers = max_peers;
        self.forget_after = forget_after;
        self
    }

    /// Sets TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the credit this node grants each peer (see [`ClusterOptions::window_bytes`]).
    #[must_use]
    pub fn with_window(mut self, bytes: usize, frames: u32) -> Self {
        self.window_bytes = bytes;
        self.window_frames = frames;
        self
    }

    /// The credit this node grants, as heartbeats carry it.
    pub(crate) fn grant(&self) -> Grant {
        Grant {
            bytes: self.window_bytes as u64,
            frames: self.window_frames,
        }
    }

    /// Checks the names and limits before anything connects.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        for (what, name) in [("node", &self.node), ("cluster", &self.cluster)] {
            if !valid_node_name(name) {
                return Err(ClusterError::InvalidName {
                    what,
                    name: name.clone(),
                });
            }
        }
        if self.max_peers == 0 {
            return Err(ClusterError::InvalidSetting {
                setting: "max_peers".into(),
                value: "0".into(),
                problem: "a node needs room for at least one peer".into(),
            });
        }
        Ok(())
    }
}
