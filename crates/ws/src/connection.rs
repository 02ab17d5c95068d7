//! [`WsConnection`]: one server-side WebSocket connection after the handshake.
//!
//! # Design
//!
//! Framing, masking, fragment reassembly, UTF-8 validation (incremental, so a bad fragment fails
//! at once), control-frame checks and the automatic pong come from `tokio-websockets` (see
//! `docs/decisions/websocket-library.md`). This type adds what the relay needs on top:
//!
//! * **One call that never loses data in `select!`**: [`WsConnection::next_event`] is cancel
//!   safe, so a single task can race it against an actor mailbox and timers, with no second
//!   task, no lock and no split.
//! * **The whole close handshake**: a peer's close is echoed, a protocol failure sends its code
//!   (1002, 1007 or 1009), our own close maps the code to one a server may send and cuts the
//!   reason to 123 bytes; then the TCP connection is shut down, each step bounded by
//!   [`Config::close_timeout`]. The end is reported once as a [`Closed`] with a SPEC §6 reason.
//! * **Write batching**: [`WsConnection::feed`] queues a frame without a syscall (until
//!   [`Config::flush_threshold`] bytes are queued), [`WsConnection::flush`] writes them all,
//!   vectored. Queued frames also go out whenever `next_event` is polled.
//! * **Small, bounded buffers**: an idle connection holds the read buffer (8 KiB, mostly
//!   untouched pages), a one-slot frame queue and this struct. A message never grows the read
//!   buffer beyond [`Config::max_message_size`]; the write queue is flushed past
//!   [`Config::flush_threshold`].

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_websockets::proto::ProtocolError;
use tokio_websockets::{CloseCode, Limits, WebSocketStream};

use crate::message::{
    is_sendable_close_code, sendable_close_code, truncate_close_reason, CloseReason, Closed,
    Message,
};

/// The I/O type of a connection taken over from hyper.
pub type UpgradedIo = TokioIo<hyper::upgrade::Upgraded>;

/// Settings of a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest message (after reassembly) accepted from the peer; larger ones close the
    /// connection with 1009. Default 1 MiB (SPEC §9).
    pub max_message_size: usize,
    /// Bound on each step of the close handshake: writing our close frame, waiting for the
    /// peer's, and shutting TCP down. Default 5 s.
    pub close_timeout: Duration,
    /// Queued outgoing bytes past which [`WsConnection::feed`] flushes. Default 8 KiB.
    pub flush_threshold: usize,
    /// Outgoing messages longer than this are sent in fragments of this size. Default 1 MiB.
    pub frame_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 1 << 20,
            close_timeout: Duration::from_secs(5),
            flush_threshold: 8 * 1024,
            frame_size: 1 << 20,
        }
    }
}

impl Config {
    /// Sets [`Config::max_message_size`].
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`Config::flush_threshold`].
    #[must_use]
    pub fn flush_threshold(mut self, bytes: usize) -> Self {
        self.flush_threshold = bytes;
        self
    }

    /// Sets [`Config::frame_size`] (at least 1).
    #[must_use]
    pub fn frame_size(mut self, bytes: usize) -> Self {
        self.frame_size = bytes.max(1);
        self
    }
}

/// What [`WsConnection::next_event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole data message.
    Message(Message),
    /// A pong arrived (for liveness checks); its payload.
    Pong(Bytes),
    /// The connection has ended and its TCP connection is shut down. Every later call returns
    /// the same value.
    Closed(Closed),
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closing or closed; nothing more can be sent.
    #[error("the WebSocket connection is closed")]
    Closed,
    /// A text message whose payload is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidText,
    /// A ping payload over 125 bytes.
    #[error("ping payload of {len} bytes exceeds 125 bytes")]
    PingTooLong {
        /// The payload length.
        len: usize,
    },
    /// Writing to the socket failed; the connection is lost.
    #[error("writing to the WebSocket failed")]
    Io(#[source] std::io::Error),
    /// The HTTP upgrade did not complete.
    #[error("the HTTP upgrade failed")]
    Upgrade(#[source] hyper::Error),
}

impl Error {
    /// Whether the connection can no longer be used.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed | Self::Io(_) | Self::Upgrade(_))
    }
}

