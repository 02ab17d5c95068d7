//! [`Config`]: the settings of a [`WsConnection`](crate::WsConnection), and the packed copy
//! of them each connection keeps.

use std::time::Duration;

use crate::extension::Compression;

/// Settings of a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest message (after reassembly, and after inflating) accepted from the peer;
    /// larger ones close the connection with 1009. Default 1 MiB (docs/spec.md §9).
    pub max_message_size: usize,
    /// Bound on each step of the close handshake: writing our close frame, waiting for the
    /// peer's, and shutting TCP down. Default 5 s.
    pub close_timeout: Duration,
    /// Queued outgoing bytes past which [`WsConnection::feed`](crate::WsConnection::feed)
    /// flushes. Default 8 KiB.
    pub flush_threshold: usize,
    /// Outgoing messages longer than this are sent in fragments of this size. Default 1 MiB.
    pub frame_size: usize,
    /// permessage-deflate (RFC 7692): negotiated when set and the client offers it. Default
    /// `None` (off): see [`Compression`] for the costs.
    pub compression: Option<Compression>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 1 << 20,
            close_timeout: Duration::from_secs(5),
            flush_threshold: 8 * 1024,
            frame_size: 1 << 20,
            compression: None,
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

    /// Sets [`Config::compression`].
    #[must_use]
    pub fn compression(mut self, compression: Option<Compression>) -> Self {
        self.compression = compression;
        self
    }
}

/// The per-connection copies of [`Config`]'s write settings, packed (a connection lives long
/// and there are many).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) flush_threshold: u32,
    frame_size: u32,
    close_timeout_ms: u32,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Limits {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Limits {
            flush_threshold: clamp(config.flush_threshold),
            frame_size: clamp(config.frame_size.max(1)),
            close_timeout_ms: u32::try_from(config.close_timeout.as_millis()).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn close_timeout(self) -> Duration {
        Duration::from_millis(u64::from(self.close_timeout_ms))
    }

    pub(crate) fn frame_size(self) -> usize {
        self.frame_size as usize
    }
}
