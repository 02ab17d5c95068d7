//! wsrelay-ws: the WebSocket protocol layer of wsrelay.
//!
//! It knows HTTP/1.1 upgrades, WebSockets over HTTP/2 (RFC 8441), RFC 6455 and RFC 7692 (permessage-deflate), and nothing of
//! processes, Lua or routing.
//!
//! * [`handshake`](mod@handshake) validates an upgrade request into an [`UpgradeRequest`] or
//!   a typed [`Rejection`] that carries its HTTP answer (426/405/400), and builds the `101`
//!   answer, with the subprotocol chosen among the client's offers.
//! * [`extension`] negotiates permessage-deflate ([`Compression`] → [`Deflate`]).
//! * [`upgrade::accept`] does that on a hyper request and yields a [`PendingUpgrade`] that
//!   becomes a [`WsConnection`] once hyper hands the connection over;
//!   [`upgrade::handshake`] leaves the subprotocol to be chosen later.
//! * [`WsConnection`] reads whole messages and owns the close handshake; its
//!   [`next_event`](WsConnection::next_event) is cancel safe, so one task per connection can
//!   `select!` between the socket, a mailbox and timers. [`SharedFrame`] is a message
//!   prepared (checked, compressed) once and sent to many connections.
//!
//! # Memory
//!
//! The frame codec is our own, built so that an idle connection holds no buffer: reads go
//! through a per-thread 64 KiB buffer, writes are `Bytes` queued beside inline headers, and
//! permessage-deflate negotiates no context takeover so that the zlib state is per thread
//! too. An idle connection is the [`WsConnection`] struct and nothing else; the numbers are
//! in the crate README.
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

mod config;
pub mod connection;
mod decoder;
mod deflate;
mod error;
pub mod extension;
mod frame;
pub mod handshake;
mod io;
pub mod message;
mod read_buf;
mod shared_frame;
pub mod upgrade;
mod write_queue;

pub use connection::{Config, Error, Event, WsConnection};
pub use extension::{Compression, Deflate};
pub use handshake::{
    accept_key, asks_for_websocket, validate, validate_request, ProtocolNotOffered, Rejection,
    UpgradeRequest,
};
pub use io::UpgradedIo;
pub use message::{
    is_sendable_close_code, sendable_close_code, truncate_close_reason, CloseReason, Closed,
    Message, MAX_CLOSE_REASON,
};
pub use read_buf::READ_BUFFER_SIZE;
pub use shared_frame::SharedFrame;
pub use upgrade::{accept, handshake, Handshake, PendingUpgrade};
