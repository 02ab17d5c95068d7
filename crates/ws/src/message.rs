//! Data messages, close codes and the reasons a connection ends.

use bytes::Bytes;

/// A whole data message (fragments already reassembled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message. Received ones are always valid UTF-8; sent ones are checked.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload, text or binary.
    pub fn data(&self) -> &Bytes {
        match self {
            Self::Text(data) | Self::Binary(data) => data,
        }
    }

    /// The payload, text or binary.
    pub fn into_data(self) -> Bytes {
        match self {
            Self::Text(data) | Self::Binary(data) => data,
        }
    }

    /// The text of a text message whose payload is valid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(data) => std::str::from_utf8(data).ok(),
            Self::Binary(_) => None,
        }
    }
}

// ===== close codes =====

/// Largest close reason in bytes: a control frame carries at most 125 bytes, two of which are
/// the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Whether a server may send `code` in a close frame: 1000–1003, 1007–1014 and 3000–4999
/// (RFC 6455 §7.4 and the IANA registry; 1004–1006 and 1015 are never sent on the wire).
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// `code` if a server may send it, otherwise `1000` (docs/spec.md §7 `ws.close`).
///
/// # Examples
///
/// ```
/// use wsrelay_ws::sendable_close_code;
/// assert_eq!(sendable_close_code(4000), 4000);
/// assert_eq!(sendable_close_code(1005), 1000);
/// ```
pub fn sendable_close_code(code: u16) -> u16 {
    if is_sendable_close_code(code) {
        code
    } else {
        1000
    }
}

/// The longest prefix of `reason` that fits in a close frame (123 bytes), cut on a UTF-8
/// character boundary.
///
/// # Examples
///
/// ```
/// use wsrelay_ws::truncate_close_reason;
/// let reason = "é".repeat(100); // 200 bytes
/// assert_eq!(truncate_close_reason(&reason).len(), 122);
/// ```
pub fn truncate_close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

// ===== why a connection ended =====

/// Why a connection ended; the words are docs/spec.md §6's `ws.leave` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer started the close handshake (we echoed its code).
    ClientClosed,
    /// We started the close handshake ([`WsConnection::close`](crate::WsConnection::close)).
    ServerClosed,
    /// The peer broke the protocol (we sent 1002, or 1007 for bad UTF-8).
    ProtocolError,
    /// A message exceeded `max_message_size` (we sent 1009).
    MessageTooBig,
    /// The TCP connection ended or failed without a close handshake.
    ConnectionLost,
}

impl CloseReason {
    /// The docs/spec.md §6 word: `client_closed`, `server_closed`, `protocol_error`,
    /// `message_too_big` or `connection_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ServerClosed => "server_closed",
            Self::ProtocolError => "protocol_error",
            Self::MessageTooBig => "message_too_big",
            Self::ConnectionLost => "connection_lost",
        }
    }

    /// Whether the end is abnormal (docs/spec.md §8: exits that carry an error).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::ProtocolError | Self::MessageTooBig | Self::ConnectionLost
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Why it ended.
    pub reason: CloseReason,
    /// The close code of the handshake: the peer's for [`CloseReason::ClientClosed`] (`None`
    /// when its close frame had no code), ours otherwise; `None` when no close frame was sent.
    pub code: Option<u16>,
    /// The close reason text of that frame, or a description of the failure.
    pub detail: String,
}

impl Closed {
    pub(crate) fn new(reason: CloseReason, code: Option<u16>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(code) = self.code {
            write!(f, " ({code})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        let cases = [
            (999, 1000),
            (1000, 1000),
            (1001, 1001),
            (1003, 1003),
            (1004, 1000),
            (1005, 1000),
            (1006, 1000),
            (1007, 1007),
            (1011, 1011),
            (1014, 1014),
            (1015, 1000),
            (1016, 1000),
            (2999, 1000),
            (3000, 3000),
            (4999, 4999),
            (5000, 1000),
        ];
        for (code, expected) in cases {
            assert_eq!(sendable_close_code(code), expected, "code {code}");
        }
    }

    #[test]
    fn reason_truncation_table() {
        let ascii = "a".repeat(200);
        let two = "é".repeat(62); // 124 bytes
        let three = "€".repeat(41); // 123 bytes
        let cases: [(&str, usize); 5] = [
            ("", 0),
            ("bye", 3),
            (&ascii, 123),
            (&two, 122),
            (&three, 123),
        ];
        for (reason, len) in cases {
            let cut = truncate_close_reason(reason);
            assert_eq!(cut.len(), len);
            assert!(reason.starts_with(cut));
        }
    }
}
