//! The node: process table, hosts, names and the exit protocol.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;

use crate::cell::Cell;
use crate::message::reason;
use crate::{
    Context, Event, ExitResult, LinkError, Message, NameError, Pid, SendError, SpawnError,
    Transport, Value, LOCAL_NODE,
};

const SHARDS: usize = 64;

/// One shard of the process table.
type Shard = Mutex<HashMap<u64, Arc<Cell>, BuildHasherDefault<IdHasher>>>;

/// Hashes process numbers: they are unique and sequential, so one multiplication spreads them
/// (SipHash would cost more than the rest of a lookup).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The inbox size above which [`ProcessRef::wait_for_space`] makes senders wait.
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

pub(crate) struct HostState {
    pub(crate) id: Arc<str>,
    pub(crate) count: AtomicUsize,
    pub(crate) max: usize,
    pub(crate) high_water: HighWater,
    runtime: Option<Handle>,
}

/// Starts processes for a registry entry (a `process.lua` entry, a Rust process).
///
/// The node has already made the process routable and applied the spawn options (name,
/// monitor, link) when [`start`](ProcessFactory::start) runs, so nothing can be missed.
pub trait ProcessFactory: Send + Sync + fmt::Debug + 'static {
    /// Starts the body of `process` with `args`.
    ///
    /// # Errors
    ///
    /// A message saying why it cannot start; the process then exits with that error.
    fn start(&self, process: NewProcess, args: Vec<Value>) -> Result<(), String>;
}

/// How to spawn a process.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    parent: Option<Pid>,
    monitor: bool,
    link: bool,
    name: Option<String>,
}

impl SpawnOptions {
    /// Default options: no parent relation, no name.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// The parent monitors the new process (`spawn_monitored`).
    pub fn monitored_by(mut self, parent: Pid) -> SpawnOptions {
        self.parent = Some(parent);
        self.monitor = true;
        self
    }

    /// The parent is linked to the new process (`spawn_linked`).
    pub fn linked_to(mut self, parent: Pid) -> SpawnOptions {
        self.parent = Some(parent);
        self.link = true;
        self
    }

    /// Registers the new process under `name` before it runs.
    pub fn named(mut self, name: impl Into<String>) -> SpawnOptions {
        self.name = Some(name.into());
        self
    }
}

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
    inner: Arc<NodeInner>,
}

