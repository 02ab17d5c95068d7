//! The peer table: every remote node this node keeps state for, bounded.
//!
//! A peer enters the table in two ways only: an *accepted* frame from it (decoded, addressed
//! to this node by the node its subject names and, with a cluster secret, authenticated; see
//! module `frame`), or local use: a send, monitor or link towards one of its PIDs (the node
//! may have just started and not been heard from yet). The table holds at most `max_peers`;
//! a new peer beyond that takes the place of the peer declared down the longest, or is
//! refused and counted (`wsrelay_remote_dropped_total{reason="peer_limit"}`). A peer down
//! for `forget_after` is forgotten by the control loop.
//!
//! Removing a peer is safe for the exactly-once guarantees because only peers declared down
//! and holding no relation leave: declaring down ends the connection, which fails every
//! monitor and link across it with `noconnection`; a down peer takes new relations only
//! towards a run of it not seen yet (module `routing`), and is not removed until those are
//! answered or expired. Both are decided under the peer's lock ([`PeerState::retire_if_idle`]
//! marks it retired, and a retired peer takes no relation). A removed peer stays down for
//! good (only the control loop revives a peer, and it finds peers through this table), so
//! late holders of its `Arc` see a down peer. Its writer holds a weak reference and ends
//! with it.
//!
//! [`PeerState::retire_if_idle`]: crate::peer::PeerState::retire_if_idle

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;

use crate::peer::Peer;
use crate::stats::{ClusterStats, DropReason};
use crate::throttle::Throttle;

/// What [`PeerTable::admit`] found or made.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The peer was known.
    Known(Arc<Peer>),
    /// A new peer; its writer must be started.
    New(Arc<Peer>),
    /// The table is full of peers that are up.
    Full,
}

/// The peers of this node; see the module docs.
#[derive(Debug)]
pub(crate) struct PeerTable {
    /// Fx, not SipHash: every remote send looks its peer up by name, and the table is
    /// bounded (`max`), so a flood of names chosen to collide cannot grow a bucket far.
    map: RwLock<HashMap<String, Arc<Peer>, FxBuildHasher>>,
    max: usize,
    stats: Arc<ClusterStats>,
    refusals: Throttle,
}

impl PeerTable {
    /// An empty table for at most `max` peers.
    pub(crate) fn new(max: usize, stats: Arc<ClusterStats>) -> PeerTable {
        PeerTable {
            map: RwLock::new(HashMap::with_hasher(FxBuildHasher)),
            max,
            stats,
            refusals: Throttle::new(),
        }
    }

    /// The peer named `name`, if known.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Peer>> {
        self.map.read().get(name).cloned()
    }

    /// Every peer known now.
    pub(crate) fn all(&self) -> Vec<Arc<Peer>> {
        self.map.read().values().cloned().collect()
    }

    /// The peer named `name`, created (with `subject`) if there is room.
    pub(crate) fn admit(&self, name: &str, subject: impl FnOnce() -> String) -> Admission {
        if let Some(peer) = self.get(name) {
            return Admission::Known(peer);
        }
        let mut map = self.map.write();
        if let Some(peer) = map.get(name) {
            return Admission::Known(peer.clone());
        }
        if map.len() >= self.max && !self.evict_longest_down(&mut map) {
            drop(map);
            self.refuse(name);
            return Admission::Full;
        }
        let peer = Arc::new(Peer::new(name, subject(), Instant::now()));
        map.insert(name.to_owned(), peer.clone());
        self.stats.set_peers_known(map.len());
        Admission::New(peer)
    }

    /// Removes `peer` if it is still the table's peer of its name, declared down and holding
    /// no relation; returns whether it did.
    pub(crate) fn forget(&self, peer: &Arc<Peer>) -> bool {
        let mut map = self.map.write();
        if !map.get(&peer.name).is_some_and(|p| Arc::ptr_eq(p, peer))
            || !peer.state.lock().retire_if_idle()
        {
            return false;
        }
        self.remove(&mut map, &peer.name);
        true
    }

    /// Makes room by removing the peer declared down the longest that holds no relation;
    /// false if there is none.
    fn evict_longest_down(&self, map: &mut HashMap<String, Arc<Peer>, FxBuildHasher>) -> bool {
        let mut down: Vec<_> = map
            .values()
            .filter_map(|p| Some((p.state.lock().down_since?, p)))
            .collect();
        down.sort_unstable_by_key(|(since, _)| *since);
        let victim = down
            .into_iter()
            .find(|(_, p)| p.state.lock().retire_if_idle())
            .map(|(_, p)| p.name.clone());
        let Some(name) = victim else { return false };
        tracing::info!(peer = %name, "peer table full: forgetting the peer down the longest");
        self.remove(map, &name);
        true
    }

    /// Removes `name` (already retired) and its metric series. Called under the table's
    /// write lock, so a new peer of the same name cannot set its series before the old one
    /// is removed.
    fn remove(&self, map: &mut HashMap<String, Arc<Peer>, FxBuildHasher>, name: &str) {
        map.remove(name);
        self.stats.remove_peer(name);
        self.stats.set_peers_known(map.len());
    }

    fn refuse(&self, name: &str) {
        self.stats.count_drop(DropReason::PeerLimit, 1);
        if self.refusals.allow() {
            tracing::warn!(
                peer = %name,
                max_peers = self.max,
                refused_total = self.stats.dropped()[DropReason::PeerLimit as usize].1,
                "peer table full of live peers: new peer refused (max_peers)"
            );
        }
    }
}
