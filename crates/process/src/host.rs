//! Process hosts: named groups of processes with a size limit, an inbox high-water mark and
//! the runtime their tasks run on.
//!
//! A host is counted on spawn and on exit, so [`HostConfig::max_processes`] is a hard cap on
//! live processes. This file is below the process cell and the node: a cell knows its host
//! (for the mark), the host knows nothing of cells or nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;
use tokio::runtime::Handle;

use crate::SpawnError;

/// The inbox size above which [`ProcessRef::wait_for_space`](crate::ProcessRef::wait_for_space)
/// makes senders wait.
///
/// Sends never fail and never drop because an inbox is long: the mark is a signal that
/// cooperative senders (the WebSocket relay) use to stop reading their own input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HighWater {
    /// Queued messages.
    pub messages: usize,
    /// Estimated bytes held by queued messages.
    pub bytes: usize,
}

impl Default for HighWater {
    fn default() -> HighWater {
        HighWater {
            messages: 1024,
            bytes: 8 << 20,
        }
    }
}

/// Settings of a process host.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The most processes the host runs at once (`None`: no limit of its own).
    pub max_processes: Option<usize>,
    /// The inbox high-water mark of its processes.
    pub high_water: HighWater,
    /// The runtime its task-driven processes run on (`None`: the caller's runtime).
    pub runtime: Option<Handle>,
}

/// A host as the node keeps it: its settings and how many processes it runs now.
pub(crate) struct HostState {
    pub(crate) id: Arc<str>,
    count: AtomicUsize,
    max: usize,
    pub(crate) high_water: HighWater,
    pub(crate) runtime: Option<Handle>,
}

impl HostState {
    fn new(id: Arc<str>, config: HostConfig) -> HostState {
        HostState {
            id,
            count: AtomicUsize::new(0),
            max: config.max_processes.unwrap_or(usize::MAX),
            high_water: config.high_water,
            runtime: config.runtime,
        }
    }

    /// Takes a place for one more process.
    ///
    /// # Errors
    ///
    /// [`SpawnError::HostFull`] when the host already runs its maximum.
    pub(crate) fn reserve(&self) -> Result<(), SpawnError> {
        // Add first, then check: two racing spawns cannot both take the last place.
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.release();
            return Err(SpawnError::HostFull {
                host: self.id.to_string(),
                max: self.max,
            });
        }
        Ok(())
    }

    /// Gives back the place of a process that has exited.
    pub(crate) fn release(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// The hosts of a node, by id. Ids come from config and code, not from clients, and every
/// spawn looks one up: Fx hashing, not SipHash.
#[derive(Default)]
pub(crate) struct Hosts(RwLock<HashMap<Arc<str>, Arc<HostState>, FxBuildHasher>>);

impl Hosts {
    /// The host `id`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::UnknownHost`] if no host has that id.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<HostState>, SpawnError> {
        self.0
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownHost(id.to_owned()))
    }

    /// Adds the host `id`; `false` (and the first host stays) if the id is taken.
    pub(crate) fn add(&self, id: &str, config: HostConfig) -> bool {
        let mut hosts = self.0.write();
        if hosts.contains_key(id) {
            return false;
        }
        let id: Arc<str> = id.into();
        hosts.insert(id.clone(), Arc::new(HostState::new(id, config)));
        true
    }

    /// Each host's id and how many processes it runs, sorted by id.
    pub(crate) fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<_> = self
            .0
            .read()
            .values()
            .map(|h| (h.id.to_string(), h.count()))
            .collect();
        counts.sort();
        counts
    }
}
