//! [`Error`]: why a send on a [`WsConnection`](crate::WsConnection) failed. Its own module
//! because both the connection and the frames shared across connections return it.

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
