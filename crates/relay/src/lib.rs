//! The `websocket_relay` middleware of wsrelay: every WebSocket connection becomes a process.
//!
//! An endpoint handler answers a WebSocket upgrade request with the `X-WS-Relay` header
//! naming a *target* process. The middleware, which runs around the handler on the routers it
//! is configured for, then upgrades the request, and the connection becomes a process of its
//! own (PID on the server's host) that:
//!
//! - sends its target `ws.join`, one message per client frame, `ws.heartbeat` if asked, and
//!   `ws.leave` when it ends (docs/spec.md §6), always in that order;
//! - turns `ws.send`, `ws.close` and `ws.control` (transfer to another target) from any process
//!   into frames and actions (docs/spec.md §7);
//! - monitors its target and closes with `1000`/`1011` when it exits; exits itself with the
//!   reason of docs/spec.md §8, so it can be monitored and linked like any process;
//! - enforces the limits of docs/spec.md §9, including backpressure: it stops reading a client while
//!   the target's inbox is above its high-water mark, and closes a client that does not read
//!   as a slow consumer.
//!
//! # Requests that do not become connections
//!
//! Before the handler runs, the middleware refuses what it can, so nothing gets spawned for
//! it: a foreign `Origin` on any request (`403`), the admission [`limits`] on every request
//! of the route (`429`/`503`), and a request that asks to upgrade but is not a valid upgrade
//! (`400`/`405`/`426`). A plain request still reaches the handler and its response passes
//! through; but if the handler names a target anyway, the answer is `426` and the target gets
//! `ws.leave` with reason `not_upgraded` and no `client_pid` ([`NotUpgraded`]), as it does
//! for every other way a named target ends up without a connection (a body written with the
//! header, an invalid header, a client gone before the upgrade completed). A target that
//! exits on `ws.leave` therefore never lingers.
//!
//! The pieces: [`origin`] (who may connect), [`header`] (the `X-WS-Relay` header and the
//! `ws.control` payload), [`options`] (the router options), [`negotiation`] (subprotocol and
//! permessage-deflate), [`limits`] (admission),
//! [`events`] (the payloads exchanged with targets), the connection process, and the
//! middleware. Protocol details (handshake, frames, close handshake) live in `wsrelay-ws`;
//! HTTP plumbing in `wsrelay-http`; process semantics in `wsrelay-process`.
//!
//! # Rust targets
//!
//! Messages from a connection carry a [`ClientEvent`] as an opaque payload, so a Rust target
//! pays no conversion: `msg.payload().downcast_ref::<ClientEvent>()`. Lua targets and
//! `Value::into_plain` see the docs/spec.md §6 map. Rust senders can pass [`Outgoing`] to `ws.send`.
//! The `not_upgraded` leave carries a [`NotUpgraded`] instead (there is no client).

mod backpressure;
mod connection;
pub mod events;
pub mod header;
pub mod limits;
mod middleware;
pub mod negotiation;
pub mod options;
pub mod origin;
mod parked;
mod refusal;
mod stats;
mod table;
mod target;
mod timer;
mod wake;

use std::sync::Arc;

use wsrelay_http::MiddlewareRegistry;
use wsrelay_process::Node;

pub use events::{ClientEvent, ClientEventKind, NotUpgraded, Outgoing};
pub use header::{RelayTarget, SettingsError};
pub use limits::{LimitOptions, LimitStats};
pub use middleware::RELAY_HEADER;
pub use options::RelayOptions;
pub use origin::{OriginPolicy, OriginRefusal};
pub use stats::{RelayStats, CLOSE_REASONS};
pub use table::ConnectionSnapshot;

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
    /// A relay whose connections are processes of `node`. It also has group sends of
    /// `ws.send` prepare their frame once for every member (see
    /// [`Node::set_group_encoder`]).
    pub fn new(node: Node) -> Relay {
        node.set_group_encoder(
            events::SEND,
            Arc::new(|payload| {
                // Checked once here; each member's socket queues the same bytes.
                let frame = events::frame_from_send(payload).ok()?;
                let shared = wsrelay_ws::SharedFrame::from_message(frame, None).ok()?;
                Some(wsrelay_process::Value::Opaque(Arc::new(Outgoing::Shared(
                    shared,
                ))))
            }),
        );
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
            Ok(relay.middleware(options))
        });
    }

    /// The `websocket_relay` middleware with `options`, outside any registry: what an app
    /// that embeds wsrelay runs around its own handler, with
    /// [`Next::handler`](wsrelay_http::Next::handler). Each call makes a route of its own (its
    /// own connection pool and per-IP buckets, as each router has); clone the `Arc` to share
    /// one route.
    pub fn middleware(&self, options: RelayOptions) -> Arc<dyn wsrelay_http::Middleware> {
        Arc::new(middleware::RelayMiddleware {
            relay: self.clone(),
            admission: Arc::new(limits::Admission::new(options.limits)),
            options: Arc::new(options),
        })
    }

    /// The node connections run on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The relay's counters.
    pub fn stats(&self) -> &Arc<RelayStats> {
        &self.inner.stats
    }

    /// Upgrade requests refused before the handler (origin, rate, capacity).
    pub fn limit_stats(&self) -> &Arc<LimitStats> {
        &self.inner.limit_stats
    }

    /// Up to `limit` open connections (oldest first): client address, route, target, age,
    /// bytes. O(open connections); meant for operators, not the frame path.
    pub fn connections(&self, limit: usize) -> Vec<ConnectionSnapshot> {
        self.inner.stats.table.snapshot(limit)
    }

    /// The record of the open connection `pid`, if there is one.
    pub fn connection(&self, pid: &wsrelay_process::Pid) -> Option<ConnectionSnapshot> {
        self.inner.stats.table.get(pid)
    }
}
