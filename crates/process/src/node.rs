//! The node: the public face of the runtime, and the state its parts share.
//!
//! [`Node`] is one type with its methods spread over the files of the concepts they belong
//! to: spawning (`spawn.rs`), messages and signals (`signal.rs`), monitors and links
//! (`relations.rs`), names (`names.rs`), the exit protocol (`exit.rs`), what operators see
//! (`info.rs`) and what other nodes deliver (`inbound.rs`). This file holds the state they
//! share, the hosts, and the one routing decision they all make: is a PID local, remote, or
//! unreachable.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxBuildHasher;

use crate::cell::Cell;
use crate::host::Hosts;
use crate::message::reason;
use crate::table::ProcessTable;
use crate::{
    ExitResult, GroupEncoder, GroupScope, HostConfig, Pid, ProcessFactory, SendError, Shards,
    Transport, LOCAL_NODE,
};

/// A runtime node: it owns process hosts, the process table and the name registry.
///
/// Cloning is cheap; clones share the node.
///
/// # Examples
///
/// ```
/// use wsrelay_process::{Node, HostConfig, SpawnOptions, Value};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let node = Node::new();
/// node.add_host("app:processes", HostConfig::default());
/// let echo = node
///     .spawn("app:processes", SpawnOptions::new(), |ctx| async move {
///         let msg = ctx.recv().await;
///         if let Some(from) = msg.from() {
///             ctx.send(from, "pong", msg.payload().clone()).unwrap();
///         }
///     })
///     .unwrap();
/// let (me, _exit) = node.attach("app:processes", SpawnOptions::new()).unwrap().detach();
/// me.send(&echo, "ping", 42).unwrap();
/// assert_eq!(me.recv().await.payload(), &Value::Int(42));
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

/// What the clones of a node share.
pub(crate) struct NodeInner {
    pub(crate) name: Arc<str>,
    pub(crate) next_id: AtomicU64,
    pub(crate) table: ProcessTable,
    /// Node-scope names; cluster-scope names live in the transport.
    pub(crate) names: Mutex<HashMap<String, Pid>>,
    pub(crate) hosts: Hosts,
    /// Entry names come from config and code, not from clients, and every spawn of an entry
    /// looks one up: Fx hashing, not SipHash.
    pub(crate) factories: RwLock<HashMap<String, Arc<dyn ProcessFactory>, FxBuildHasher>>,
    pub(crate) transport: OnceLock<Arc<dyn Transport>>,
    /// The threads task-driven processes run on, when the node has its own.
    pub(crate) shards: OnceLock<Shards>,
    /// Process group scopes by name (`groups.rs`).
    pub(crate) group_scopes: Mutex<HashMap<String, GroupScope>>,
    /// How group sends prepare payloads, by topic (`groups.rs`).
    pub(crate) group_encoders: RwLock<HashMap<String, GroupEncoder>>,
    /// The sync generation of each other node's group announcements (`groups/remote.rs`).
    pub(crate) group_generations: Mutex<HashMap<String, u64>>,
    /// The event bus (`bus.rs`).
    pub(crate) bus: Arc<crate::bus::EventBus>,
    /// Set by [`Node::shutdown`]: no spawn succeeds afterwards.
    pub(crate) stopping: AtomicBool,
}

/// Where a PID lives, seen from this node.
pub(crate) enum Route<'a> {
    /// A process of this node (alive or not).
    Local,
    /// A process of another node, reached through the transport.
    Remote(&'a Arc<dyn Transport>),
    /// A process of another node, and no transport is set.
    Unreachable,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("processes", &self.process_count())
            .finish()
    }
}

impl Default for Node {
    fn default() -> Node {
        Node::new()
    }
}

impl Node {
    /// A node named `local`, the single-node default.
    pub fn new() -> Node {
        Node::named(LOCAL_NODE, 0)
    }

