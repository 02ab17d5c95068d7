//! The table of open connections, for operators: who is connected, where, to what, and how
//! much each has carried.
//!
//! A connection is listed from the moment its `101` is sent (the middleware inserts it) and
//! removes itself when it ends (and, should its task be dropped, when it is dropped). The table holds one
//! entry per open connection, so it is bounded by the routes' admission limits like the
//! connections themselves. It is split into shards by PID so that connections starting and
//! ending on different threads rarely wait for one another; each lock is held for a map
//! insert, remove or copy, never across an await.
//!
//! The per-connection byte counters are relaxed atomics next to the relay's totals
//! ([`RelayStats`](crate::RelayStats)): one more add per frame, on a cache line the
//! connection's own thread owns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use wsrelay_process::Pid;

/// How many locks the table is split into.
const SHARDS: usize = 16;

/// The longest route text kept (a path is client input).
const MAX_ROUTE: usize = 256;

/// What one open connection shows operators; shared by the connection (which updates it)
/// and the table (which reads it).
#[derive(Debug)]
pub(crate) struct ConnectionInfo {
    /// The client's IP address as the gateway determined it (after trusted proxies).
    pub(crate) remote_addr: Option<Arc<str>>,
    route: Arc<str>,
    started: SystemTime,
    target: Mutex<Pid>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl ConnectionInfo {
    /// A new connection's record. `route` is cut to [`MAX_ROUTE`] bytes.
    pub(crate) fn new(remote_addr: Option<Arc<str>>, route: &str, target: Pid) -> ConnectionInfo {
        let mut end = route.len().min(MAX_ROUTE);
        while !route.is_char_boundary(end) {
            end -= 1;
        }
        ConnectionInfo {
            remote_addr,
            route: Arc::from(&route[..end]),
            started: SystemTime::now(),
            target: Mutex::new(target),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Records a transfer (`ws.control`) to `target`.
    pub(crate) fn set_target(&self, target: Pid) {
        *self.target.lock() = target;
    }

    fn snapshot(&self, pid: &Pid) -> ConnectionSnapshot {
        ConnectionSnapshot {
            pid: pid.clone(),
            remote_addr: self.remote_addr.clone(),
            route: self.route.clone(),
            target: self.target.lock().clone(),
            age: self.started.elapsed().unwrap_or(Duration::ZERO),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// One open connection as operators see it (`/admin/connections`, the dashboard).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionSnapshot {
    /// The connection's process.
    pub pid: Pid,
    /// The client's IP address, after trusted-proxy resolution (docs/spec.md §13).
    pub remote_addr: Option<Arc<str>>,
    /// The request path the client upgraded on (at most 256 bytes).
    pub route: Arc<str>,
    /// The target process now (it changes with `ws.control`).
    pub target: Pid,
    /// How long the connection has been open.
    pub age: Duration,
    /// Payload bytes received from the client.
    pub bytes_in: u64,
    /// Payload bytes queued to the client.
    pub bytes_out: u64,
}

/// One lock's share of the table.
///
/// Keyed by the connections' own PIDs, whose numbers the node hands out in sequence (no
/// client picks them): Fx hashing is enough, and SipHash cost every upgrade four hashes.
type Shard = Mutex<HashMap<Pid, Arc<ConnectionInfo>, FxBuildHasher>>;

/// The open connections of a relay (see the module docs).
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    shards: [Shard; SHARDS],
}

impl Default for ConnectionTable {
    fn default() -> Self {
        ConnectionTable {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
        }
    }
}

impl ConnectionTable {
    fn shard(&self, pid: &Pid) -> &Shard {
        // Sequential numbers: consecutive connections go to consecutive shards. The
        // remainder is below SHARDS, so the cast cannot truncate.
        &self.shards[(pid.id() % SHARDS as u64) as usize]
    }

    pub(crate) fn insert(&self, pid: &Pid, info: Arc<ConnectionInfo>) {
        self.shard(pid).lock().insert(pid.clone(), info);
    }

    pub(crate) fn remove(&self, pid: &Pid) {
        self.shard(pid).lock().remove(pid);
    }

    /// Up to `limit` open connections, oldest first.
    pub(crate) fn snapshot(&self, limit: usize) -> Vec<ConnectionSnapshot> {
        let mut out = Vec::new();
        for shard in &self.shards {
            // Copy the handles out, so the lock is held for the copy only.
            let infos: Vec<(Pid, Arc<ConnectionInfo>)> = shard
                .lock()
                .iter()
                .map(|(pid, info)| (pid.clone(), info.clone()))
                .collect();
            out.extend(infos.iter().map(|(pid, info)| info.snapshot(pid)));
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.age));
        out.truncate(limit);
        out
    }

    /// The record of connection `pid`, if it is open.
    pub(crate) fn get(&self, pid: &Pid) -> Option<ConnectionSnapshot> {
        let info = self.shard(pid).lock().get(pid).cloned()?;
        Some(info.snapshot(pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let info = ConnectionInfo::new(None, &long, Pid::new("n", "h", 1));
        assert!(info.route.len() <= MAX_ROUTE);
        assert!(long.starts_with(&*info.route));
    }

    #[test]
    fn snapshot_lists_what_is_open_and_respects_the_limit() {
        let table = ConnectionTable::default();
        for i in 0..5 {
            let pid = Pid::new("n", "h", i);
            table.insert(
                &pid,
                Arc::new(ConnectionInfo::new(None, "/ws", pid.clone())),
            );
        }
        assert_eq!(table.snapshot(100).len(), 5);
        assert_eq!(table.snapshot(3).len(), 3);
        table.remove(&Pid::new("n", "h", 2));
        assert_eq!(table.snapshot(100).len(), 4);
        assert!(table.get(&Pid::new("n", "h", 2)).is_none());
        assert!(table.get(&Pid::new("n", "h", 3)).is_some());
    }
}
