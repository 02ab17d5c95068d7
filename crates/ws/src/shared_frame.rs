//! Outgoing data messages: [`SharedFrame`], a message prepared once for any number of
//! connections, and the encoding of a message into frames on a write queue.
//!
//! Preparing is the costly part of sending: checking text, and with permessage-deflate,
//! compressing. Both happen once in [`SharedFrame::text`]/[`SharedFrame::binary`]; each
//! connection then queues a `Bytes` clone of the payload (a reference count, no copy) beside
//! its own 2–10 byte header, written with one vectored write. Because every connection
//! negotiates no context takeover ([`crate::extension`]), a compressed message depends on
//! nothing but the window it was compressed with: it is valid on every connection whose
//! negotiated window is at least as large, and the others get the uncompressed payload
//! ([`SharedFrame::payload_for`]).

use bytes::Bytes;

use crate::deflate;
use crate::error::Error;
use crate::extension::{Compression, Deflate};
use crate::frame::{Header, OpCode};
use crate::message::Message;
use crate::write_queue::WriteQueue;

/// A data message encoded once and sent to many connections with
/// [`WsConnection::feed_shared`](crate::WsConnection::feed_shared).
///
/// # Examples
///
/// ```
/// use wsrelay_ws::{Compression, SharedFrame};
/// let compression = Compression::default();
/// let frame = SharedFrame::text(r#"{"event":"tick"}"#.repeat(40), Some(&compression)).unwrap();
/// // Compressed once, with a 32 KiB window: valid on connections that negotiated 15 bits.
/// assert_eq!(frame.compressed_window_bits(), Some(15));
/// ```
#[derive(Debug, Clone)]
pub struct SharedFrame {
    opcode: OpCode,
    data: Bytes,
    compressed: Option<Compressed>,
}

/// A payload compressed without context, and the window it was compressed with.
#[derive(Debug, Clone)]
struct Compressed {
    window_bits: u8,
    payload: Bytes,
}

impl SharedFrame {
    /// A text message; compressed too when `compression` is given and the text is at least
    /// [`Compression::threshold`] bytes long.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidText`] when `text` is not UTF-8.
    pub fn text(text: impl Into<Bytes>, compression: Option<&Compression>) -> Result<Self, Error> {
        let data = text.into();
        if std::str::from_utf8(&data).is_err() {
            return Err(Error::InvalidText);
        }
        Ok(Self::new(OpCode::Text, data, compression))
    }

    /// A binary message; compressed as [`text`](Self::text) is.
    pub fn binary(data: impl Into<Bytes>, compression: Option<&Compression>) -> Self {
        Self::new(OpCode::Binary, data.into(), compression)
    }

    /// The same for a [`Message`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidText`] for a text message that is not UTF-8.
    pub fn from_message(
        message: Message,
        compression: Option<&Compression>,
    ) -> Result<Self, Error> {
        match message {
            Message::Text(data) => Self::text(data, compression),
            Message::Binary(data) => Ok(Self::binary(data, compression)),
        }
    }

    fn new(opcode: OpCode, data: Bytes, compression: Option<&Compression>) -> Self {
        let compressed = compression.filter(|c| data.len() >= c.threshold).map(|c| {
            let window_bits = c.server_max_window_bits.clamp(9, 15);
            let payload = deflate::compress(&data, window_bits, c.level);
            Compressed {
                window_bits,
                payload: Bytes::from(payload),
            }
        });
        Self {
            opcode,
            data,
            compressed,
        }
    }

    /// The message as given (uncompressed).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        self.opcode == OpCode::Text
    }

    /// The window (as a power of two) of the compressed payload, `None` when the message
    /// was not compressed.
    pub fn compressed_window_bits(&self) -> Option<u8> {
        self.compressed.as_ref().map(|c| c.window_bits)
    }

    /// What goes on the wire to a connection that negotiated `deflate`: the compressed
    /// payload (RSV1 set) when the connection's window holds the one it was compressed
    /// with, else the message as it is.
    pub fn payload_for(&self, deflate: Option<&Deflate>) -> (bool, &Bytes) {
        match (&self.compressed, deflate) {
            (Some(c), Some(d)) if d.server_max_window_bits() >= c.window_bits => (true, &c.payload),
            _ => (false, &self.data),
        }
    }

    /// Queues the frames of this message for a connection that negotiated `deflate`.
    pub(crate) fn queue(
        &self,
        queue: &mut WriteQueue,
        deflate: Option<&Deflate>,
        frame_size: usize,
    ) {
        let (compressed, payload) = self.payload_for(deflate);
        queue_frames(queue, self.opcode, compressed, payload.clone(), frame_size);
    }
}

/// Queues `message` for one connection, compressed with the connection's parameters when it
/// negotiated permessage-deflate and the message is long enough.
///
/// The caller has checked that text is UTF-8.
pub(crate) fn queue_message(
    queue: &mut WriteQueue,
    message: Message,
    deflate: Option<&Deflate>,
    frame_size: usize,
) {
    let opcode = if message.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let data = message.into_data();
    let compressed = deflate
        .filter(|d| data.len() >= d.threshold())
        .map(|d| deflate::compress(&data, d.server_max_window_bits(), d.level()));
    match compressed {
        Some(payload) => queue_frames(queue, opcode, true, Bytes::from(payload), frame_size),
        None => queue_frames(queue, opcode, false, data, frame_size),
    }
}

/// Queues `payload` as one frame, or as fragments of `frame_size` bytes when longer (RSV1,
/// the compression bit, only on the first, RFC 7692 §6.1).
fn queue_frames(
    queue: &mut WriteQueue,
    opcode: OpCode,
    compressed: bool,
    mut payload: Bytes,
    frame_size: usize,
) {
    let frame_size = frame_size.max(1);
    let mut first = true;
    loop {
        let piece = payload.split_to(payload.len().min(frame_size));
        let fin = payload.is_empty();
        let (opcode, rsv1) = if first {
            (opcode, compressed)
        } else {
            (OpCode::Continuation, false)
        };
        queue.push(Header::new(fin, rsv1, opcode, piece.len()), piece);
        if fin {
            return;
        }
        first = false;
    }
}
