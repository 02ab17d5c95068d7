//! Monitors and links: making and removing both ends, and what a link does when the process
//! at its other end exits.
//!
//! Each relation has two ends, one in each process's [`Relations`](crate::cell::Relations):
//! a monitor is `monitoring` on the watcher and `watchers` on the target, a link is `links`
//! on both. The caller's end is made first, under the caller's lock; the other end is made
//! in the other cell (local) or by the transport (remote). The two locks are never held
//! together; the `alive` flag of each cell settles races with the exit protocol.

use crate::cell::{Cell, Side};
use crate::message::reason;
use crate::node::Route;
use crate::{Event, ExitResult, LinkError, Node, Pid};

impl Node {
    /// `watcher` starts monitoring `target`. Exactly one EXIT will reach the watcher: the
    /// real one, or at once `noproc` (target dead) or `noconnection` (no transport).
    pub(crate) fn monitor(&self, watcher: &Cell, target: &Pid) -> Result<(), LinkError> {
        if !claim_end(watcher, Side::Monitoring, target)? {
            return Ok(());
        }
        match self.route(target) {
            Route::Local => {
                if !self.add_relation(target, Side::Watchers, &watcher.pid) {
                    // Monitoring a dead process delivers its EXIT at once, so no caller
                    // misses it.
                    watcher.push_event(exit_event(target, reason::NOPROC));
                }
            }
            Route::Remote(t) => t.monitor(&watcher.pid, target),
            Route::Unreachable => {
                watcher.push_event(exit_event(target, reason::NOCONNECTION));
            }
        }
        Ok(())
    }

    /// `watcher` stops monitoring `target`, if it still does.
    pub(crate) fn unmonitor(&self, watcher: &Cell, target: &Pid) {
        if watcher.unrelate(Side::Monitoring, target) {
            self.drop_target_end(&watcher.pid, target);
        }
    }

    /// Removes the target's end of the monitor `watcher` → `target`, once the watcher's end is
    /// gone (an unmonitor, or the watcher's exit).
    pub(crate) fn drop_target_end(&self, watcher: &Pid, target: &Pid) {
        match self.route(target) {
            Route::Local => self.remove_relation(target, Side::Watchers, watcher),
            Route::Remote(t) => t.demonitor(watcher, target),
            Route::Unreachable => {}
        }
    }

    /// Links `me` and `other`.
    pub(crate) fn link(&self, me: &Cell, other: &Pid) -> Result<(), LinkError> {
        if !claim_end(me, Side::Links, other)? {
            return Ok(());
        }
        let linked = match self.route(other) {
            Route::Local if self.add_relation(other, Side::Links, &me.pid) => Ok(()),
            Route::Local => Err(LinkError::NoProc(other.to_string())),
            Route::Remote(t) => {
                t.link(&me.pid, other);
                Ok(())
            }
            Route::Unreachable => Err(LinkError::NodeUnreachable(other.node().to_owned())),
        };
        if linked.is_err() {
            // The other end could not be made: take back this one.
            me.unrelate(Side::Links, other);
        }
        linked
    }

    /// Removes the link between `me` and `other`, both ends.
    pub(crate) fn unlink(&self, me: &Cell, other: &Pid) {
        if !me.unrelate(Side::Links, other) {
            return;
        }
        match self.route(other) {
            Route::Local => self.remove_relation(other, Side::Links, &me.pid),
            Route::Remote(t) => t.unlink(&me.pid, other),
            Route::Unreachable => {}
        }
    }

    /// Adds `peer` (local or remote) to a relation set of the local process `pid`; `false` if
    /// `pid` is not alive.
    pub(crate) fn add_relation(&self, pid: &Pid, side: Side, peer: &Pid) -> bool {
        self.cell(pid)
            .and_then(|cell| cell.relate(side, peer))
            .is_some()
    }

    /// Removes `peer` (local or remote) from a relation set of the local process `pid`.
    pub(crate) fn remove_relation(&self, pid: &Pid, side: Side, peer: &Pid) {
        if let Some(cell) = self.cell(pid) {
            cell.unrelate(side, peer);
        }
    }
}

/// Makes the caller's end of a new relation with `other`; whether it is new (relating twice
/// is one relation).
fn claim_end(me: &Cell, side: Side, other: &Pid) -> Result<bool, LinkError> {
    if &me.pid == other {
        return Err(LinkError::SelfReference);
    }
    me.relate(side, other).ok_or(LinkError::SelfDead)
}

/// `from`, linked to `cell`, has exited: drop the link and propagate an error exit.
pub(crate) fn link_exit(cell: &Cell, from: &Pid, result: ExitResult) {
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

/// The EXIT a watcher of `target` receives when the runtime answers for it (`noproc`,
/// `noconnection`).
pub(crate) fn exit_event(target: &Pid, error: &str) -> Event {
    Event::Exit {
        from: target.clone(),
        result: ExitResult::error(error),
    }
}