struct NodeInner {
    name: Arc<str>,
    next_id: AtomicU64,
    shards: Box<[Shard]>,
    names: Mutex<HashMap<String, Pid>>,
    hosts: RwLock<HashMap<Arc<str>, Arc<HostState>>>,
    factories: RwLock<HashMap<String, Arc<dyn ProcessFactory>>>,
    transport: OnceLock<Arc<dyn Transport>>,
    stopping: AtomicBool,
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
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::default()))
            .collect();
        Node {
            inner: Arc::new(NodeInner {
                name: name.into(),
                next_id: AtomicU64::new((u64::from(incarnation) << 32) | 1),
                shards,
                names: Mutex::new(HashMap::new()),
                hosts: RwLock::new(HashMap::new()),
                factories: RwLock::new(HashMap::new()),
                transport: OnceLock::new(),
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
        let mut hosts = self.inner.hosts.write();
        let added = !hosts.contains_key(id);
        if added {
            let id: Arc<str> = id.into();
            hosts.insert(
                id.clone(),
                Arc::new(HostState {
                    id,
                    count: AtomicUsize::new(0),
                    max: config.max_processes.unwrap_or(usize::MAX),
                    high_water: config.high_water,
                    runtime: config.runtime,
                }),
            );
        }
        added
    }

    /// The ids of the hosts and how many processes each runs.
    pub fn hosts(&self) -> Vec<(String, usize)> {
        let mut hosts: Vec<_> = self
            .inner
            .hosts
            .read()
            .values()
            .map(|h| (h.id.to_string(), h.count.load(Ordering::Relaxed)))
            .collect();
        hosts.sort();
        hosts
    }

    /// Sets the transport for PIDs of other nodes. Only the first call has an effect.
    pub fn set_transport(&self, transport: Arc<dyn Transport>) -> bool {
        self.inner.transport.set(transport).is_ok()
    }

    /// Registers the factory that [`spawn_entry`](Node::spawn_entry) uses for `entry`.
    pub fn register_factory(&self, entry: &str, factory: Arc<dyn ProcessFactory>) {
        self.inner
            .factories
            .write()
            .insert(entry.to_owned(), factory);
    }

    /// Whether a factory is registered for `entry`.
    pub fn has_factory(&self, entry: &str) -> bool {
        self.inner.factories.read().contains_key(entry)
    }

    // ===== spawning =====

    /// Creates a process on `host` without running anything yet: the PID is routable and
    /// monitorable when this returns, and the options are applied.
    ///
    /// # Errors
    ///
    /// Unknown or full host, name taken, parent gone, node shutting down.
    pub fn attach(&self, host: &str, options: SpawnOptions) -> Result<NewProcess, SpawnError> {
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(SpawnError::ShuttingDown);
        }
        let host = self
            .inner
            .hosts
            .read()
            .get(host)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownHost(host.to_owned()))?;
        let count = host.count.fetch_add(1, Ordering::AcqRel);
        if count >= host.max {
            host.count.fetch_sub(1, Ordering::AcqRel);
            return Err(SpawnError::HostFull {
                host: host.id.to_string(),
                max: host.max,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let pid = Pid::new(self.inner.name.clone(), host.id.clone(), id);
        let cell = Arc::new(Cell::new(pid, host));
        self.shard(id).lock().insert(id, cell.clone());
        let process = NewProcess {
            ctx: Context::new(self.clone(), cell),
        };
        // `shutdown` may have walked the table between the first check and the insert.
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(process.abort(SpawnError::ShuttingDown));
        }
        process.apply(options)?;
        Ok(process)
    }

    /// Spawns a Rust process running `body` on `host` and returns its PID once it is routable
    /// and monitorable.
    ///
    /// The body's output becomes the exit result (`()`, a [`Value`] or a `Result`). A panic in
    /// the body ends only this process, with an error exit.
    ///
    /// # Errors
    ///
    /// As [`attach`](Node::attach).
    ///
    /// # Panics
    ///
    /// If the host has no runtime of its own and this is called outside a Tokio runtime.
    pub fn spawn<F, Fut>(
        &self,
        host: &str,
        options: SpawnOptions,
        body: F,
    ) -> Result<Pid, SpawnError>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Into<ExitResult>,
    {
        Ok(self.attach(host, options)?.run(body))
    }

    /// Spawns a process of the registry entry `entry` through its factory.
    ///
    /// # Errors
    ///
    /// [`SpawnError::UnknownEntry`] when no factory is registered, or as [`attach`](Node::attach).
    pub fn spawn_entry(
        &self,
        entry: &str,
        host: &str,
        options: SpawnOptions,
        args: Vec<Value>,
    ) -> Result<Pid, SpawnError> {
        let factory = self
            .inner
            .factories
            .read()
            .get(entry)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownEntry(entry.to_owned()))?;
        let process = self.attach(host, options)?;
        let pid = process.pid().clone();
        factory
            .start(process, args)
            .map_err(|message| SpawnError::Factory {
                entry: entry.to_owned(),
                message,
            })?;
        Ok(pid)
    }

    // ===== messages and signals =====

    /// Delivers `msg` to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive; [`SendError::NodeUnreachable`] for a
    /// remote PID without a transport or with its node down.
    pub fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        if to.node_arc() != &self.inner.name {
            return self.transport(to)?.send(to, msg);
        }
        match self.cell(to) {
            Some(cell) if cell.push_message(msg).is_some() => Ok(()),
            _ => Err(SendError::NoProcess(to.to_string())),
        }
    }

    /// Whether the queue towards the remote `to` is above its high-water mark (always `false`
    /// for local PIDs: use [`ProcessRef::is_congested`] for those).
    pub fn is_congested(&self, to: &Pid) -> bool {
        to.node_arc() != &self.inner.name
            && self
                .inner
                .transport
                .get()
                .is_some_and(|t| t.is_congested(to))
    }

    /// Waits until the queue towards the remote `to` is below its high-water mark.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait_for_space(&self, to: &Pid) {
        if let Some(t) = self.inner.transport.get() {
            if to.node_arc() != &self.inner.name {
                t.wait_for_space(to).await;
            }
        }
    }

    /// A handle to a local live process that sends without a table lookup each time.
    pub fn process_ref(&self, pid: &Pid) -> Option<ProcessRef> {
        self.cell(pid).map(|cell| ProcessRef { cell })
    }

    /// Resolves a destination given as text: PID text (`{...}`) or a registered name.
    ///
    /// # Errors
    ///
    /// [`SendError::BadDestination`] for malformed PID text, [`SendError::NoName`] for an
    /// unknown name.
    pub fn resolve(&self, dest: &str) -> Result<Pid, SendError> {
        if dest.starts_with('{') {
            return dest.parse().map_err(|e: crate::PidParseError| {
                SendError::BadDestination(dest.to_owned(), e.problem().to_owned())
            });
        }
        self.lookup(dest)
            .ok_or_else(|| SendError::NoName(dest.to_owned()))
    }

    /// Whether `pid` is a live process (for remote PIDs: not known to be dead).
    pub fn is_alive(&self, pid: &Pid) -> bool {
        if pid.node_arc() != &self.inner.name {
            return self.inner.transport.get().is_some();
        }
        self.cell(pid).is_some_and(|c| c.is_alive())
    }

    /// Delivers `pid.cancel` with `reason` to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) -> Result<(), SendError> {
        if to.node_arc() != &self.inner.name {
            self.transport(to)?.cancel(from, to, reason);
            return Ok(());
        }
        let event = Event::Cancel {
            from: from.cloned(),
            reason,
        };
        match self.cell(to) {
            Some(cell) if cell.push_event(event) => Ok(()),
            _ => Err(SendError::NoProcess(to.to_string())),
        }
    }

    /// Stops `to` at once with the error `terminated`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn terminate(&self, to: &Pid) -> Result<(), SendError> {
        self.kill(to, ExitResult::error(reason::TERMINATED))
    }

    /// Stops `to` at once with `result` as its exit.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn kill(&self, to: &Pid, result: ExitResult) -> Result<(), SendError> {
        if to.node_arc() != &self.inner.name {
            self.transport(to)?.terminate(to);
            return Ok(());
        }
        match self.cell(to) {
            Some(cell) if cell.is_alive() => {
                cell.kill(result);
                Ok(())
            }
            _ => Err(SendError::NoProcess(to.to_string())),
        }
    }

    /// Delivers a system event to the local process `to` (used by transports). Returns
    /// whether it was delivered. An [`Event::LinkDown`] is handled as a link exit: it removes
    /// the link and, unless `to` traps links, stops `to`.
    pub fn deliver_event(&self, to: &Pid, event: Event) -> bool {
        if to.node_arc() != &self.inner.name {
            if let Some(t) = self.inner.transport.get() {
                t.event(to, event);
                return true;
            }
            return false;
        }
        let Some(cell) = self.cell(to) else {
            return false;
        };
        match event {
            Event::LinkDown { from, result } => {
                link_exit(&cell, &from, result);
                true
            }
            event => cell.push_event(event),
        }
    }

    // ===== monitors and links =====

    pub(crate) fn monitor(&self, watcher: &Arc<Cell>, target: &Pid) -> Result<(), LinkError> {
        if &watcher.pid == target {
            return Err(LinkError::SelfReference);
        }
        {
            let mut st = watcher.state.lock();
            if !st.alive {
                return Err(LinkError::SelfDead);
            }
            if !st.rel().monitoring.insert(target.clone()) {
                return Ok(());
            }
        }
        if target.node_arc() != &self.inner.name {
            match self.inner.transport.get() {
                Some(t) => t.monitor(&watcher.pid, target),
                None => {
                    watcher.push_event(exit_event(target, reason::NOCONNECTION));
                }
            }
            return Ok(());
        }
        if !self.add_watcher(target, watcher.pid.clone()) {
            // Monitoring a dead process delivers its EXIT at once, so no caller misses it.
            watcher.push_event(exit_event(target, reason::NOPROC));
        }
        Ok(())
    }

    /// Records that `watcher` (possibly remote) monitors the local `target`; `false` if
    /// `target` is not alive.
    fn add_watcher(&self, target: &Pid, watcher: Pid) -> bool {
        match self.cell(target) {
            Some(cell) => {
                let mut st = cell.state.lock();
                st.alive && {
                    st.rel().watchers.insert(watcher);
                    true
                }
            }
            None => false,
        }
    }

    /// A remote `watcher` starts monitoring the local `target` (used by transports). If the
    /// target is not alive, the `noproc` exit is sent back through the transport at once.
    pub fn add_remote_watcher(&self, watcher: Pid, target: &Pid) {
        if !self.add_watcher(target, watcher.clone()) {
            self.deliver_event(&watcher, exit_event(target, reason::NOPROC));
        }
    }

    /// A remote `watcher` stops monitoring the local `target` (used by transports).
    pub fn remove_remote_watcher(&self, watcher: &Pid, target: &Pid) {
        if let Some(cell) = self.cell(target) {
            if let Some(rel) = cell.state.lock().rel.as_mut() {
                rel.watchers.remove(watcher);
            }
        }
    }

    pub(crate) fn unmonitor(&self, watcher: &Arc<Cell>, target: &Pid) {
        if !watcher
            .state
            .lock()
            .rel
            .as_mut()
            .is_some_and(|r| r.monitoring.remove(target))
        {
            return;
        }
        if target.node_arc() != &self.inner.name {
            if let Some(t) = self.inner.transport.get() {
                t.demonitor(&watcher.pid, target);
            }
            return;
        }
        self.remove_remote_watcher(&watcher.pid, target);
    }

    pub(crate) fn link(&self, me: &Arc<Cell>, other: &Pid) -> Result<(), LinkError> {
        if &me.pid == other {
            return Err(LinkError::SelfReference);
        }
        {
            let mut st = me.state.lock();
            if !st.alive {
                return Err(LinkError::SelfDead);
            }
            if !st.rel().links.insert(other.clone()) {
                return Ok(());
            }
        }
        if other.node_arc() != &self.inner.name {
            return match self.inner.transport.get() {
                Some(t) => {
                    t.link(&me.pid, other);
                    Ok(())
                }
                None => {
                    if let Some(rel) = me.state.lock().rel.as_mut() {
                        rel.links.remove(other);
                    }
                    Err(LinkError::NodeUnreachable(other.node().to_owned()))
                }
            };
        }
        if self.add_remote_link(me.pid.clone(), other) {
            Ok(())
        } else {
            if let Some(rel) = me.state.lock().rel.as_mut() {
                rel.links.remove(other);
            }
            Err(LinkError::NoProc(other.to_string()))
        }
    }

    /// Records the link from `peer` (possibly remote) on the local `pid`; `false` if `pid` is
    /// not alive (used by transports).
    pub fn add_remote_link(&self, peer: Pid, pid: &Pid) -> bool {
        match self.cell(pid) {
            Some(cell) => {
                let mut st = cell.state.lock();
                st.alive && {
                    st.rel().links.insert(peer);
                    true
                }
            }
            None => false,
        }
    }

    /// Removes the link from `peer` on the local `pid` (used by transports).
    pub fn remove_remote_link(&self, peer: &Pid, pid: &Pid) {
        if let Some(cell) = self.cell(pid) {
            if let Some(rel) = cell.state.lock().rel.as_mut() {
                rel.links.remove(peer);
            }
        }
    }

    pub(crate) fn unlink(&self, me: &Arc<Cell>, other: &Pid) {
        if !me
            .state
            .lock()
            .rel
            .as_mut()
            .is_some_and(|r| r.links.remove(other))
        {
            return;
        }
        if other.node_arc() != &self.inner.name {
            if let Some(t) = self.inner.transport.get() {
                t.unlink(&me.pid, other);
            }
            return;
        }
        self.remove_remote_link(&me.pid, other);
    }

    // ===== names =====

    /// Registers `name` for the live process `pid`. Names are released when it exits.
    ///
    /// # Errors
    ///
    /// [`NameError::Taken`], [`NameError::Invalid`], [`NameError::NotAlive`].
    pub fn register(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        if name.is_empty() || name.len() > 255 || name.starts_with('{') {
            return Err(NameError::Invalid(name.to_owned()));
        }
        let cell = self
            .cell(pid)
            .ok_or_else(|| NameError::NotAlive(pid.to_string()))?;
        if let Some(t) = self.cluster_names(name) {
            return register_cluster_name(t, &cell, name);
        }
        let mut names = self.inner.names.lock();
        if names.contains_key(name) {
            return Err(NameError::Taken(name.to_owned()));
        }
        // Lock order: names, then the cell (exit takes the cell lock first, then names, but
        // never both at once).
        let mut st = cell.state.lock();
        if !st.alive {
            return Err(NameError::NotAlive(pid.to_string()));
        }
        st.rel().names.push(name.to_owned());
        names.insert(name.to_owned(), pid.clone());
        Ok(())
    }

    /// The process registered as `name`.
    pub fn lookup(&self, name: &str) -> Option<Pid> {
        if let Some(t) = self.cluster_names(name) {
            return t.lookup_name(name);
        }
        self.inner.names.lock().get(name).cloned()
    }

    /// Removes `name` if `pid` holds it.
    ///
    /// # Errors
    ///
    /// [`NameError::NotOwner`] if `pid` does not hold `name`.
    pub fn unregister(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        if let Some(t) = self.cluster_names(name) {
            t.unregister_name(name, pid)?;
            if let Some(cell) = self.cell(pid) {
                if let Some(rel) = cell.state.lock().rel.as_mut() {
                    rel.names.retain(|n| n != name);
                }
            }
            return Ok(());
        }
        let mut names = self.inner.names.lock();
        if names.get(name) != Some(pid) {
            return Err(NameError::NotOwner(name.to_owned()));
        }
        names.remove(name);
        drop(names);
        if let Some(cell) = self.cell(pid) {
            if let Some(rel) = cell.state.lock().rel.as_mut() {
                rel.names.retain(|n| n != name);
            }
        }
        Ok(())
    }

    /// How many names are registered.
    pub fn name_count(&self) -> usize {
        self.inner.names.lock().len()
    }

    // ===== introspection and shutdown =====

    /// How many processes are alive on this node.
    pub fn process_count(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// A snapshot of the live processes.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let cells: Vec<_> = shard.lock().values().cloned().collect();
            for cell in cells {
                let st = cell.state.lock();
                out.push(ProcessInfo {
                    pid: cell.pid.clone(),
                    inbox_len: st.inbox.len(),
                    inbox_peak: st.inbox_peak,
                    monitors: st.rel.as_ref().map_or(0, |r| r.watchers.len()),
                    links: st.rel.as_ref().map_or(0, |r| r.links.len()),
                    names: st.rel.as_ref().map_or_else(Vec::new, |r| r.names.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.pid.cmp(&b.pid));
        out
    }

    /// How many monitors and links are held, counted on both ends (for leak checks).
    pub fn relation_count(&self) -> usize {
        let mut n = 0;
        for shard in self.inner.shards.iter() {
            for cell in shard.lock().values() {
                let st = cell.state.lock();
                n += st
                    .rel
                    .as_ref()
                    .map_or(0, |r| r.watchers.len() + r.monitoring.len() + r.links.len());
            }
        }
        n
    }

    /// Stops spawning and terminates every process with the error `shutdown`.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        for shard in self.inner.shards.iter() {
            let cells: Vec<_> = shard.lock().values().cloned().collect();
            for cell in cells {
                cell.kill(ExitResult::error(reason::SHUTDOWN));
            }
        }
    }

    // ===== internals =====

    fn shard(&self, id: u64) -> &Shard {
        &self.inner.shards[(id as usize) % SHARDS]
    }

    pub(crate) fn cell(&self, pid: &Pid) -> Option<Arc<Cell>> {
        if pid.node_arc() != &self.inner.name {
            return None;
        }
        let cell = self.shard(pid.id()).lock().get(&pid.id()).cloned()?;
        (cell.pid == *pid).then_some(cell)
    }

    /// The transport, if it handles `name` as a cluster-scope name.
    fn cluster_names(&self, name: &str) -> Option<&Arc<dyn Transport>> {
        self.inner.transport.get().filter(|t| t.owns_name(name))
    }

    fn transport(&self, to: &Pid) -> Result<&Arc<dyn Transport>, SendError> {
        self.inner
            .transport
            .get()
            .ok_or_else(|| SendError::NodeUnreachable(to.node().to_owned()))
    }

    /// The exit protocol: runs once per process, whatever ended it.
    pub(crate) fn finish(&self, cell: &Arc<Cell>, result: ExitResult) {
        let Some(remains) = cell.take_remains() else {
            return;
        };
        let pid = &cell.pid;
        self.shard(pid.id()).lock().remove(&pid.id());
        cell.host.count.fetch_sub(1, Ordering::AcqRel);
        cell.space.notify_waiters();
        cell.killed.notify_one();
        if !remains.names.is_empty() {
            let mut names = self.inner.names.lock();
            for name in remains.names {
                if let Some(t) = self.cluster_names(&name) {
                    let _ = t.unregister_name(&name, pid);
                } else if names.get(&name) == Some(pid) {
                    names.remove(&name);
                }
            }
        }
        for target in &remains.monitoring {
            if target.node_arc() == &self.inner.name {
                self.remove_remote_watcher(pid, target);
            } else if let Some(t) = self.inner.transport.get() {
                t.demonitor(pid, target);
            }
        }
        for watcher in remains.watchers {
            let event = Event::Exit {
                from: pid.clone(),
                result: result.clone(),
            };
            self.deliver_event(&watcher, event);
        }
        for linked in remains.links {
            if linked.node_arc() != &self.inner.name {
                if let Some(t) = self.inner.transport.get() {
                    // Remote peers need the exit even when normal, to drop their side.
                    t.event(
                        &linked,
                        Event::LinkDown {
                            from: pid.clone(),
                            result: result.clone(),
                        },
                    );
                }
            } else if let Some(other) = self.cell(&linked) {
                link_exit(&other, pid, result.clone());
            }
        }
        tracing::trace!(pid = %pid, error = ?result.error, "process exited");
    }
}

