//! The shutdown signal shared by the gateway and whatever it hands
//! connections to.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A graceful-shutdown signal plus the set of tasks shutdown waits for.
///
/// The gateway spawns its accept loops and connection tasks on
/// [`tracker`](Self::tracker) and stops when [`token`](Self::token) is
/// cancelled. A connection that is upgraded (WebSocket) leaves hyper, so the
/// gateway no longer tracks it: whoever takes it over joins the same shutdown
/// by spawning its task on the tracker and closing the connection when the
/// token is cancelled. Every request carries the gateway's `Shutdown` as an
/// extension, so a middleware can do both:
///
/// ```
/// # use wsrelay_http::{Request, Shutdown};
/// fn on_upgrade(req: &mut Request) {
///     let Some(shutdown) = req.extensions().get::<Shutdown>().cloned() else { return };
///     let upgrade = hyper::upgrade::on(req);
///     let tracker = shutdown.tracker().clone();
///     tracker.spawn(async move {
///         tokio::select! {
///             _ = shutdown.token().cancelled() => { /* send close 1001 */ }
///             _upgraded = upgrade => { /* relay frames */ }
///         }
///     });
/// }
/// ```
///
/// [`RunningGateway::shutdown`](crate::RunningGateway::shutdown) then waits
/// for those tasks as well, up to the drain timeout.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh signal with an empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token cancelled when shutdown starts.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The tracker whose tasks shutdown waits for.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Starts shutdown: servers stop accepting and idle connections close.
    /// [`RunningGateway::shutdown`](crate::RunningGateway::shutdown) also
    /// waits for the drain.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }
}
