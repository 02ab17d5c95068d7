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
//! **Locks.** A join locks the member's cell, then the scope (so an exit cannot slip between
//! recording the membership and adding the member); nothing locks a cell while holding a
//! scope lock. Sends copy the snapshot and push with no scope lock held.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::cell::{Cell, GroupExit, Membership};
use crate::node::NodeInner;
use crate::{Message, Node, Pid, Value};

mod watch;

use self::watch::Watches;
pub use self::watch::{GroupEvent, GroupWatch, WatchError, MAX_WATCHES, WATCH_BUFFER};

/// Prepares a payload once for every member of a group send on one topic (see
/// [`Node::set_group_encoder`]); `None` leaves the payload as it is.
pub type GroupEncoder = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A group's name and its members (a process listed once per join).
pub type GroupMembers = (String, Vec<Pid>);

/// The limits of one scope. Every limit is finite by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupLimits {
    /// The most groups with members at once (default 100,000).
    pub max_groups: usize,
    /// The most members (joins) in one group (default 1,000,000).
    pub max_members: usize,
}

impl Default for GroupLimits {
    fn default() -> GroupLimits {
        GroupLimits {
            max_groups: 100_000,
            max_members: 1_000_000,
        }
    }
}

impl GroupLimits {
    /// Limits with `max_groups` groups and `max_members` joins per group.
    pub fn new(max_groups: usize, max_members: usize) -> GroupLimits {
        GroupLimits {
            max_groups,
            max_members,
        }
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
    groups: Mutex<HashMap<Arc<str>, Group>>,
    /// Subscriptions to membership changes, told under the `groups` lock (`groups/watch.rs`).
    watches: Watches,
}

/// One group: its members with how many times each joined, and the cached list of distinct
/// members that sends use (rebuilt after a change).
struct Group {
    name: Arc<str>,
    members: HashMap<Pid, Member>,
    joins: usize,
    snapshot: Option<Arc<[Arc<Cell>]>>,
}

struct Member {
    cell: Arc<Cell>,
    count: usize,
}

impl fmt::Debug for GroupScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupScope")
            .field("name", &self.inner.name)
            .field("groups", &self.inner.groups.lock().len())
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
                groups: Mutex::new(HashMap::new()),
                watches: Watches::default(),
            }),
        };
        scopes.insert(name.to_owned(), scope);
        true
    }

    /// The group scope named `name`.
    pub fn group_scope(&self, name: &str) -> Option<GroupScope> {
        self.inner.group_scopes.lock().get(name).cloned()
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
        let group = self.inner.add(group, pid, &cell)?;
        state.rel().groups.push(Membership {
            scope: self.inner.clone(),
            group,
        });
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
        self.inner.remove(group, pid, 1);
        Ok(())
    }

    /// The members of `group`, a process listed once per join (empty if the group is unknown).
    pub fn members(&self, group: &str) -> Vec<Pid> {
        let groups = self.inner.groups.lock();
        let Some(g) = groups.get(group) else {
            return Vec::new();
        };
        let mut pids = Vec::with_capacity(g.joins);
        for (pid, member) in &g.members {
            pids.extend(std::iter::repeat_n(pid.clone(), member.count));
        }
        pids
    }

    /// The groups that have members.
    pub fn groups(&self) -> Vec<String> {
        self.inner
            .groups
            .lock()
            .keys()
            .map(|name| name.to_string())
            .collect()
    }

    /// The groups `pid` is a member of (once per group).
    pub fn groups_of(&self, pid: &Pid) -> Vec<String> {
        let Some(cell) = self.inner.cell(pid) else {
            return Vec::new();
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
    /// of `group`; returns how many got it. The payload is prepared once: by the encoder
    /// registered for the topic ([`Node::set_group_encoder`]), else made shared
    /// ([`Value::into_shared`]), so each member's message holds a reference to it.
    pub fn broadcast(
        &self,
        group: &str,
        from: Option<Pid>,
        topic: &str,
        payload: Value,
        extra: Vec<Value>,
    ) -> usize {
        let encoder = self.inner.node().and_then(|node| node.group_encoder(topic));
        let payload = encoder
            .and_then(|encode| encode(&payload))
            .unwrap_or_else(|| payload.into_shared());
        let extra = extra.into_iter().map(Value::into_shared).collect();
        let msg = Message::new(from, topic, payload).with_extra(extra);
        self.send(group, &msg)
    }

    /// Sends `msg` to every distinct member of `group` and returns how many got it (members
    /// that exited meanwhile do not). Each member gets a clone of the message: use
    /// [`broadcast`](GroupScope::broadcast) to share the payload.
    pub fn send(&self, group: &str, msg: &Message) -> usize {
        let Some(members) = self.inner.snapshot(group) else {
            return 0;
        };
        members
            .iter()
            .filter(|cell| cell.push_message(msg.clone()).is_some())
            .count()
    }
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
        let pids = groups.get(group).map(Group::pids).unwrap_or_default();
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
            .iter()
            .map(|(name, g)| (name.to_string(), g.pids()))
            .collect();
        let watch = self.inner.watches.open(&self.inner, None)?;
        Ok((watch, all))
    }
}

impl Group {
    /// The members, a process listed once per join.
    fn pids(&self) -> Vec<Pid> {
        let mut pids = Vec::with_capacity(self.joins);
        for (pid, member) in &self.members {
            pids.extend(std::iter::repeat_n(pid.clone(), member.count));
        }
        pids
    }
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

    /// Adds a join of `pid` to `group`; the group's shared name.
    fn add(&self, group: &str, pid: &Pid, cell: &Arc<Cell>) -> Result<Arc<str>, GroupError> {
        let mut groups = self.groups.lock();
        if !groups.contains_key(group) {
            if groups.len() >= self.limits.max_groups {
                return Err(GroupError::TooManyGroups {
                    scope: self.name.to_string(),
                    limit: self.limits.max_groups,
                });
            }
            let name: Arc<str> = group.into();
            let group = Group {
                name: name.clone(),
                members: HashMap::new(),
                joins: 0,
                snapshot: None,
            };
            groups.insert(name, group);
        }
        let g = groups.get_mut(group).expect("the group exists now");
        let name = g.name.clone();
        if g.joins >= self.limits.max_members {
            let empty = g.joins == 0;
            if empty {
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
        }
        member.count += 1;
        self.watches.emit(&name, true, pid, 1);
        Ok(name)
    }

    /// Removes `count` joins of `pid` from `group`; an emptied group goes away.
    fn remove(&self, group: &str, pid: &Pid, count: usize) {
        let mut groups = self.groups.lock();
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
        if member.count == 0 {
            g.members.remove(pid);
            g.snapshot = None;
        }
        if g.members.is_empty() {
            groups.remove(group);
        }
    }

    /// The distinct members of `group`, cached until the next change.
    fn snapshot(&self, group: &str) -> Option<Arc<[Arc<Cell>]>> {
        let mut groups = self.groups.lock();
        let g = groups.get_mut(group)?;
        Some(
            g.snapshot
                .get_or_insert_with(|| g.members.values().map(|m| m.cell.clone()).collect())
                .clone(),
        )
    }
}

impl Membership {
    /// Whether this membership is in `scope` (the same scope, compared by address).
    fn is_of(&self, scope: &Arc<ScopeInner>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.scope), Arc::as_ptr(scope))
    }
}

impl GroupExit for ScopeInner {
    fn remove_member(&self, group: &str, pid: &Pid) {
        self.remove(group, pid, 1);
    }
}
