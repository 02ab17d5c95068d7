//! Process groups: named sets of processes inside isolated scopes (Erlang's `pg`, Wippy's `pg`
//! module), and sending one message to every member.
//!
//! A [`GroupScope`] (one per `pg.scope` entry) maps group names to members. A process joins a
//! group any number of times and leaves it as often (multi-join, as in Erlang: a process that
//! joined twice is listed twice). Any process may join another *local* process (Erlang's
//! `pg:join(Scope, Group, Pids)`): a relay target joins the connections it serves, so that
//! one group send reaches all their sockets. Memberships belong to the member: they end when
//! it exits, with the rest of its relations (`exit.rs`).
//!
//! **Sending to a group** ([`GroupScope::send`]) takes a snapshot of the distinct members and
//! pushes one clone of the message into each inbox, with no lookup in the process table: the
//! group keeps a handle of each member's cell. A message whose payload is an `Opaque` value
//! clones as a reference, so the payload is converted (and, for `ws.send`, encoded) once for
//! every member.
//!
//! **Across nodes** (module `remote`). With a transport that carries groups (the cluster),
//! every change of a local membership is announced to the other nodes *while the scope's
//! lock is held*, as the member's absolute join count, so announcements leave in the order of
//! the changes and a repeated one is harmless. Other nodes keep the members they hear of per
//! node, so a node that is lost takes all its members with it at once. A send to a group
//! goes to the local members directly and crosses to each other node with members **once**;
//! that node fans it out to its own local members ([`Inbound::group_send`](crate::Inbound::group_send)),
//! encoding it once there too. Membership is eventually consistent; messages from one sender
//! keep their order per receiver (`docs/cluster.md`, "Process groups across nodes").
//!
//! **Subscriptions.** A local process may [`subscribe`](GroupScope::subscribe) to a scope: it
//! then receives a `pg.diff` message for each change of membership (Phoenix Presence diffs:
//! `joins` and `leaves`, group name to PIDs), one per change, and exactly one for the loss of
//! a node, listing every member it took along.
//!
//! **Locks.** A join locks the member's cell, then the scope (so an exit cannot slip between
//! recording the membership and adding the member); nothing locks a cell while holding a
//! scope lock. Sends copy the snapshot and push with no scope lock held; the transport's
//! group methods that open peers are called with no scope lock held, and the announcement
//! under it only queues to peers already known (order: scope, then peer).

mod remote;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::cell::{Cell, GroupExit, Membership};
use crate::node::NodeInner;
use crate::{Map, Message, Node, Pid, Value};

pub use remote::GroupVisitor;
pub(crate) use remote::RemoteNode;

mod watch;

use self::watch::Watches;
pub use self::watch::{GroupEvent, GroupWatch, WatchError, MAX_WATCHES, WATCH_BUFFER};

/// Prepares a payload once for every member of a group send on one topic (see
/// [`Node::set_group_encoder`]); `None` leaves the payload as it is.
pub type GroupEncoder = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A group's name and its members (a process listed once per join).
pub type GroupMembers = (String, Vec<Pid>);

/// The topic of the membership changes a subscriber receives ([`GroupScope::subscribe`]).
pub const GROUP_DIFF_TOPIC: &str = "pg.diff";

/// Subscribers one scope keeps at most: each change is a message to every one of them.
pub const MAX_SUBSCRIBERS: usize = 1024;

/// The limits of one scope. Every limit is finite by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupLimits {
    /// The most groups with members at once (default 100,000).
    pub max_groups: usize,
    /// The most members (joins) in one group (default 1,000,000).
    pub max_members: usize,
    /// The most memberships (distinct group and member pairs) this node keeps for the
    /// members of *one other node* (default 100,000). Past it, further joins announced by
    /// that node are ignored here (its members stay reachable through the groups it
    /// already has here) until its memberships drop below the cap again.
    pub max_remote_members: usize,
}

impl Default for GroupLimits {
    fn default() -> GroupLimits {
        GroupLimits {
            max_groups: 100_000,
            max_members: 1_000_000,
            max_remote_members: 100_000,
        }
    }
}

impl GroupLimits {
    /// Limits with `max_groups` groups and `max_members` joins per group.
    pub fn new(max_groups: usize, max_members: usize) -> GroupLimits {
        GroupLimits {
            max_groups,
            max_members,
            ..GroupLimits::default()
        }
    }

