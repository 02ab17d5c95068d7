//! Backpressure, both ways.
//!
//! From a target to its clients: while the target's inbox is above its high-water mark (or
//! the queue to the target's node is full, see `Node::is_congested`), its relay connections
//! leave their sockets unread, so TCP pushes back on the clients. No frame is ever dropped;
//! a connection waits for room instead ([`Space`]).
//!
//! From a client to its connection: a write to a client that does not read waits, bounded by
//! the write timeout and the outbound limit, and gives way to a stop request ([`bounded`]).

use std::future::Future;
use std::pin::Pin;
use std::task::Context as TaskContext;

use futures_util::FutureExt;
use tokio::time::{sleep_until, Instant};
use wsrelay_process::{Context, ExitResult};

use crate::options::RelayOptions;
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
                None if ctx.node().is_congested(Some(ctx.pid()), &target.pid) => {
                    let (node, me, pid) =
                        (ctx.node().clone(), ctx.pid().clone(), target.pid.clone());
                    Some(Box::pin(async move {
                        node.wait_for_space(Some(&me), &pid).await
                    }))
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

/// Why a bounded write gave up.
pub(crate) enum Interrupted {
    /// It took longer than the write timeout, or the queue to the client (the connection's
    /// inbox) grew past its limit meanwhile.
    SlowConsumer,
    /// The process was asked to stop (terminate, a failed link, shutdown).
    Stop(ExitResult),
}

/// Runs a write, giving up when the client is a slow consumer or the process must stop: a
/// write to a client that does not read must hold neither the connection nor a `terminate`.
pub(crate) async fn bounded<T>(
    ctx: &Context,
    options: &RelayOptions,
    write: impl Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::pin!(write);
    // Fast path: a write that completes at once (the frame fits the buffer, the socket takes
    // the flush) needs no timer and no waiters; arming them cost more than the write.
    if let Some(done) = write.as_mut().now_or_never() {
        return Ok(done);
    }
    let deadline = sleep_until(Instant::now() + options.write_timeout);
    tokio::pin!(deadline);
    let mut changed = ctx.changed();
    loop {
        tokio::select! {
            biased;
            stop = ctx.stopped() => return Err(Interrupted::Stop(stop)),
            done = &mut write => return Ok(done),
            () = &mut deadline => return Err(Interrupted::SlowConsumer),
            () = &mut changed => {
                // The next wait sees any change made from here on.
                changed = ctx.changed();
                if ctx.inbox_bytes() > options.max_outbound_bytes {
                    return Err(Interrupted::SlowConsumer);
                }
            }
        }
    }
}