/// Registers a cluster-scope name through the transport and records it on the process, so it
/// is released when the process exits.
fn register_cluster_name(
    t: &Arc<dyn Transport>,
    cell: &Arc<Cell>,
    name: &str,
) -> Result<(), NameError> {
    t.register_name(name, &cell.pid)?;
    let mut st = cell.state.lock();
    if !st.alive {
        drop(st);
        let _ = t.unregister_name(name, &cell.pid);
        return Err(NameError::NotAlive(cell.pid.to_string()));
    }
    st.rel().names.push(name.to_owned());
    Ok(())
}

/// `from`, linked to `cell`, has exited: drop the link and propagate an error exit.
fn link_exit(cell: &Arc<Cell>, from: &Pid, result: ExitResult) {
    let trap = {
        let mut st = cell.state.lock();
        if !st.rel.as_mut().is_some_and(|r| r.links.remove(from)) || !result.is_error() {
            return;
        }
        st.trap_links
    };
    if trap {
        cell.push_event(Event::LinkDown {
            from: from.clone(),
            result,
        });
    } else {
        cell.kill(ExitResult::error(reason::LINKED_FAILED));
    }
}

fn exit_event(target: &Pid, error: &str) -> Event {
    Event::Exit {
        from: target.clone(),
        result: ExitResult::error(error),
    }
}