    /// Sets the most memberships kept for the members of one other node.
    #[must_use]
    pub fn with_max_remote_members(mut self, max: usize) -> GroupLimits {
        self.max_remote_members = max;
        self
    }
}

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group name is empty.
    #[error("the group name is empty")]
    EmptyName,
    /// The process to join is not a live process of this node.
    #[error("{0} is not a live local process")]
    NoProcess(String),
    /// The process is not a member of the group.
    #[error("{pid} is not a member of group {group:?}")]
    NotMember {
        /// The group.
        group: String,
        /// The process.
        pid: String,
    },
    /// The scope has `max_groups` groups already.
    #[error("scope {scope:?} has reached its limit of {limit} groups")]
    TooManyGroups {
        /// The scope.
        scope: String,
        /// The limit.
        limit: usize,
    },
    /// The group has `max_members` members already.
    #[error("group {group:?} has reached its limit of {limit} members")]
    TooManyMembers {
        /// The group.
        group: String,
        /// The limit.
        limit: usize,
    },
    /// The scope has [`MAX_SUBSCRIBERS`] subscribers already.
    #[error("scope {scope:?} has reached its limit of {limit} subscribers")]
    TooManySubscribers {
        /// The scope.
        scope: String,
        /// The limit.
        limit: usize,
    },
}

/// A scope of process groups. Cloning is cheap; clones share the scope.
#[derive(Clone)]
pub struct GroupScope {
    pub(crate) inner: Arc<ScopeInner>,
}

pub(crate) struct ScopeInner {
    name: Arc<str>,
    /// Weak: the node holds its scopes.
    node: Weak<NodeInner>,
    limits: GroupLimits,
    groups: Mutex<Groups>,
    /// Subscriptions to membership changes, told under the `groups` lock (`groups/watch.rs`).
    watches: Watches,
    /// Processes that receive membership changes (`pg.diff`).
    subscribers: Mutex<Vec<Arc<Cell>>>,
    /// `subscribers.len()`, read without the lock: no diff is built while it is 0.
    subscriber_count: AtomicUsize,
}

/// Everything behind a scope's lock.
#[derive(Default)]
pub(crate) struct Groups {
    map: HashMap<Arc<str>, Group>,
    /// The members of other nodes, by node (module `remote`).
    remote: HashMap<Arc<str>, RemoteNode>,
}

/// One group: its local members with how many times each joined, the cached list of distinct
/// local members that sends use (rebuilt after a change), and the other nodes with members.
struct Group {
    name: Arc<str>,
    members: HashMap<Pid, Member>,
    joins: usize,
    snapshot: Option<Arc<[Arc<Cell>]>>,
    /// Other nodes with members of this group, and how many distinct members each has.
    nodes: HashMap<Arc<str>, usize>,
    /// The keys of `nodes`, cached for sends until the next change.
    nodes_snapshot: Option<Arc<[Arc<str>]>>,
}

impl Group {
    fn new(name: Arc<str>) -> Group {
        Group {
            name,
            members: HashMap::new(),
            joins: 0,
            snapshot: None,
            nodes: HashMap::new(),
            nodes_snapshot: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.nodes.is_empty()
    }
}

struct Member {
    cell: Arc<Cell>,
    count: usize,
}

/// Membership changes collected under the scope's lock, delivered to subscribers after it.
#[derive(Default)]
pub(crate) struct Diff {
    joins: Vec<(Arc<str>, Pid)>,
    leaves: Vec<(Arc<str>, Pid)>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

impl fmt::Debug for GroupScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupScope")
            .field("name", &self.inner.name)
            .field("groups", &self.inner.groups.lock().map.len())
            .finish()
    }
}

impl Node {
    /// Adds a group scope named `name` (a `pg.scope` entry id). Adding a name twice keeps the
    /// first scope and returns `false`.
    pub fn add_group_scope(&self, name: &str, limits: GroupLimits) -> bool {
        let mut scopes = self.inner.group_scopes.lock();
        if scopes.contains_key(name) {
            return false;
        }
        let scope = GroupScope {
            inner: Arc::new(ScopeInner {
                name: name.into(),
                node: Arc::downgrade(&self.inner),
                limits,
                groups: Mutex::new(Groups::default()),
                watches: Watches::default(),
                subscribers: Mutex::new(Vec::new()),
                subscriber_count: AtomicUsize::new(0),
            }),
        };
        scopes.insert(name.to_owned(), scope);
        true
    }