    /// A node named `name`. `incarnation` fills the high 32 bits of every PID number, so a PID
    /// from an earlier run of the same node can never name a process of this run.
    pub fn named(name: &str, incarnation: u32) -> Node {
        Node {
            inner: Arc::new(NodeInner {
                name: name.into(),
                next_id: AtomicU64::new((u64::from(incarnation) << 32) | 1),
                table: ProcessTable::new(),
                names: Mutex::new(HashMap::new()),
                hosts: Hosts::default(),
                factories: RwLock::new(HashMap::default()),
                transport: OnceLock::new(),
                shards: OnceLock::new(),
                group_scopes: Mutex::new(HashMap::new()),
                group_encoders: RwLock::new(HashMap::new()),
                group_generations: Mutex::new(HashMap::new()),
                bus: Arc::default(),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a process host. Adding an id twice keeps the first host and returns `false`.
    pub fn add_host(&self, id: &str, config: HostConfig) -> bool {
        self.inner.hosts.add(id, config)
    }

    /// The ids of the hosts and how many processes each runs.
    pub fn hosts(&self) -> Vec<(String, usize)> {
        self.inner.hosts.counts()
    }

    /// Sets the transport for PIDs of other nodes. Only the first call has an effect.
    pub fn set_transport(&self, transport: Arc<dyn Transport>) -> bool {
        self.inner.transport.set(transport).is_ok()
    }

    /// Runs the node's task-driven processes on `shards` (placed by [`Shards::place`]) instead
    /// of the caller's runtime, and lets engines (Lua) run theirs there too. Only the first
    /// call has an effect.
    pub fn set_shards(&self, shards: Shards) -> bool {
        self.inner.shards.set(shards).is_ok()
    }

    /// The shards set with [`set_shards`](Node::set_shards).
    pub fn shards(&self) -> Option<&Shards> {
        self.inner.shards.get()
    }

    /// Opens a batch of wake-ups on this thread: until it is dropped, what this thread
    /// delivers to processes whose tasks run on other shards wakes them once per shard, when
    /// the batch ends, instead of once per delivery (see [`WakeBatch`]). For a thread that
    /// delivers many messages at once from outside the shards (a cluster receiver).
    ///
    /// [`WakeBatch`]: crate::WakeBatch
    pub fn wake_batch(&self) -> crate::WakeBatch {
        crate::WakeBatch::open(self.shards())
    }

    /// Whether `pid` is a live process (for remote PIDs: not known to be dead).
    pub fn is_alive(&self, pid: &Pid) -> bool {
        match self.route(pid) {
            Route::Local => self.inner.table.get(pid).is_some_and(|c| c.is_alive()),
            Route::Remote(_) => true,
            Route::Unreachable => false,
        }
    }

    /// Stops spawning and terminates every process with the error `shutdown`.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        for cell in self.inner.table.cells() {
            cell.kill(ExitResult::error(reason::SHUTDOWN));
        }
    }

    // ===== shared by the other parts of the node =====

    /// Whether spawning has stopped for good.
    pub(crate) fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Whether `pid` names a process of this node.
    pub(crate) fn is_local(&self, pid: &Pid) -> bool {
        pid.node_arc() == &self.inner.name
    }

    /// Where `pid` lives; the transport is looked at only for remote PIDs.
    pub(crate) fn route(&self, pid: &Pid) -> Route<'_> {
        if self.is_local(pid) {
            return Route::Local;
        }
        match self.inner.transport.get() {
            Some(t) => Route::Remote(t),
            None => Route::Unreachable,
        }
    }

    /// The local process `pid` names, while it is in the table.
    pub(crate) fn cell(&self, pid: &Pid) -> Option<Arc<Cell>> {
        if !self.is_local(pid) {
            return None;
        }
        self.inner.table.get(pid)
    }
}

/// The error for a remote PID whose node cannot be reached.
pub(crate) fn unreachable(pid: &Pid) -> SendError {
    SendError::NodeUnreachable(pid.node().to_owned())
}