/// A process that exists (routable, monitorable) but whose body has not started.
///
/// Either [`run`](NewProcess::run) a future as its body, or [`detach`](NewProcess::detach) it
/// to drive it yourself (the Lua engine does, to run many processes in one Lua state).
#[derive(Debug)]
#[must_use = "a new process exits with an error if it is dropped without running"]
pub struct NewProcess {
    ctx: Context,
}

impl NewProcess {
    /// The PID of the new process.
    pub fn pid(&self) -> &Pid {
        self.ctx.pid()
    }

    fn apply(&self, options: SpawnOptions) -> Result<(), SpawnError> {
        let node = self.ctx.node();
        if let Some(name) = &options.name {
            if let Err(e) = node.register(name, self.pid()) {
                node.finish(&self.ctx.cell, ExitResult::error(&e));
                return Err(e.into());
            }
        }
        if let Some(parent) = &options.parent {
            let parent_gone = || SpawnError::ParentGone(parent.to_string());
            let parent_cell = node.cell(parent);
            if options.monitor {
                let monitored = parent_cell
                    .as_ref()
                    .is_some_and(|p| node.monitor(p, self.pid()).is_ok());
                if !monitored {
                    return Err(self.abort(parent_gone()));
                }
            }
            if options.link && node.link(&self.ctx.cell, parent).is_err() {
                return Err(self.abort(parent_gone()));
            }
        }
        Ok(())
    }

