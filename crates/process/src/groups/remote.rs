//! The members other nodes announce, kept per node, and the transport's side of groups.
//!
//! A node announces each change of a local membership as the member's absolute join count
//! (0: gone), and, when a session with a peer (re)starts, a snapshot of all its local
//! memberships between a *sync begin* and a *sync end*. Entries carry the generation of the
//! last sync of their node: a sync begin starts a new generation, every announcement sets
//! its entry to the current one, and the sync end removes what the snapshot did not renew.
//! Members that did not change are never removed and re-added, so subscribers see only real
//! changes. A node lost (declared down, or restarted) takes all its entries at once.
//!
//! Each node's entries are capped per scope ([`GroupLimits::max_remote_members`]): past the
//! cap, new entries of that node are ignored (and counted), existing ones still update.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Diff, Group, Groups, ScopeInner};
use crate::inbound::Inbound;
use crate::{GroupScope, Message, Node, Pid};

/// What [`Inbound::group_snapshot`] calls for each group with local members: scope, group,
/// and each member with its join count.
pub type GroupVisitor<'a> = dyn FnMut(&str, &str, &[(Pid, usize)]) + 'a;

/// The members one other node has in one scope.
#[derive(Default)]
pub(crate) struct RemoteNode {
    /// Group → member → (joins, generation).
    groups: HashMap<Arc<str>, HashMap<Pid, (usize, u64)>>,
    /// Entries (distinct group and member pairs), for the cap.
    entries: usize,
}

impl RemoteNode {
    /// Appends the members of `group`, once per join.
    pub(crate) fn pids(&self, group: &str, out: &mut Vec<Pid>) {
        if let Some(members) = self.groups.get(group) {
            for (pid, (count, _)) in members {
                out.extend(std::iter::repeat_n(pid.clone(), *count));
            }
        }
    }
}

/// One remote membership gone: the group's node count follows, an emptied group goes.
fn forget_member(map: &mut HashMap<Arc<str>, Group>, node: &str, group: &str) {
    let Some(g) = map.get_mut(group) else { return };
    if let Some(n) = g.nodes.get_mut(node) {
        *n -= 1;
        if *n == 0 {
            g.nodes.remove(node);
            g.nodes_snapshot = None;
        }
    }
    if g.is_empty() {
        map.remove(group);
    }
}

impl ScopeInner {
    /// Sets the join counts of members of `node` in `group` (0: gone), in generation `gen`.
    /// Returns how many new members the cap refused.
    fn remote_set(
        &self,
        node: &str,
        group: &str,
        members: &[(Pid, usize)],
        gen: u64,
        diff: &mut Diff,
    ) -> usize {
        if group.is_empty() {
            return 0;
        }
        let mut guard = self.groups.lock();
        let Groups { map, remote } = &mut *guard;
        let mut refused = 0;
        for (pid, count) in members {
            if pid.node() != node {
                continue;
            }
            // A join count above what a scope allows is not a real one: cap what it costs.
            let count = &(*count).min(self.limits.max_members);
            let rn = remote.entry(node.into()).or_default();
            let in_group = rn.groups.get_mut(group).and_then(|m| m.get_mut(pid));
            match (in_group, *count) {
                (Some(entry), 0) => {
                    let old = entry.0;
                    self.remote_changed(group, pid, old, 0, diff);
                    let members = rn.groups.get_mut(group).expect("present");
                    members.remove(pid);
                    if members.is_empty() {
                        rn.groups.remove(group);
                    }
                    rn.entries -= 1;
                    forget_member(map, node, group);
                }
                (Some(entry), n) => {
                    self.remote_changed(group, pid, entry.0, n, diff);
                    *entry = (n, gen);
                }
                (None, 0) => {}
                (None, n) => {
                    if rn.entries >= self.limits.max_remote_members {
                        refused += 1;
                        continue;
                    }
                    let name: Arc<str> = map
                        .get(group)
                        .map_or_else(|| group.into(), |g| g.name.clone());
                    rn.groups
                        .entry(name.clone())
                        .or_default()
                        .insert(pid.clone(), (n, gen));
                    rn.entries += 1;
                    let g = map
                        .entry(name.clone())
                        .or_insert_with(|| Group::new(name.clone()));
                    let on_node = g.nodes.entry(node.into()).or_insert(0);
                    *on_node += 1;
                    if *on_node == 1 {
                        g.nodes_snapshot = None;
                    }
                    self.remote_changed(&name, pid, 0, n, diff);
                }
            }
        }
        if remote.get(node).is_some_and(|rn| rn.entries == 0) {
            remote.remove(node);
        }
        refused
    }

    /// Removes the members of `node` older than generation `gen` (`None`: all of them).
    fn remote_sweep(&self, node: &str, gen: Option<u64>, diff: &mut Diff) {
        let mut guard = self.groups.lock();
        let Groups { map, remote } = &mut *guard;
        let Some(rn) = remote.get_mut(node) else {
            return;
        };
        rn.groups.retain(|group, members| {
            members.retain(|pid, (count, g)| {
                let keep = gen.is_some_and(|gen| *g >= gen);
                if !keep {
                    rn.entries -= 1;
                    self.remote_changed(group, pid, *count, 0, diff);
                    forget_member(map, node, group);
                }
                keep
            });
            !members.is_empty()
        });
        if rn.entries == 0 {
            remote.remove(node);
        }
    }

