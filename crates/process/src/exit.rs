//! The exit protocol: what happens, exactly once, when a process ends, and the guard that
//! makes sure it happens.
//!
//! Whatever ends a process (its body returns or panics, a kill, a failed link, shutdown, a
//! dropped driver) ends up in [`Node::finish`]. The cell's `alive` flag, cleared once under
//! its lock by `Cell::take_remains`, makes every later call a no-op, so each monitor gets one
//! EXIT, each link is resolved once and each name is released once (`docs/spec.md §2`).

use std::sync::Arc;

use crate::cell::Cell;
use crate::message::reason;
use crate::node::Route;
use crate::pid_set::PidSet;
use crate::relations::link_exit;
use crate::{Context, Event, ExitResult, Node, Pid};

impl Node {
    /// The exit protocol: runs once per process, whatever ended it.
    pub(crate) fn finish(&self, cell: &Arc<Cell>, result: ExitResult) {
        let Some(remains) = cell.take_remains() else {
            return;
        };
        let pid = &cell.pid;
        self.inner.table.remove(pid);
        cell.host.release();
        // Senders waiting for inbox space and a driver waiting for a kill must not wait on a
        // process that is gone.
        cell.space.notify_waiters();
        cell.killed.notify_one();
        self.release_names(pid, remains.names);
        for membership in remains.groups {
            membership.end(pid);
        }
        for target in remains.monitoring.iter() {
            self.drop_target_end(pid, target);
        }
        self.notify_watchers(pid, remains.watchers, &result);
        self.resolve_links(pid, remains.links, &result);
        tracing::trace!(pid = %pid, error = ?result.error, "process exited");
    }

    /// One EXIT to each process, local or remote, that monitored `pid`.
    fn notify_watchers(&self, pid: &Pid, watchers: PidSet, result: &ExitResult) {
        for watcher in watchers {
            let event = Event::Exit {
                from: pid.clone(),
                result: result.clone(),
            };
            self.deliver_event(&watcher, event);
        }
    }

    /// Tells each process linked to `pid` that it has exited.
    fn resolve_links(&self, pid: &Pid, links: PidSet, result: &ExitResult) {
        for linked in links {
            match self.route(&linked) {
                Route::Local => {
                    if let Some(other) = self.cell(&linked) {
                        link_exit(&other, pid, result.clone());
                    }
                }
                Route::Remote(t) => {
                    // Remote peers need the exit even when normal, to drop their side.
                    let event = Event::LinkDown {
                        from: pid.clone(),
                        result: result.clone(),
                    };
                    t.event(&linked, event);
                }
                Route::Unreachable => {}
            }
        }
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
    /// The guard of the process `ctx` acts as.
    pub(crate) fn new(ctx: Context) -> ExitGuard {
        ExitGuard { ctx, done: false }
    }

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