    fn abort(&self, error: SpawnError) -> SpawnError {
        self.ctx
            .node()
            .finish(&self.ctx.cell, ExitResult::error(&error));
        error
    }

    /// Runs `body` as the process on its host's runtime and returns the PID.
    ///
    /// # Panics
    ///
    /// If the host has no runtime of its own and this is called outside a Tokio runtime.
    pub fn run<F, Fut>(self, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Into<ExitResult>,
    {
        let pid = self.pid().clone();
        let (ctx, guard) = self.detach();
        let cell = ctx.cell.clone();
        let runtime = cell.host.runtime.clone();
        let fut = AssertUnwindSafe(body(ctx)).catch_unwind();
        let task = async move {
            let result = tokio::select! {
                // Kill first: a terminated process must not run another step.
                biased;
                killed = cell.wait_killed() => killed,
                done = fut => match done {
                    Ok(output) => output.into(),
                    Err(panic) => ExitResult::error(format!("panic: {}", panic_message(&*panic))),
                },
            };
            guard.exit(result);
        };
        match runtime {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        pid
    }

    /// Hands the process to its caller: a [`Context`] to act as it, and an [`ExitGuard`]
    /// that ends it (on [`ExitGuard::exit`], or with an error when dropped).
    pub fn detach(self) -> (Context, ExitGuard) {
        let guard = ExitGuard {
            ctx: self.ctx.clone(),
            done: false,
        };
        (self.ctx, guard)
    }
}

/// Ends a detached process exactly once: explicitly with [`exit`](ExitGuard::exit), or with
/// the error `terminated` when dropped (a cancelled task, a runtime shutting down).
#[derive(Debug)]
pub struct ExitGuard {
    ctx: Context,
    done: bool,
}

impl ExitGuard {
    /// Ends the process with `result`, unless it already ended.
    pub fn exit(mut self, result: impl Into<ExitResult>) {
        self.done = true;
        self.ctx.node().finish(&self.ctx.cell, result.into());
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.done {
            let result = self
                .ctx
                .cell
                .kill_requested()
                .unwrap_or_else(|| ExitResult::error(reason::TERMINATED));
            self.ctx.node().finish(&self.ctx.cell, result);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// A handle to a local process for repeated sends (no table lookup per message) and for
/// waiting on its inbox high-water mark.
#[derive(Clone)]
pub struct ProcessRef {
    cell: Arc<Cell>,
}

impl fmt::Debug for ProcessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessRef").field(&self.cell.pid).finish()
    }
}

impl ProcessRef {
    /// The PID of the process.
    pub fn pid(&self) -> &Pid {
        &self.cell.pid
    }

    /// Delivers `msg`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if the process has exited.
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        match self.cell.push_message(msg) {
            Some(_) => Ok(()),
            None => Err(SendError::NoProcess(self.cell.pid.to_string())),
        }
    }

    /// Whether the process is alive.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// Whether the inbox is at or above its high-water mark.
    pub fn is_congested(&self) -> bool {
        self.cell.is_congested()
    }

    /// The number of messages in the inbox.
    pub fn inbox_len(&self) -> usize {
        self.cell.inbox_len.load(Ordering::Acquire)
    }

    /// Waits until the inbox is below its high-water mark, or the process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait_for_space(&self) {
        self.cell.wait_for_space().await;
    }
}

/// A snapshot of one process, for operators.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// Its PID.
    pub pid: Pid,
    /// Messages waiting in its inbox.
    pub inbox_len: usize,
    /// The longest its inbox has been.
    pub inbox_peak: usize,
    /// How many processes monitor it.
    pub monitors: usize,
    /// How many processes it is linked to.
    pub links: usize,
    /// Its registered names.
    pub names: Vec<String>,
}
