//! Backpressure from a target to its clients: while the target's inbox is above its
//! high-water mark (or the queue to the target's node is full, see `Node::is_congested`), its
//! relay connections leave their sockets unread, so TCP pushes back on the clients. No frame
//! is ever dropped; a connection waits for room instead.

use std::future::Future;
use std::pin::Pin;
use std::task::Context as TaskContext;

use wsrelay_process::Context;

use crate::target::Target;

/// A connection's wait for room at its target, while the target is congested. Boxed when it
/// happens, so that the many connections that never wait hold none.
#[derive(Default)]
pub(crate) struct Space {
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Space {
    /// Whether the client may be read now: `false` while `target` is congested, and then
    /// `cx` is woken when it has room again.
    // Inlined into the connection loop's poll, as it was before it moved here (callgrind: 64
    // Ir a message as a call of its own).
    #[inline]
    pub(crate) fn poll_readable(
        &mut self,
        target: &Target,
        ctx: &Context,
        cx: &mut TaskContext<'_>,
    ) -> bool {
        loop {
            if let Some(waiting) = &mut self.waiting {
                if waiting.as_mut().poll(cx).is_pending() {
                    return false;
                }
                self.waiting = None;
            }
            self.waiting = match &target.local {
                Some(local) if local.is_congested() => {
                    let local = local.clone();
                    Some(Box::pin(async move { local.wait_for_space().await }))
                }
                None if ctx.node().is_congested(&target.pid) => {
                    let (node, pid) = (ctx.node().clone(), target.pid.clone());
                    Some(Box::pin(async move { node.wait_for_space(&pid).await }))
                }
                _ => return true,
            };
        }
    }

    /// Drops the wait: what it waited for no longer holds the client back (a transfer to
    /// another target).
    pub(crate) fn forget(&mut self) {
        self.waiting = None;
    }
}
