//! [`WsConnection`]: one server-side WebSocket connection after the handshake.
//!
//! # Design
//!
//! The frame codec is our own (see `docs/decisions/websocket-library.md`), built so that an
//! idle connection holds no buffer at all:
//!
//! * **Reads** go into a per-thread 64 KiB buffer (module `read_buf`); the streaming
//!   decoder (module `decoder`) unmasks payloads straight into the message being
//!   assembled, and keeps a split header in 14 inline bytes. Only the frames behind the one
//!   a poll returns are copied into the connection, and freed once decoded.
//! * **Writes** queue inline headers beside `Bytes` payloads (module `write_queue`) and go
//!   out with vectored writes; when the queue empties, its storage goes back to a small
//!   per-thread pool, which the next frame of any connection on the thread takes from.
//! * **permessage-deflate** uses per-thread zlib state (module `deflate`), which no
//!   context takeover allows; [`WsConnection::feed_shared`] sends a message compressed once
//!   for many connections.
//!
//! On top of the codec, what the relay needs:
//!
//! * **One call that never loses data in `select!`**: [`WsConnection::next_event`] is cancel
//!   safe, so a single task can race it against an actor mailbox and timers, with no second
//!   task, no lock and no split.
//! * **The whole close handshake**: a peer's close is echoed, a protocol failure sends its
//!   code (1002, 1007 or 1009), our own close maps the code to one a server may send and
//!   cuts the reason to 123 bytes; then the TCP connection is shut down, each step bounded by
//!   [`Config::close_timeout`]. The end is reported once as a [`Closed`] with a
//!   docs/spec.md §6 reason.
//! * **Write batching**: [`WsConnection::feed`] queues a frame without a syscall (until
//!   [`Config::flush_threshold`] bytes are queued), [`WsConnection::flush`] writes them all,
//!   vectored. Queued frames also go out whenever `next_event` is polled.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

pub use crate::config::Config;
use crate::config::Limits;
use crate::decoder::{Decoded, Decoder, Failure};
use crate::deflate::{self, InflateError};
pub use crate::error::Error;
use crate::extension::Deflate;
use crate::frame::{Header, OpCode, MAX_CONTROL_PAYLOAD};
use crate::io::UpgradedIo;
use crate::message::{sendable_close_code, truncate_close_reason, CloseReason, Closed, Message};
use crate::read_buf::with_read_buffer;
use crate::shared_frame::{queue_message, SharedFrame};
use crate::write_queue::WriteQueue;

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

/// Where the connection is in its life. The `Closed` of the last two states is boxed: an
/// open connection, the one that lasts, then pays 16 bytes for its state.
#[derive(Debug)]
enum State {
    Open,
    /// Closing: our close frame (if any) is queued; still to do: flush, maybe wait for the
    /// peer's close, shut TCP down.
    Closing {
        closed: Box<Closed>,
        await_peer: bool,
    },
    Done(Box<Closed>),
}

/// A server-side WebSocket connection. See the [module docs](self).
#[derive(Debug)]
pub struct WsConnection<S = UpgradedIo> {
    io: S,
    decoder: Decoder,
    /// Input read but not decoded yet: frames behind the last one returned, or what hyper
    /// read past the request. Empty (and unallocated) otherwise.
    pending: Bytes,
    queue: WriteQueue,
    state: State,
    /// A pong is queued: it must be written before reading on, so a peer that pings
    /// without reading is stopped by TCP instead of growing the queue.
    pong_owed: bool,
    deflate: Option<Deflate>,
    limits: Limits,
}

impl WsConnection<UpgradedIo> {
    /// Wraps a connection that hyper upgraded after a `101` answer, without compression.
    pub fn from_upgraded(upgraded: hyper::upgrade::Upgraded, config: &Config) -> Self {
        Self::upgraded_with(upgraded, config, None)
    }