#[derive(Debug)]
enum State {
    Open,
    /// Closing: still to do: queue our close frame if `closed.code` is set and the codec has
    /// not queued one already, flush, maybe wait for the peer's close, shut TCP down.
    Closing {
        closed: Closed,
        await_peer: bool,
    },
    Done(Closed),
}

/// A server-side WebSocket connection. See the [module docs](self).
#[derive(Debug)]
pub struct WsConnection<S = UpgradedIo> {
    ws: WebSocketStream<S>,
    state: State,
    close_timeout: Duration,
}

impl WsConnection<UpgradedIo> {
    /// Wraps a connection that hyper upgraded after a `101` answer.
    pub fn from_upgraded(upgraded: hyper::upgrade::Upgraded, config: &Config) -> Self {
        Self::new(TokioIo::new(upgraded), config)
    }
}

impl<S> WsConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an I/O stream on which the server side of the handshake is already done.
    pub fn new(io: S, config: &Config) -> Self {
        let limits = Limits::default().max_payload_len(Some(config.max_message_size));
        let ws_config = tokio_websockets::Config::default()
            .flush_threshold(config.flush_threshold)
            .frame_size(config.frame_size.max(1));
        let ws = tokio_websockets::ServerBuilder::new()
            .limits(limits)
            .config(ws_config)
            .serve(io);
        Self {
            ws,
            state: State::Open,
            close_timeout: config.close_timeout,
        }
    }

    /// Whether the connection is open (no close frame sent or received yet).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Waits for the next message, pong, or the end of the connection.
    ///
    /// Pings are answered here (the pong is queued and flushed before reading on). When the
    /// peer closes, breaks the protocol or sends a message over the limit, this finishes the
    /// close handshake — sends the echo or the error code, shuts down TCP, bounded by
    /// [`Config::close_timeout`] — and returns [`Event::Closed`].
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: partial frames and partial messages stay in the connection,
    /// and a close handshake in progress resumes on the next call. It can be a branch of
    /// `tokio::select!` in a loop:
    ///
    /// ```no_run
    /// # async fn demo(mut conn: wsrelay_ws::WsConnection, mut mailbox: tokio::sync::mpsc::Receiver<wsrelay_ws::Message>) {
    /// use wsrelay_ws::Event;
    /// loop {
    ///     tokio::select! {
    ///         Some(outgoing) = mailbox.recv() => {
    ///             // Queue everything waiting, then write it with one flush.
    ///             let _ = conn.feed(outgoing).await;
    ///             while let Ok(more) = mailbox.try_recv() {
    ///                 let _ = conn.feed(more).await;
    ///             }
    ///             let _ = conn.flush().await;
    ///         }
    ///         event = conn.next_event() => match event {
    ///             Event::Message(message) => { /* forward it */ }
    ///             Event::Pong(_) => { /* the peer is alive */ }
    ///             Event::Closed(closed) => { println!("ended: {closed}"); break }
    ///         },
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn next_event(&mut self) -> Event {
        loop {
            match &self.state {
                State::Done(closed) => return Event::Closed(closed.clone()),
                State::Closing { .. } => {
                    self.finish_close().await;
                    continue;
                }
                State::Open => {}
            }
            let item = self.ws.next().await;
            if let Some(event) = self.on_item(item).await {
                return event;
            }
        }
    }

    /// Queues a data message without flushing, unless [`Config::flush_threshold`] bytes are
    /// already queued, in which case it flushes first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidText`] for a text message that is not UTF-8 (nothing is sent),
    /// [`Error::Closed`] once a close frame was sent or received, [`Error::Io`] when the write
    /// fails (the connection is then lost, and `next_event` returns [`Event::Closed`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped before it completes, the message may not have
    /// been queued. Frames already queued are kept.
    pub async fn feed(&mut self, message: Message) -> Result<(), Error> {
        let message = match message {
            Message::Text(data) => {
                let text = String::from_utf8(data.into()).map_err(|_| Error::InvalidText)?;
                tokio_websockets::Message::text(text)
            }
            Message::Binary(data) => tokio_websockets::Message::binary(data),
        };
        self.feed_raw(message).await
    }

    /// Writes every queued frame to the socket.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the write fails (the connection is then lost).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: queued bytes stay queued, and the next `flush` (or `next_event`) goes on
    /// where this one stopped.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if matches!(self.state, State::Done(_)) {
            return Err(Error::Closed);
        }
        let result = self.ws.flush().await;
        self.check_io(result)
    }

    /// [`feed`](Self::feed) then [`flush`](Self::flush).
    ///
    /// # Errors
    ///
    /// As `feed` and `flush`.
    ///
    /// # Cancel safety
    ///
    /// As `feed`.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Sends a ping (queued and flushed).
    ///
    /// # Errors
    ///
    /// [`Error::PingTooLong`] over 125 bytes, otherwise as [`feed`](Self::feed).
    ///
    /// # Cancel safety
    ///
    /// As `feed`.
    pub async fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        if payload.len() > 125 {
            return Err(Error::PingTooLong { len: payload.len() });
        }
        self.feed_raw(tokio_websockets::Message::ping(payload))
            .await?;
        self.flush().await
    }

    /// Closes the connection: sends a close frame with `code` and `reason`, waits (bounded by
    /// [`Config::close_timeout`]) for the peer's close frame, then shuts TCP down.
    ///
    /// `code` is mapped to `1000` unless a server may send it (1000–1003, 1007–1014,
    /// 3000–4999); `reason` is cut to 123 bytes on a character boundary. If the connection has
    /// already ended or is already closing, this finishes that instead and reports it. Messages
    /// that arrive while waiting are dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that the close is not lost: once this has started, the close
    /// frame is queued and `next_event` (or another `close`) completes the handshake. Its own
    /// duration is bounded (about three times `close_timeout` at worst), so awaiting it outside
    /// `select!` is the usual way.
    pub async fn close(&mut self, code: u16, reason: &str) -> Closed {
        if matches!(self.state, State::Open) {
            let code = sendable_close_code(code);
            let reason = truncate_close_reason(reason);
            let frame = match CloseCode::try_from(code) {
                Ok(close_code) => tokio_websockets::Message::close(Some(close_code), reason),
                Err(_) => tokio_websockets::Message::close(None, ""),
            };
            let closed = Closed::new(CloseReason::ServerClosed, Some(code), reason);
            // Queuing the frame flushes first when much is queued: a peer that does not read
            // would hold us here for ever, so this step is bounded too.
            match bounded(self.close_timeout, self.ws.feed(frame)).await {
                Some(Ok(())) => {
                    self.state = State::Closing {
                        closed,
                        await_peer: true,
                    }
                }
                Some(Err(err)) => {
                    self.state = State::Done(lost(&err));
                }
                None => {
                    self.state = State::Done(Closed::new(
                        CloseReason::ConnectionLost,
                        Some(code),
                        "the peer did not read the close frame in time",
                    ));
                }
            }
        }
        loop {
            match &self.state {
                State::Done(closed) => return closed.clone(),
                State::Closing { .. } => self.finish_close().await,
                State::Open => return Closed::new(CloseReason::ConnectionLost, None, ""),
            }
        }
    }

    // ----- internals -----

    async fn feed_raw(&mut self, message: tokio_websockets::Message) -> Result<(), Error> {
        if !matches!(self.state, State::Open) {
            return Err(Error::Closed);
        }
        let result = self.ws.feed(message).await;
        self.check_io(result)
    }

    fn check_io(&mut self, result: Result<(), tokio_websockets::Error>) -> Result<(), Error> {
        match result {
            Ok(()) => Ok(()),
            Err(tokio_websockets::Error::Io(err)) => {
                self.state = State::Done(Closed::new(
                    CloseReason::ConnectionLost,
                    None,
                    err.to_string(),
                ));
                Err(Error::Io(err))
            }
            Err(_) => Err(Error::Closed),
        }
    }

    /// Handles one item of the underlying stream; `Some` when it is to be reported.
    async fn on_item(
        &mut self,
        item: Option<Result<tokio_websockets::Message, tokio_websockets::Error>>,
    ) -> Option<Event> {
        let message = match item {
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                self.on_error(err);
                return None;
            }
            None => {
                self.state = State::Done(Closed::new(
                    CloseReason::ConnectionLost,
                    None,
                    "connection closed without a close frame",
                ));
                return None;
            }
        };
        if message.is_text() {
            return Some(Event::Message(Message::Text(message.into_payload().into())));
        }
        if message.is_binary() {
            return Some(Event::Message(Message::Binary(
                message.into_payload().into(),
            )));
        }
        if message.is_pong() {
            return Some(Event::Pong(message.into_payload().into()));
        }
        if message.is_ping() {
            // tokio-websockets queued the pong; send it now rather than with the next write.
            // Waiting here also stops reading from a peer that pings but does not read.
            let result = self.ws.flush().await;
            let _ = self.check_io(result);
            return None;
        }
        if let Some((code, reason)) = message.as_close() {
            // Close frames were validated by the codec (length, code, UTF-8); it queued the
            // echo of the code.
            let code = u16::from(code);
            let code = (code != 0).then_some(code);
            self.state = State::Closing {
                closed: Closed::new(CloseReason::ClientClosed, code, reason),
                await_peer: false,
            };
        }
        None
    }

    /// A read error: the codec has queued the close frame answering it (if any).
    fn on_error(&mut self, err: tokio_websockets::Error) {
        let (reason, code) = match &err {
            tokio_websockets::Error::Protocol(ProtocolError::InvalidUtf8) => {
                (CloseReason::ProtocolError, 1007)
            }
            tokio_websockets::Error::Protocol(_) => (CloseReason::ProtocolError, 1002),
            tokio_websockets::Error::PayloadTooLong { .. } => (CloseReason::MessageTooBig, 1009),
            _ => {
                self.state = State::Done(lost(&err));
                return;
            }
        };
        debug_assert!(is_sendable_close_code(code));
        self.state = State::Closing {
            closed: Closed::new(reason, Some(code), err.to_string()),
            await_peer: false,
        };
    }

    /// Drives `State::Closing` to `State::Done`: flush the queued close frame, wait for the
    /// peer's close if we started, shut TCP down. Each step is bounded by `close_timeout`.
    async fn finish_close(&mut self) {
        let State::Closing { closed, await_peer } = &self.state else {
            return;
        };
        let (closed, await_peer) = (closed.clone(), *await_peer);
        let timeout = self.close_timeout;
        if let (Some(code), CloseReason::ProtocolError | CloseReason::MessageTooBig) =
            (closed.code, closed.reason)
        {
            // Fails with `AlreadyClosed` when the codec queued its own close frame (errors it
            // detects in a frame); messages too big across fragments are caught above the
            // codec and need ours.
            if let Ok(close_code) = CloseCode::try_from(code) {
                let reason = truncate_close_reason(&closed.detail);
                let frame = tokio_websockets::Message::close(Some(close_code), reason);
                let _ = bounded(timeout, self.ws.feed(frame)).await;
            }
        }
        let flushed = bounded(timeout, self.ws.flush()).await;
        if await_peer && matches!(flushed, Some(Ok(()))) {
            // Read until the peer's close frame (or an error, or the end of the stream).
            let wait_for_close = async {
                while let Some(Ok(message)) = self.ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            };
            let _ = bounded(timeout, wait_for_close).await;
        }
        // RFC 6455 §7.1.1: the server closes the TCP connection first. Then drain what the
        // peer still sends until it closes too: dropping a socket with unread input makes the
        // kernel send RST, which can destroy our close frame before the peer reads it.
        let io = self.ws.get_mut();
        let _ = bounded(timeout, io.shutdown()).await;
        let _ = bounded(timeout, drain(io)).await;
        self.state = State::Done(closed);
    }
}

fn lost(err: &tokio_websockets::Error) -> Closed {
    Closed::new(CloseReason::ConnectionLost, None, err.to_string())
}

/// Reads and discards until end of stream or error.
async fn drain<S: AsyncRead + Unpin>(io: &mut S) {
    let mut scratch = [0u8; 256];
    while let Ok(1..) = io.read(&mut scratch).await {}
}

async fn bounded<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(timeout, future).await.ok()
}
