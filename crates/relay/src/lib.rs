//! The `websocket_relay` middleware of wsrelay: every WebSocket connection becomes a process.
//!
//! An endpoint handler answers a WebSocket upgrade request with the `X-WS-Relay` header
//! naming a *target* process. The middleware, which runs around the handler on the routers it
//! is configured for, then upgrades the request, and the connection becomes a process of its
//! own (PID on the server's host) that:
//!
//! - sends its target `ws.join`, one message per client frame, `ws.heartbeat` if asked, and
//!   `ws.leave` when it ends (SPEC §6), always in that order;
//! - turns `ws.send`, `ws.close` and `ws.control` (transfer to another target) from any process
//!   into frames and actions (SPEC §7);
//! - monitors its target and closes with `1000`/`1011` when it exits; exits itself with the
//!   reason of SPEC §8, so it can be monitored and linked like any process;
//! - enforces the limits of SPEC §9, including backpressure: it stops reading a client while
//!   the target's inbox is above its high-water mark, and closes a client that does not read
//!   as a slow consumer.
//!
//! The pieces: [`origin`] (who may connect), [`settings`] (header, control payload, router
//! options), [`events`] (the payloads exchanged with targets), the connection process, and the
//! middleware. Protocol details (handshake, frames, close handshake) live in `wsrelay-ws`;
//! HTTP plumbing in `wsrelay-http`; process semantics in `wsrelay-process`.
//!
//! # Rust targets
//!
//! Messages from a connection carry a [`ClientEvent`] as an opaque payload, so a Rust target
//! pays no conversion: `msg.payload().downcast_ref::<ClientEvent>()`. Lua targets and
//! `Value::into_plain` see the SPEC §6 map. Rust senders can pass [`Outgoing`] to `ws.send`.

mod connection;
pub mod events;
pub mod limits;
mod middleware;
pub mod origin;
pub mod settings;
mod stats;

use std::sync::Arc;

use wsrelay_http::MiddlewareRegistry;
use wsrelay_process::Node;

pub use events::{ClientEvent, ClientEventKind, Outgoing};
pub use limits::{LimitOptions, LimitStats};
pub use middleware::RELAY_HEADER;
pub use origin::OriginPolicy;
pub use settings::{RelayOptions, RelayTarget, SettingsError};
pub use stats::{RelayStats, CLOSE_REASONS};

/// The name under which the middleware is registered.
pub const MIDDLEWARE_NAME: &str = "websocket_relay";

/// The relay of one node: shared by the middleware of every router that uses it.
#[derive(Debug, Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

#[derive(Debug)]
struct RelayInner {
    node: Node,
    stats: Arc<RelayStats>,
    limit_stats: Arc<LimitStats>,
}

impl Relay {
    /// A relay whose connections are processes of `node`.
    pub fn new(node: Node) -> Relay {
        Relay {
            inner: Arc::new(RelayInner {
                node,
                stats: Arc::new(RelayStats::default()),
                limit_stats: Arc::new(LimitStats::default()),
            }),
        }
    }

    /// Registers the `websocket_relay` middleware; its options are checked when a router is
    /// built (see [`RelayOptions::from_options`]).
    pub fn register(&self, registry: &mut MiddlewareRegistry) {
        let relay = self.clone();
        registry.register(MIDDLEWARE_NAME, move |options: &wsrelay_http::Options| {
            let options = RelayOptions::from_options(options)?;
            let middleware = middleware::RelayMiddleware {
                relay: relay.clone(),
                // Each router gets its own connection pool and per-IP buckets.
                admission: Arc::new(limits::Admission::new(options.limits)),
                options: Arc::new(options),
            };
            Ok(Arc::new(middleware) as Arc<dyn wsrelay_http::Middleware>)
        });
    }

    /// The node connections run on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The relay's counters.
    pub fn stats(&self) -> &Arc<RelayStats> {
        &self.inner.stats
    }

    /// Upgrades refused by admission control (origin, rate, capacity).
    pub fn limit_stats(&self) -> &Arc<LimitStats> {
        &self.inner.limit_stats
    }

    fn refused(&self, response: wsrelay_http::Response) -> wsrelay_http::Response {
        self.inner
            .stats
            .upgrades_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        response
    }
}