    /// The group scope named `name`.
    pub fn group_scope(&self, name: &str) -> Option<GroupScope> {
        self.inner.group_scopes.lock().get(name).cloned()
    }

    /// Every group scope.
    pub(crate) fn group_scopes(&self) -> Vec<GroupScope> {
        self.inner.group_scopes.lock().values().cloned().collect()
    }

    /// Has [`GroupScope::broadcast`] prepare payloads on `topic` with `encoder`, once per send
    /// for all members. The relay registers one for `ws.send`: the frame is encoded once and
    /// its bytes shared by every member's socket. A later call for the same topic replaces
    /// the encoder.
    pub fn set_group_encoder(&self, topic: &str, encoder: GroupEncoder) {
        self.inner
            .group_encoders
            .write()
            .insert(topic.to_owned(), encoder);
    }

    fn group_encoder(&self, topic: &str) -> Option<GroupEncoder> {
        self.inner.group_encoders.read().get(topic).cloned()
    }
}

impl GroupScope {
    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds one membership of `pid` (a live local process) to `group`.
    ///
    /// # Errors
    ///
    /// [`GroupError::EmptyName`], [`GroupError::NoProcess`], and the limits.
    pub fn join(&self, group: &str, pid: &Pid) -> Result<(), GroupError> {
        if group.is_empty() {
            return Err(GroupError::EmptyName);
        }
        let cell = self
            .inner
            .cell(pid)
            .ok_or_else(|| GroupError::NoProcess(pid.to_string()))?;
        // The cell's lock is held until the member is in the scope: an exit either sees the
        // membership and removes the member, or the join sees the process dead.
        let mut state = cell.state.lock();
        if !state.alive {
            return Err(GroupError::NoProcess(pid.to_string()));
        }
        let mut diff = Diff::default();
        let group = self.inner.add(group, pid, &cell, &mut diff)?;
        state.rel().groups.push(Membership {
            scope: self.inner.clone(),
            group,
        });
        drop(state);
        self.inner.notify(diff, "join", None);
        Ok(())
    }

    /// Removes one membership of `pid` from `group`.
    ///
    /// # Errors
    ///
    /// [`GroupError::NotMember`] if `pid` has no membership in `group`.
    pub fn leave(&self, group: &str, pid: &Pid) -> Result<(), GroupError> {
        let not_member = || GroupError::NotMember {
            group: group.to_owned(),
            pid: pid.to_string(),
        };
        let cell = self.inner.cell(pid).ok_or_else(not_member)?;
        let mut state = cell.state.lock();
        let memberships = &mut state.rel().groups;
        let at = memberships
            .iter()
            .position(|m| m.is_of(&self.inner) && &*m.group == group)
            .ok_or_else(not_member)?;
        memberships.swap_remove(at);
        let mut diff = Diff::default();
        self.inner.remove(group, pid, 1, &mut diff);
        drop(state);
        self.inner.notify(diff, "leave", None);
        Ok(())
    }

