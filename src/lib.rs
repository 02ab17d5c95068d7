//! wsrelay as a library: process-per-connection WebSockets inside a Rust (axum, hyper, tower)
//! app, with the relay, the process runtime and the Lua apps of `wsrelay run`.
//!
//! - [`Runtime::builder`] starts the node, the Lua engine and a Lua app (from a directory
//!   or from strings) through the same assembly as `wsrelay run` (`wsrelay-app`), and joins
//!   the host's graceful shutdown through a [`CancellationToken`].
//! - [`Runtime::spawn`] runs a Rust process (an async closure that gets a [`Context`]).
//! - [`Runtime::relay`] makes a tower [`RelayLayer`]: wrap a handler in it and a response
//!   that names a target ([`RelayTo`], or the `X-WS-Relay` header of docs/spec.md §4)
//!   becomes a WebSocket connection relayed to that process, with the same origin, limits and
//!   handshake checks as `wsrelay run`.
//! - [`Runtime::lua_handler`] serves a `function.lua` entry as a tower service, so Lua and
//!   Rust handlers share one router.
//! - [`Runtime::register_metrics`] adds the runtime's series to the host's
//!   `prometheus_client` registry. The library installs no tracing subscriber: its events
//!   and spans go to the host's, and a connection's events stay inside the span of the
//!   request that opened it.
//!
//! The walk-through is docs/embedding.md; a complete app is `examples/embed-axum`.
//!
//! # Examples
//!
//! A Rust echo process per connection, with axum (`ignore`d here: axum is not a dependency
//! of this crate):
//!
//! ```ignore
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use wsrelay::{ClientEvent, ClientEventKind, Outgoing, RelayConfig, RelayTo, Runtime, Value};
//!
//! let runtime = Runtime::builder().shutdown_token(token.clone()).start().await?;
//! let relay = runtime
//!     .relay(RelayConfig::new())?
//!     .listener(listener.local_addr()?)
//!     .client_addr(|ext| ext.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0));
//! let rt = runtime.clone();
//! let app = Router::new().route(
//!     "/ws",
//!     get(move || async move {
//!         match rt.spawn("app:echo", echo) {
//!             Ok(pid) => RelayTo::process(&pid).into_response(),
//!             Err(_) => wsrelay::response::text(503.try_into().unwrap(), "busy"),
//!         }
//!     })
//!     .route_layer(relay),
//! );
//! ```
//!
//! where `echo` answers every `ws.message` with `ws.send`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use wsrelay::{ClientEvent, ClientEventKind, Context, Outgoing, Value};
//!
//! async fn echo(ctx: Context) {
//!     loop {
//!         let msg = ctx.recv().await;
//!         let Some(event) = msg.payload().downcast_ref::<ClientEvent>() else {
//!             return; // `ws.leave` `not_upgraded`: no connection came
//!         };
//!         match &event.kind {
//!             ClientEventKind::Message { text, data } => {
//!                 let out = if *text {
//!                     Outgoing::text(String::from_utf8_lossy(data).into_owned())
//!                 } else {
//!                     Outgoing::binary(data.clone())
//!                 };
//!                 let _ = ctx.send(&event.client_pid, "ws.send", Value::Opaque(Arc::new(out)));
//!             }
//!             ClientEventKind::Leave { .. } => return,
//!             _ => {}
//!         }
//!     }
//! }
//! ```

mod error;
mod layer;
mod runtime;
mod target;

pub use error::Error;
pub use layer::{LuaHandler, RelayLayer, RelayService};
pub use runtime::{Runtime, RuntimeBuilder, DEFAULT_CONNECTION_HOST, DEFAULT_DRAIN_TIMEOUT};
pub use target::{RelayConfig, RelayTo};

pub use tokio_util::sync::CancellationToken;
pub use wsrelay_http::{response, Body, BodyError, Request, Response, ResponseBody};
pub use wsrelay_lua::EngineConfig;
pub use wsrelay_process::{
    reason, Context, ExitResult, Map, Message, Node, Pid, SendError, SpawnError, Value,
};
pub use wsrelay_relay::{ClientEvent, ClientEventKind, NotUpgraded, Outgoing, RELAY_HEADER};

/// The crates the facade is built on, for what it does not re-export. Their APIs are less
/// stable than the facade's (docs/api-review.md).
pub mod crates {
    pub use wsrelay_app as app;
    pub use wsrelay_http as http;
    pub use wsrelay_process as process;
    pub use wsrelay_relay as relay;
}