    /// Every change of a remote member's join count (`old` → `new`) passes here, under the
    /// scope's lock, as local ones pass through `add` and `remove`: the one place that tells
    /// subscribers about remote joins and leaves.
    fn remote_changed(&self, group: &str, pid: &Pid, old: usize, new: usize, diff: &mut Diff) {
        // Watches (`pg.monitor`) count joins, as for local members; called under the scope's
        // lock like the local changes, so a watch's snapshot and its events stay exact.
        if old != new && self.watches.any() {
            self.watches
                .emit(&Arc::from(group), new > old, pid, new.abs_diff(old));
        }
        if !self.wants_diff() || (old == 0) == (new == 0) {
            return;
        }
        let entry = (Arc::from(group), pid.clone());
        if new == 0 {
            diff.leaves.push(entry);
        } else {
            diff.joins.push(entry);
        }
    }

    /// The groups the remote `pid` is a member of, as last heard.
    pub(super) fn remote_groups_of(&self, pid: &Pid) -> Vec<String> {
        let groups = self.groups.lock();
        let Some(rn) = groups.remote.get(pid.node()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rn
            .groups
            .iter()
            .filter(|(_, members)| members.contains_key(pid))
            .map(|(g, _)| g.to_string())
            .collect();
        names.sort();
        names
    }

    /// Calls `f` with each group that has local members and their join counts, under the
    /// scope's lock (so a snapshot and the announcements of later changes stay in order).
    fn local_state(&self, f: &mut GroupVisitor<'_>) {
        let groups = self.groups.lock();
        for g in groups.map.values() {
            if g.members.is_empty() {
                continue;
            }
            let members: Vec<(Pid, usize)> = g
                .members
                .iter()
                .map(|(pid, m)| (pid.clone(), m.count))
                .collect();
            f(&self.name, &g.name, &members);
        }
    }
}

impl Node {
    /// The current sync generation of `node`'s announcements.
    fn group_generation(&self, node: &str) -> u64 {
        self.inner
            .group_generations
            .lock()
            .get(node)
            .copied()
            .unwrap_or(0)
    }
}

impl Inbound {
    /// Calls `f` for every group with local members in every scope: scope, group, and each
    /// member with its join count. Each scope is visited under its lock, so what a transport
    /// queues from `f` is ordered with the announcements
    /// ([`Transport::group_changed`](crate::Transport::group_changed)) of later changes.
    /// `f` must not call back into the groups of this node.
    pub fn group_snapshot(&self, f: &mut GroupVisitor<'_>) {
        for scope in self.node().group_scopes() {
            scope.inner.local_state(f);
        }
    }

    /// `node` starts a snapshot of its memberships: what it does not announce again before
    /// [`group_sync_end`](Inbound::group_sync_end) is removed then.
    pub fn group_sync_begin(&self, node: &str) {
        *self
            .node()
            .inner
            .group_generations
            .lock()
            .entry(node.to_owned())
            .or_insert(0) += 1;
    }

    /// `node` ended its snapshot: its members not announced since the sync began go.
    pub fn group_sync_end(&self, node: &str) {
        let gen = self.node().group_generation(node);
        for scope in self.node().group_scopes() {
            let mut diff = Diff::default();
            scope.inner.remote_sweep(node, Some(gen), &mut diff);
            scope.inner.notify(diff, "sync", Some(node));
        }
    }

    /// `node` announced that each of `members` (its processes) is in `group` of `scope` so
    /// many times (0: no longer). Returns how many new members the scope's cap for one node
    /// refused ([`GroupLimits::max_remote_members`](crate::GroupLimits)); an unknown scope
    /// is ignored (nodes may run different apps).
    pub fn group_set(
        &self,
        node: &str,
        scope: &str,
        group: &str,
        members: &[(Pid, usize)],
    ) -> usize {
        let Some(scope) = self.node().group_scope(scope) else {
            return 0;
        };
        let gen = self.node().group_generation(node);
        let mut diff = Diff::default();
        let refused = scope.inner.remote_set(node, group, members, gen, &mut diff);
        scope.inner.notify(diff, "remote", Some(node));
        refused
    }

    /// `node` is lost (declared down, or restarted): all its members leave every group at
    /// once, and each subscriber gets one `pg.diff` per scope listing them (`nodedown`).
    pub fn group_node_down(&self, node: &str) {
        self.node().inner.group_generations.lock().remove(node);
        for scope in self.node().group_scopes() {
            let mut diff = Diff::default();
            scope.inner.remote_sweep(node, None, &mut diff);
            scope.inner.notify(diff, "nodedown", Some(node));
        }
    }

    /// A group send from another node: `msg` to the local members of `group` in `scope`,
    /// the payload prepared once for all of them (as [`GroupScope::broadcast_local`]).
    /// Returns how many got it.
    pub fn group_send(&self, scope: &str, group: &str, msg: Message) -> usize {
        let Some(scope): Option<GroupScope> = self.node().group_scope(scope) else {
            return 0;
        };
        scope.broadcast_local(group, msg)
    }
}