    /// The members of `group` on every node, a process listed once per join (empty if the
    /// group is unknown). Members of other nodes are as last heard from their node.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        all_pids(&self.inner.groups.lock(), group)
    }

    /// The members of `group` on this node, a process listed once per join.
    pub fn local_members(&self, group: &str) -> Vec<Pid> {
        let groups = self.inner.groups.lock();
        groups.map.get(group).map(local_pids).unwrap_or_default()
    }

    /// The groups that have members on any node.
    pub fn groups(&self) -> Vec<String> {
        self.inner
            .groups
            .lock()
            .map
            .keys()
            .map(|name| name.to_string())
            .collect()
    }

    /// The groups that have members on this node.
    pub fn local_groups(&self) -> Vec<String> {
        self.inner
            .groups
            .lock()
            .map
            .values()
            .filter(|g| !g.members.is_empty())
            .map(|g| g.name.to_string())
            .collect()
    }

    /// The groups `pid` is a member of (once per group).
    pub fn groups_of(&self, pid: &Pid) -> Vec<String> {
        let Some(cell) = self.inner.cell(pid) else {
            return self.inner.remote_groups_of(pid);
        };
        let state = cell.state.lock();
        let mut names: Vec<String> = state
            .rel
            .iter()
            .flat_map(|rel| rel.groups.iter())
            .filter(|m| m.is_of(&self.inner))
            .map(|m| m.group.to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Sends `payload` (and `extra` payloads) on `topic` from `from` to every distinct member
    /// of `group` on every node; returns how many *local* members got it. Each other node with
    /// members gets one envelope and fans it out there. Locally the payload is prepared once:
    /// by the encoder registered for the topic ([`Node::set_group_encoder`]), else made shared
    /// ([`Value::into_shared`]), so each member's message holds a reference to it.
    pub fn broadcast(
        &self,
        group: &str,
        from: Option<Pid>,
        topic: &str,
        payload: Value,
        extra: Vec<Value>,
    ) -> usize {
        let msg = Message::new(from, topic, payload).with_extra(extra);
        let nodes = self.inner.nodes_of(group);
        if let (Some(nodes), Some(node)) = (&nodes, self.inner.node()) {
            if let Some(transport) = node.inner.transport.get() {
                transport.group_send(nodes, &self.inner.name, group, &msg);
            }
        }
        self.broadcast_local(group, msg)
    }

    /// [`broadcast`](GroupScope::broadcast) of `msg` to the members of `group` on this node
    /// only; returns how many got it.
    pub fn broadcast_local(&self, group: &str, msg: Message) -> usize {
        let Some(members) = self.inner.snapshot(group) else {
            return 0;
        };
        let (from, topic, payload, extra) = msg.into_parts();
        let encoder = self
            .inner
            .node()
            .and_then(|node| node.group_encoder(&topic));
        let payload = encoder
            .and_then(|encode| encode(&payload))
            .unwrap_or_else(|| payload.into_shared());
        let extra = extra.into_iter().map(Value::into_shared).collect();
        let msg = Message::new(from, topic, payload).with_extra(extra);
        push_all(&members, &msg)
    }

    /// Sends `msg` to every distinct local member of `group` and returns how many got it
    /// (members that exited meanwhile do not). Each member gets a clone of the message: use
    /// [`broadcast`](GroupScope::broadcast) to share the payload and reach other nodes.
    pub fn send(&self, group: &str, msg: &Message) -> usize {
        let Some(members) = self.inner.snapshot(group) else {
            return 0;
        };
        push_all(&members, msg)
    }

    /// Has the local process `pid` receive a [`GROUP_DIFF_TOPIC`] message for every change of
    /// this scope's membership, on any node: a map with `scope`, `reason` (`join`, `leave`,
    /// `exit`, `remote`, `sync`, `nodedown`), `node` (for changes of another node's members)
    /// and `joins` / `leaves` (group name → list of PID strings). The loss of a node is one
    /// message listing all its members. Subscribing twice is one subscription; it ends with
    /// the process or [`unsubscribe`](GroupScope::unsubscribe).
    ///
    /// # Errors
    ///
    /// [`GroupError::NoProcess`], [`GroupError::TooManySubscribers`].
    pub fn subscribe(&self, pid: &Pid) -> Result<(), GroupError> {
        let cell = self
            .inner
            .cell(pid)
            .filter(|c| c.is_alive())
            .ok_or_else(|| GroupError::NoProcess(pid.to_string()))?;
        let mut subs = self.inner.subscribers.lock();
        subs.retain(|c| c.is_alive());
        if !subs.iter().any(|c| c.pid == *pid) {
            if subs.len() >= MAX_SUBSCRIBERS {
                return Err(GroupError::TooManySubscribers {
                    scope: self.inner.name.to_string(),
                    limit: MAX_SUBSCRIBERS,
                });
            }
            subs.push(cell);
        }
        self.inner
            .subscriber_count
            .store(subs.len(), Ordering::Release);
        Ok(())
    }

    /// Ends the subscription of `pid`; whether it had one.
    pub fn unsubscribe(&self, pid: &Pid) -> bool {
        let mut subs = self.inner.subscribers.lock();
        let before = subs.len();
        subs.retain(|c| c.pid != *pid && c.is_alive());
        self.inner
            .subscriber_count
            .store(subs.len(), Ordering::Release);
        subs.len() < before
    }
}

/// The local members of `g`, once per join.
fn local_pids(g: &Group) -> Vec<Pid> {
    let mut pids = Vec::with_capacity(g.joins);
    for (pid, member) in &g.members {
        pids.extend(std::iter::repeat_n(pid.clone(), member.count));
    }
    pids
}

fn push_all(members: &[Arc<Cell>], msg: &Message) -> usize {
    members
        .iter()
        .filter(|cell| cell.push_message(msg.clone()).is_some())
        .count()
}

impl GroupScope {
    /// The members of `group` (as [`members`](GroupScope::members) lists them) and a
    /// subscription to its later changes, taken atomically: every change is in the snapshot or
    /// reported by the watch, exactly once.
    ///
    /// # Errors
    ///
    /// [`WatchError::EmptyName`], [`WatchError::TooManyWatches`].
    pub fn monitor(&self, group: &str) -> Result<(GroupWatch, Vec<Pid>), WatchError> {
        if group.is_empty() {
            return Err(WatchError::EmptyName);
        }
        let groups = self.inner.groups.lock();
        let pids = all_pids(&groups, group);
        let watch = self.inner.watches.open(&self.inner, Some(group.into()))?;
        Ok((watch, pids))
    }

    /// Every group with its members, and a subscription to all later changes of the scope,
    /// taken atomically (see [`monitor`](GroupScope::monitor)).
    ///
    /// # Errors
    ///
    /// [`WatchError::TooManyWatches`].
    pub fn watch_all(&self) -> Result<(GroupWatch, Vec<GroupMembers>), WatchError> {
        let groups = self.inner.groups.lock();
        let all = groups
            .map
            .keys()
            .map(|name| (name.to_string(), all_pids(&groups, name)))
            .collect();
        let watch = self.inner.watches.open(&self.inner, None)?;
        Ok((watch, all))
    }
}

/// The members of `group` on every node, a process listed once per join.
fn all_pids(groups: &Groups, group: &str) -> Vec<Pid> {
    let Some(g) = groups.map.get(group) else {
        return Vec::new();
    };
    let mut pids = local_pids(g);
    for node in g.nodes.keys() {
        if let Some(remote) = groups.remote.get(node) {
            remote.pids(group, &mut pids);
        }
    }
    pids
}

impl ScopeInner {
    /// The node, while it lives.
    fn node(&self) -> Option<Node> {
        Some(Node {
            inner: self.node.upgrade()?,
        })
    }

    /// The local process `pid`, while the node lives.
    fn cell(&self, pid: &Pid) -> Option<Arc<Cell>> {
        self.node()?.cell(pid)
    }

    /// Tells the other nodes that the local `pid` is now in `group` `count` times. Called
    /// under the scope's lock, so the announcements of one scope leave in the order of the
    /// changes.
    fn announce(&self, group: &str, pid: &Pid, count: usize) {
        if let Some(node) = self.node() {
            if let Some(transport) = node.inner.transport.get() {
                transport.group_changed(&self.name, group, pid, count);
            }
        }
    }

    fn wants_diff(&self) -> bool {
        self.subscriber_count.load(Ordering::Acquire) > 0
    }

    /// Adds a join of `pid` to `group`; the group's shared name.
    fn add(
        &self,
        group: &str,
        pid: &Pid,
        cell: &Arc<Cell>,
        diff: &mut Diff,
    ) -> Result<Arc<str>, GroupError> {
        let mut groups = self.groups.lock();
        let groups = &mut groups.map;
        let local_groups = groups.len();
        let g = match groups.get_mut(group) {
            Some(g) => g,
            None => {
                if local_groups >= self.limits.max_groups {
                    return Err(GroupError::TooManyGroups {
                        scope: self.name.to_string(),
                        limit: self.limits.max_groups,
                    });
                }
                let name: Arc<str> = group.into();
                groups
                    .entry(name.clone())
                    .or_insert_with(|| Group::new(name))
            }
        };
        let name = g.name.clone();
        if g.joins >= self.limits.max_members {
            if g.is_empty() {
                groups.remove(group);
            }
            return Err(GroupError::TooManyMembers {
                group: group.to_owned(),
                limit: self.limits.max_members,
            });
        }
        g.joins += 1;
        let member = g.members.entry(pid.clone()).or_insert_with(|| Member {
            cell: cell.clone(),
            count: 0,
        });
        if member.count == 0 {
            g.snapshot = None;
            if self.wants_diff() {
                diff.joins.push((name.clone(), pid.clone()));
            }
        }
        member.count += 1;
        self.watches.emit(&name, true, pid, 1);
        self.announce(group, pid, member.count);
        Ok(name)
    }

    /// Removes `count` joins of `pid` from `group`; an emptied group goes away.
    fn remove(&self, group: &str, pid: &Pid, count: usize, diff: &mut Diff) {
        let mut groups = self.groups.lock();
        let groups = &mut groups.map;
        let Some(g) = groups.get_mut(group) else {
            return;
        };
        let Some(member) = g.members.get_mut(pid) else {
            return;
        };
        let removed = count.min(member.count);
        member.count -= removed;
        g.joins -= removed;
        self.watches.emit(&g.name, false, pid, removed);
        let left = member.count;
        if left == 0 {
            g.members.remove(pid);
            g.snapshot = None;
            if self.wants_diff() {
                diff.leaves.push((g.name.clone(), pid.clone()));
            }
        }
        self.announce(group, pid, left);
        if g.is_empty() {
            groups.remove(group);
        }
    }

    /// The distinct local members of `group`, cached until the next change.
    fn snapshot(&self, group: &str) -> Option<Arc<[Arc<Cell>]>> {
        let mut groups = self.groups.lock();
        let g = groups.map.get_mut(group)?;
        cached(&mut g.snapshot, g.members.is_empty(), || {
            g.members.values().map(|m| m.cell.clone()).collect()
        })
    }

    /// The other nodes with members of `group`, cached until the next change.
    fn nodes_of(&self, group: &str) -> Option<Arc<[Arc<str>]>> {
        let mut groups = self.groups.lock();
        let g = groups.map.get_mut(group)?;
        cached(&mut g.nodes_snapshot, g.nodes.is_empty(), || {
            g.nodes.keys().cloned().collect()
        })
    }

    /// Delivers `diff` to the subscribers (outside the scope's lock), dropping those that
    /// exited.
    fn notify(&self, diff: Diff, reason: &str, node: Option<&str>) {
        if diff.is_empty() || !self.wants_diff() {
            return;
        }
        let mut payload = Map::new()
            .with("scope", self.name.to_string())
            .with("reason", reason.to_owned());
        if let Some(node) = node {
            payload.insert("node", node.to_owned());
        }
        payload.insert("joins", by_group(diff.joins));
        payload.insert("leaves", by_group(diff.leaves));
        let msg = Message::new(None, GROUP_DIFF_TOPIC, Value::Map(payload).into_shared());
        let subs: Vec<Arc<Cell>> = self.subscribers.lock().clone();
        let mut gone = false;
        for cell in &subs {
            gone |= cell.push_message(msg.clone()).is_none();
        }
        if gone {
            let mut subs = self.subscribers.lock();
            subs.retain(|c| c.is_alive());
            self.subscriber_count.store(subs.len(), Ordering::Release);
        }
    }
}

/// The view in `slot`, built by `build` on the first read after a change cleared it; `None`
/// when the set it is built from is `empty`.
fn cached<T: ?Sized>(
    slot: &mut Option<Arc<T>>,
    empty: bool,
    build: impl FnOnce() -> Arc<T>,
) -> Option<Arc<T>> {
    if empty {
        return None;
    }
    Some(slot.get_or_insert_with(build).clone())
}

/// `group → [pid strings]`, groups in first-seen order.
fn by_group(entries: Vec<(Arc<str>, Pid)>) -> Value {
    let mut groups: Vec<(Arc<str>, Vec<Value>)> = Vec::new();
    for (group, pid) in entries {
        let text = Value::String(pid.as_str().to_owned());
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, pids)) => pids.push(text),
            None => groups.push((group, vec![text])),
        }
    }
    Value::Map(
        groups
            .into_iter()
            .map(|(g, pids)| (g.to_string(), Value::Array(pids)))
            .collect(),
    )
}

impl Membership {
    /// Whether this membership is in `scope` (the same scope, compared by address).
    fn is_of(&self, scope: &Arc<ScopeInner>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.scope), Arc::as_ptr(scope))
    }
}

impl GroupExit for ScopeInner {
    fn remove_member(&self, group: &str, pid: &Pid) {
        let mut diff = Diff::default();
        self.remove(group, pid, 1, &mut diff);
        self.notify(diff, "exit", None);
    }
}