    /// Wraps a connection that hyper upgraded after a `101` answer that accepted `deflate`.
    /// The socket is taken out of hyper's wrapper when it is a plain `TcpStream`
    /// ([`UpgradedIo::from_upgraded`]).
    pub fn upgraded_with(
        upgraded: hyper::upgrade::Upgraded,
        config: &Config,
        deflate: Option<Deflate>,
    ) -> Self {
        let (io, read_ahead) = UpgradedIo::from_upgraded(upgraded);
        Self::with_parts(io, config, deflate, read_ahead)
    }
}

impl<S> WsConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an I/O stream on which the server side of the handshake is already done, with
    /// no extension.
    pub fn new(io: S, config: &Config) -> Self {
        Self::with_parts(io, config, None, Bytes::new())
    }

    /// Wraps an I/O stream whose handshake accepted `deflate`; `read_ahead` holds bytes
    /// already read from it (they are decoded before anything else is read).
    pub fn with_parts(io: S, config: &Config, deflate: Option<Deflate>, read_ahead: Bytes) -> Self {
        // An empty `Bytes` from hyper may still hold its whole read buffer (8 KiB or more):
        // keep only one that has bytes to decode, and only until they are decoded.
        let pending = if read_ahead.is_empty() {
            Bytes::new()
        } else {
            read_ahead
        };
        Self {
            io,
            decoder: Decoder::new(config.max_message_size, deflate.is_some()),
            pending,
            queue: WriteQueue::default(),
            state: State::Open,
            pong_owed: false,
            deflate,
            limits: Limits::new(config),
        }
    }

    /// How the connection ended or is ending, once it is no longer open: known as soon as
    /// the peer's close frame arrives (or the protocol breaks), while the rest of the close
    /// handshake — the echo, the TCP shutdown, bounded by [`Config::close_timeout`] — may still
    /// be ahead. `None` while open.
    pub fn closing(&self) -> Option<&Closed> {
        match &self.state {
            State::Open => None,
            State::Closing { closed, .. } | State::Done(closed) => Some(closed),
        }
    }

    /// Whether the connection is open (no close frame sent or received yet).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// The permessage-deflate parameters negotiated, if any.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_ref()
    }

    /// Waits for the next message, pong, or the end of the connection.
    ///
    /// Pings are answered here (the pong is written before reading on). When the peer
    /// closes, breaks the protocol or sends a message over the limit, this finishes the
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
                State::Done(closed) => return Event::Closed((**closed).clone()),
                State::Closing { .. } => {
                    // Boxed: its timers and drain buffer would otherwise be part of every
                    // `next_event` future, which an idle connection's task holds for good.
                    Box::pin(self.finish_close()).await;
                    continue;
                }
                State::Open => {}
            }
            if let Some(event) = poll_fn(|cx| self.poll_open(cx)).await {
                return event;
            }
        }
    }

    /// One step of [`next_event`](Self::next_event) for callers that poll by hand (a task
    /// that waits on several sources in one `poll_fn`): `Ready(Some(event))` for a message or
    /// a pong; `Ready(None)` once the connection is closing or has ended — `next_event` then
    /// finishes the close handshake and reports the end. Pings are answered on the way, as
    /// `next_event` does.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        while matches!(self.state, State::Open) {
            if let Some(event) = ready!(self.poll_open(cx)) {
                return Poll::Ready(Some(event));
            }
        }
        Poll::Ready(None)
    }

    /// Whether [`feed_now`](Self::feed_now) can queue a message without writing first: the
    /// connection is open and fewer than [`Config::flush_threshold`] bytes are queued.
    pub fn can_feed(&self) -> bool {
        self.is_open() && self.queue.queued() < self.limits.flush_threshold as usize
    }

    /// [`feed`](Self::feed) without waiting: queues the message even past the flush
    /// threshold (check [`can_feed`](Self::can_feed) first to keep the queue bounded).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidText`] (nothing queued), [`Error::Closed`].
    pub fn feed_now(&mut self, message: Message) -> Result<(), Error> {
        check_text(&message)?;
        self.queue_if_open(message)
    }

    /// [`feed_now`](Self::feed_now) for text that is UTF-8 by its type: a `String` needs
    /// none of the check `feed_now` makes of every [`Message::Text`], and becomes the
    /// message's bytes without a copy.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn feed_text_now(&mut self, text: String) -> Result<(), Error> {
        self.queue_if_open(Message::text(text))
    }

    fn queue_if_open(&mut self, message: Message) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::Closed);
        }
        self.queue_message(message);
        Ok(())
    }

    /// Queues `message` as frames (compressed if negotiated, split at the frame size).
    fn queue_message(&mut self, message: Message) {
        queue_message(
            &mut self.queue,
            message,
            self.deflate.as_ref(),
            self.limits.frame_size(),
        );
    }

    /// [`feed_shared`](Self::feed_shared) without waiting, as [`feed_now`](Self::feed_now).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn feed_shared_now(&mut self, frame: &SharedFrame) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::Closed);
        }
        frame.queue(
            &mut self.queue,
            self.deflate.as_ref(),
            self.limits.frame_size(),
        );
        Ok(())
    }

    /// Queues a ping without writing it ([`poll_flush`](Self::poll_flush) or the next
    /// `next_event` writes it).
    ///
    /// # Errors
    ///
    /// As [`ping`](Self::ping).
    pub fn ping_now(&mut self, payload: Bytes) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::PingTooLong { len: payload.len() });
        }
        if !self.is_open() {
            return Err(Error::Closed);
        }
        self.queue.push(
            Header::new(true, false, OpCode::Ping, payload.len()),
            payload,
        );
        Ok(())
    }

    /// [`flush`](Self::flush), one poll at a time.
    ///
    /// # Errors
    ///
    /// As `flush`.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if matches!(self.state, State::Done(_)) {
            return Poll::Ready(Err(Error::Closed));
        }
        let result = ready!(self.queue.poll_flush(&mut self.io, cx));
        Poll::Ready(result.map_err(|err| self.on_write_error(err)))
    }

    /// Queues a data message without flushing, unless [`Config::flush_threshold`] bytes are
    /// already queued, in which case it flushes first. With permessage-deflate, messages of
    /// at least [`Compression::threshold`](field@crate::Compression::threshold) bytes are compressed.
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
        check_text(&message)?;
        self.make_room().await?;
        self.queue_message(message);
        Ok(())
    }

    /// Queues a message prepared once for many connections ([`SharedFrame`]): compressed
    /// when this connection negotiated a window that holds the one it was compressed with,
    /// as it is otherwise. Flushes first as [`feed`](Self::feed) does.
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed), except that the text was checked when the frame was made.
    ///
    /// # Cancel safety
    ///
    /// As [`feed`](Self::feed).
    pub async fn feed_shared(&mut self, frame: &SharedFrame) -> Result<(), Error> {
        self.make_room().await?;
        frame.queue(
            &mut self.queue,
            self.deflate.as_ref(),
            self.limits.frame_size(),
        );
        Ok(())
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
        let result = poll_fn(|cx| self.queue.poll_flush(&mut self.io, cx)).await;
        result.map_err(|err| self.on_write_error(err))
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
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::PingTooLong { len: payload.len() });
        }
        self.make_room().await?;
        self.queue.push(
            Header::new(true, false, OpCode::Ping, payload.len()),
            payload,
        );
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
    /// duration is bounded (about four times `close_timeout` at worst), so awaiting it outside
    /// `select!` is the usual way.
    pub async fn close(&mut self, code: u16, reason: &str) -> Closed {
        if self.is_open() {
            let code = sendable_close_code(code);
            let reason = truncate_close_reason(reason);
            self.queue_close(Some(code), reason);
            self.state = State::Closing {
                closed: Box::new(Closed::new(CloseReason::ServerClosed, Some(code), reason)),
                await_peer: true,
            };
        }
        loop {
            match &self.state {
                State::Done(closed) => return (**closed).clone(),
                State::Closing { .. } => Box::pin(self.finish_close()).await,
                State::Open => return Closed::new(CloseReason::ConnectionLost, None, ""),
            }
        }
    }

    // ===== reading =====

    /// One step of an open connection: write what is queued, then decode the next item.
    /// `Ready(None)` when the state changed (closing, ended) or a ping was answered.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if !self.queue.is_empty() {
            match self.queue.poll_flush(&mut self.io, cx) {
                Poll::Ready(Ok(())) => self.pong_owed = false,
                Poll::Ready(Err(err)) => {
                    self.on_write_error(err);
                    return Poll::Ready(None);
                }
                Poll::Pending if self.pong_owed => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        match ready!(self.poll_decoded(cx)) {
            Ok(Some(item)) => Poll::Ready(self.on_decoded(item)),
            Ok(None) => {
                self.lose("connection closed without a close frame");
                Poll::Ready(None)
            }
            Err(err) => {
                self.lose(err.to_string());
                Poll::Ready(None)
            }
        }
    }

    /// The next decoded item: from input already read, else from the socket through the
    /// per-thread buffer. `Ok(None)` at the end of the stream.
    fn poll_decoded(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Decoded>>> {
        loop {
            if !self.pending.is_empty() {
                let (used, item) = self.decoder.decode(&self.pending);
                self.pending.advance(used);
                if self.pending.is_empty() {
                    // Free the leftovers' storage as soon as they are decoded.
                    self.pending = Bytes::new();
                }
                if let Some(item) = item {
                    return Poll::Ready(Ok(Some(item)));
                }
            }
            let (io, decoder) = (&mut self.io, &mut self.decoder);
            let read = with_read_buffer(|buf| read_and_decode(io, decoder, cx, buf));
            match ready!(read)? {
                Read::Eof => return Poll::Ready(Ok(None)),
                Read::Consumed => {}
                Read::Item(item, leftover) => {
                    self.pending = leftover;
                    return Poll::Ready(Ok(Some(item)));
                }
            }
        }
    }

    /// Acts on a decoded item; `Some` when it is to be reported.
    fn on_decoded(&mut self, item: Decoded) -> Option<Event> {
        match item {
            Decoded::Message {
                text,
                compressed,
                data,
            } => match self.message(text, compressed, data) {
                Ok(message) => return Some(Event::Message(message)),
                Err(failure) => self.fail(failure),
            },
            Decoded::Ping(payload) => {
                self.queue.push(
                    Header::new(true, false, OpCode::Pong, payload.len()),
                    payload,
                );
                self.pong_owed = true;
            }
            Decoded::Pong(payload) => return Some(Event::Pong(payload)),
            Decoded::Close { code, reason } => {
                // Echo the code (RFC 6455 §5.5.1), not the reason.
                self.queue_close(code, "");
                self.state = State::Closing {
                    closed: Box::new(Closed::new(CloseReason::ClientClosed, code, reason)),
                    await_peer: false,
                };
            }
            Decoded::Fail(failure) => self.fail(failure),
        }
        None
    }

    /// A whole message: inflated when compressed, text checked when it was not checked as
    /// it arrived.
    fn message(&self, text: bool, compressed: bool, data: Vec<u8>) -> Result<Message, Failure> {
        let data = if compressed {
            let max = self.decoder.max_message_size();
            let inflated = deflate::inflate(&data, max).map_err(|err| match err {
                InflateError::TooBig => Failure::too_big(max as u64 + 1, max),
                InflateError::Corrupt(detail) => Failure {
                    code: 1007,
                    reason: CloseReason::ProtocolError,
                    detail: format!("compressed message does not inflate: {detail}"),
                },
            })?;
            if text && std::str::from_utf8(&inflated).is_err() {
                return Err(Failure::invalid_utf8("text"));
            }
            inflated
        } else {
            data
        };
        let data = Bytes::from(data);
        Ok(if text {
            Message::Text(data)
        } else {
            Message::Binary(data)
        })
    }

    // ===== writing =====

    /// Flushes first when [`Config::flush_threshold`] bytes are queued.
    async fn make_room(&mut self) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::Closed);
        }
        if self.queue.queued() >= self.limits.flush_threshold as usize {
            self.flush().await?;
        }
        Ok(())
    }

    fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        let header = Header::new(true, false, OpCode::Close, payload.len());
        self.queue.push(header, Bytes::from(payload));
    }

    fn on_write_error(&mut self, err: io::Error) -> Error {
        self.lose(err.to_string());
        Error::Io(err)
    }

    // ===== ending =====

    /// The peer broke the protocol or a limit: queue the close frame that says so.
    fn fail(&mut self, failure: Failure) {
        self.queue_close(Some(failure.code), truncate_close_reason(&failure.detail));
        self.state = State::Closing {
            closed: Box::new(Closed::new(
                failure.reason,
                Some(failure.code),
                failure.detail,
            )),
            await_peer: false,
        };
    }

    /// The connection is gone without a close handshake.
    fn lose(&mut self, detail: impl Into<String>) {
        self.state = State::Done(Box::new(Closed::new(
            CloseReason::ConnectionLost,
            None,
            detail,
        )));
        self.release();
    }

    /// Drops every buffer: an ended connection that is kept around costs nothing.
    fn release(&mut self) {
        self.pending = Bytes::new();
        self.queue = WriteQueue::default();
        self.decoder = Decoder::new(self.decoder.max_message_size(), false);
    }

    /// Drives `State::Closing` to `State::Done`: flush the queued close frame, wait for the
    /// peer's close if we started, shut TCP down. Each step is bounded by `close_timeout`.
    async fn finish_close(&mut self) {
        let State::Closing { closed, await_peer } = &self.state else {
            return;
        };
        let (closed, await_peer) = (closed.clone(), *await_peer);
        let timeout = self.limits.close_timeout();
        let flushed = bounded(
            timeout,
            poll_fn(|cx| self.queue.poll_flush(&mut self.io, cx)),
        )
        .await;
        if await_peer && matches!(flushed, Some(Ok(()))) {
            let _ = bounded(timeout, poll_fn(|cx| self.poll_peer_close(cx))).await;
        }
        // RFC 6455 §7.1.1: the server closes the TCP connection first. Then drain what the
        // peer still sends until it closes too: dropping a socket with unread input makes the
        // kernel send RST, which can destroy our close frame before the peer reads it.
        let _ = bounded(timeout, self.io.shutdown()).await;
        let _ = bounded(timeout, drain(&mut self.io)).await;
        self.state = State::Done(closed);
        self.release();
    }

    /// Reads until the peer's close frame, a failure or the end of the stream; messages are
    /// dropped.
    fn poll_peer_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match ready!(self.poll_decoded(cx)) {
                Ok(Some(Decoded::Close { .. } | Decoded::Fail(_))) | Ok(None) | Err(_) => {
                    return Poll::Ready(())
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// What one read brought.
enum Read {
    /// The end of the stream.
    Eof,
    /// Everything read was consumed without completing an item.
    Consumed,
    /// An item, and the bytes read behind it (copied out of the per-thread buffer).
    Item(Decoded, Bytes),
}

/// Reads once into `buf` and decodes from it; what the decoder does not consume is copied
/// out, since `buf` is the thread's.
#[inline]
fn read_and_decode<S: AsyncRead + Unpin>(
    io: &mut S,
    decoder: &mut Decoder,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<Read>> {
    let mut read_buf = ReadBuf::new(buf);
    ready!(Pin::new(io).poll_read(cx, &mut read_buf))?;
    let input = read_buf.filled();
    if input.is_empty() {
        return Poll::Ready(Ok(Read::Eof));
    }
    let (used, item) = decoder.decode(input);
    Poll::Ready(Ok(match item {
        Some(item) => Read::Item(item, Bytes::copy_from_slice(&input[used..])),
        None => Read::Consumed,
    }))
}

/// Reads and discards until end of stream or error.
async fn drain<S: AsyncRead + Unpin>(io: &mut S) {
    let mut scratch = [0u8; 256];
    while let Ok(1..) = io.read(&mut scratch).await {}
}

async fn bounded<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(timeout, future).await.ok()
}

/// A text message must be UTF-8 (RFC 6455 §5.6): refused before anything is queued.
fn check_text(message: &Message) -> Result<(), Error> {
    if message.is_text() && std::str::from_utf8(message.data()).is_err() {
        return Err(Error::InvalidText);
    }
    Ok(())
}
