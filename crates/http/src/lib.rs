//! The HTTP gateway of wsrelay: servers, routers, middleware chains,
//! endpoints and static files, on hyper 1.
//!
//! This crate is plumbing. It knows nothing of YAML, Lua or processes: the
//! app assembler builds a [`Gateway`] from config, the Lua engine implements
//! [`Handler`], and the `websocket_relay` middleware implements
//! [`Middleware`] and takes over upgraded connections.
//!
//! # A tour
//!
//! - A [`Gateway`] holds [`Server`]s, each with an id (the registry id, e.g.
//!   `app:gateway`) and a [`ServerConfig`] (address and limits).
//!   [`Gateway::bind`] binds them all and returns a [`RunningGateway`], which
//!   reports the real addresses and shuts down gracefully.
//! - A server holds [`Router`]s; a request goes to the router with the
//!   longest matching prefix. A router runs its pre-match middleware chain,
//!   matches an endpoint (method + path with `{param}` segments), and runs its
//!   post-match chain around the endpoint's [`Handler`]. See the
//!   [`router`](Router) docs for the details: `404`, `405` with `Allow`, `HEAD`,
//!   trailing slashes.
//! - Static files are served from a directory by [`Router::static_files`] or
//!   [`Server::static_files`], safely (see below).
//! - [`client`] sends outbound requests for apps (the Lua `http_client` module): it
//!   refuses non-public addresses unless allowed, checking the resolved address.
//! - Middleware are built by name from a [`MiddlewareRegistry`], which checks
//!   each router's [`Options`] when the config is loaded. The built-in
//!   [`Cors`] middleware shows the shape.
//!
//! # Types
//!
//! A handler gets a [`Request`] = `http::Request<`[`Body`]`>` and returns a
//! [`Response`] = `http::Response<`[`ResponseBody`]`>`; build simple ones with
//! the [`response`] helpers. Handlers and middleware return a [`BoxFuture`],
//! so both traits are object safe and used as `Arc<dyn ...>`. Each request
//! carries these extensions:
//!
//! | extension | set by | holds |
//! |---|---|---|
//! | [`ConnectInfo`] | server | server id, local and remote address |
//! | [`Shutdown`] | server | the gateway's shutdown token and task tracker |
//! | [`PathParams`] | route match | decoded `{param}` values |
//! | [`MatchedPath`] | route match | the endpoint's full pattern |
//! | `hyper::upgrade::OnUpgrade` | hyper | the upgrade handle |
//!
//! # Upgrades (WebSocket)
//!
//! Connections are served with hyper's `with_upgrades`, and the chain passes
//! the request's extensions through untouched, so a middleware can take the
//! upgrade handle, run the handler, inspect its response, and answer `101`:
//!
//! ```
//! use http::{header, HeaderValue, StatusCode};
//! use wsrelay_http::{middleware_fn, response, Shutdown};
//!
//! let relay = middleware_fn(|mut req, next| async move {
//!     let upgrade = hyper::upgrade::on(&mut req);
//!     let shutdown = req.extensions().get::<Shutdown>().cloned();
//!     let res = next.run(req).await;
//!     if !res.headers().contains_key("x-ws-relay") {
//!         return res; // not for us: pass the handler's response through
//!     }
//!     if !res.body().is_known_empty() {
//!         return response::text(StatusCode::INTERNAL_SERVER_ERROR, "handler wrote a body");
//!     }
//!     if let Some(shutdown) = shutdown {
//!         // Spawn on the gateway's tracker so shutdown waits for the connection.
//!         shutdown.tracker().spawn(async move {
//!             if let Ok(_io) = upgrade.await { /* speak WebSocket on _io */ }
//!         });
//!     }
//!     let mut res = response::empty(StatusCode::SWITCHING_PROTOCOLS);
//!     res.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
//!     res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
//!     res
//! });
//! # let _ = relay;
//! ```
//!
//! # Static files
//!
//! The URL path is checked before the file system is touched: backslashes,
//! NUL, encoded `/`, `\` or NUL (`%2f`, `%5c`, `%00`) and `.`/`..` segments
//! (also when percent-encoded) get `400`. The file found is canonicalized and
//! must lie inside the canonical root, so a symlink leading out is a `404`.
//! Dotfiles and dot-directories (`/.env`, `/.git/config`) are a `404` unless
//! the mount opts in with [`Dotfiles::Allow`].
//! Directories serve their `index.html`. Responses have `Content-Type`,
//! `Content-Length`, `ETag` and `Last-Modified`; conditional requests get
//! `304`; `HEAD` is served without a body.
//!
//! # Limits
//!
//! Every limit is finite by default (see [`ServerConfig`]): header read
//! timeout, number and size of headers, and the request body size
//! (`413`). A handler that panics gets the client a `500`, not a dropped
//! connection.
//!
//! # Shutdown
//!
//! [`RunningGateway::shutdown`] cancels the [`Shutdown`] token: accept loops
//! stop and drop their listeners, connections finish their in-flight request
//! and close, and the call waits for every task on the tracker, bounded by the
//! drain timeout. Upgraded connections are not the gateway's; their owner
//! joins the same shutdown through the [`Shutdown`] extension.

mod body;
pub mod client;
mod conn;
mod cors;
mod error;
mod forwarded;
mod gateway;
mod h2;
mod handler;
mod middleware;
mod path;
mod proxy_protocol;
mod registry;
pub mod response;
mod router;
mod server;
mod shutdown;
mod site;
mod static_files;
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod test_util;
mod tls;

pub use body::{Body, BodyError, BoxError, ResponseBody, SendBody};
pub use cors::Cors;
pub use error::Error;
pub use forwarded::{TrustedProxies, MAX_HOPS};
pub use gateway::{Gateway, RunningGateway};
pub use h2::is_websocket_connect;
pub use handler::{handler_fn, BoxFuture, Handler, HandlerFn};
pub use middleware::{middleware_fn, Middleware, MiddlewareFactory, MiddlewareFn, Next, Options};
pub use proxy_protocol::ProxyHeaderError;
pub use registry::MiddlewareRegistry;
pub use router::{MatchedPath, PathParams, Router};
pub use server::{Server, ServerConfig};
pub use shutdown::Shutdown;
pub use site::ConnectInfo;
pub use static_files::{Dotfiles, StaticDir};
pub use tls::{TlsError, TlsFiles, TlsReloader};

/// A request as handlers and middleware see it.
pub type Request = http::Request<Body>;

/// A response as handlers and middleware return it.
pub type Response = http::Response<ResponseBody>;
