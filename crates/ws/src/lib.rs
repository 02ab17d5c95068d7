//! wsrelay-ws: the WebSocket protocol layer of wsrelay.
//!
//! It knows HTTP/1.1 upgrades and RFC 6455, and nothing of processes, Lua or routing.
//!
//! * [`handshake`] validates an upgrade request into an [`UpgradeRequest`] or a typed
//!   [`Rejection`] that carries its HTTP answer (426/405/400), and builds the `101` answer.
//! * [`upgrade::accept`] does that on a hyper request and yields a [`PendingUpgrade`] that
//!   becomes a [`WsConnection`] once hyper hands the connection over.
//! * [`WsConnection`] reads whole messages and owns the close handshake; its
//!   [`next_event`](WsConnection::next_event) is cancel safe, so one task per connection can
//!   `select!` between the socket, a mailbox and timers.
//!
//! # Driving a connection
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http_body_util::Empty;
//! use hyper::body::{Bytes, Incoming};
//! use wsrelay_ws::{Config, Event};
//!
//! async fn handle(mut request: hyper::Request<Incoming>)
//!     -> Result<hyper::Response<Empty<Bytes>>, Infallible>
//! {
//!     let (response, pending) = match wsrelay_ws::accept(&mut request, Config::default()) {
//!         Ok(accepted) => accepted,
//!         Err(rejection) => {
//!             let mut response = hyper::Response::new(Empty::new());
//!             *response.status_mut() = rejection.status();
//!             return Ok(response);
//!         }
//!     };
//!     // The 101 must reach hyper before the upgrade completes: await it in a task.
//!     tokio::spawn(async move {
//!         let Ok(mut conn) = pending.into_connection().await else { return };
//!         loop {
//!             match conn.next_event().await {
//!                 Event::Message(message) => {
//!                     if conn.send(message).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!                 Event::Pong(_) => {}
//!                 Event::Closed(_) => break,
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//! ```
//!
//! The relay races [`WsConnection::next_event`] against its mailbox in `tokio::select!`; see the
//! example there, and `# Cancel safety` on each method.

pub mod connection;
pub mod handshake;
pub mod message;
pub mod upgrade;

pub use connection::{Config, Error, Event, UpgradedIo, WsConnection};
pub use handshake::{accept_key, validate, validate_request, Rejection, UpgradeRequest};
pub use message::{
    is_sendable_close_code, sendable_close_code, truncate_close_reason, CloseReason, Closed,
    Message, MAX_CLOSE_REASON,
};
pub use upgrade::{accept, PendingUpgrade};
