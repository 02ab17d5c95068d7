//! What the relay negotiates for a connection (docs/spec.md §13): the subprotocol and
//! permessage-deflate.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `wsrelay.subprotocols` | none | comma-separated; the first client offer in this list is accepted when `X-WS-Relay` names no `protocol` |
//! | `wsrelay.compression` | `off` | `permessage-deflate` to negotiate RFC 7692 with clients that offer it |
//! | `wsrelay.compression_threshold` | `256` bytes | messages shorter than this are sent uncompressed |
//! | `wsrelay.compression_level` | `1` | zlib level 0–9 of what the relay compresses |
//!
//! Compression is off by default because it costs CPU on every message both ways (and the
//! clients' memory: browsers keep a zlib state per connection). It costs the relay no memory
//! per connection: no context takeover is negotiated in both directions, so the zlib state
//! is per thread (see `wsrelay_ws::extension`). Inflated messages are bounded by
//! `wsrelay.max_message_size` like any other (close 1009, `ws.leave` `message_too_big`).
//!
//! The subprotocol is chosen in this order: the `protocol` field of `X-WS-Relay` (it must
//! be one the client offered, else `500`), else the first of the client's offers listed in
//! `wsrelay.subprotocols`, else none (no `Sec-WebSocket-Protocol` in the answer: the client
//! decides whether to go on without one).

use wsrelay_ws::{Compression, UpgradeRequest};

/// The value of `wsrelay.compression` that turns permessage-deflate on.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The compression options as read, before they are combined into a [`Compression`].
#[derive(Debug, Default)]
pub(crate) struct CompressionOptions {
    pub(crate) enabled: bool,
    pub(crate) threshold: Option<usize>,
    pub(crate) level: Option<u32>,
}

impl CompressionOptions {
    /// The compression settings, `None` when compression is off.
    pub(crate) fn build(&self) -> Option<Compression> {
        if !self.enabled {
            return None;
        }
        let defaults = Compression::default();
        Some(
            defaults
                .threshold(self.threshold.unwrap_or(defaults.threshold))
                .level(self.level.unwrap_or(defaults.level)),
        )
    }
}

/// Parses `wsrelay.compression`: `permessage-deflate`, or `off`/`none` (also the empty text).
pub(crate) fn parse_compression(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        PERMESSAGE_DEFLATE => Ok(true),
        "" | "off" | "none" => Ok(false),
        _ => Err(format!(
            "option {key}: unknown compression {value:?} (use {PERMESSAGE_DEFLATE} or off)"
        )),
    }
}

/// Parses `wsrelay.compression_level`: 0 to 9.
pub(crate) fn parse_level(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|level| *level <= 9)
        .ok_or_else(|| format!("option {key}: bad level {value:?} (0 to 9)"))
}

/// Parses `wsrelay.subprotocols`: comma-separated subprotocol names (tokens, RFC 6455 §4.1).
pub(crate) fn parse_subprotocols(key: &str, value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if is_token(name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "option {key}: {name:?} is not a valid subprotocol name"
                ))
            }
        })
        .collect()
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as subprotocol names must be.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The subprotocol to accept (docs/spec.md §13): `named` (the `protocol` of `X-WS-Relay`),
/// else the first client offer in `supported`, else none. Whether the client offered
/// `named` is checked when the handshake is answered (`Handshake::accept`).
pub(crate) fn choose_protocol<'a>(
    request: &'a UpgradeRequest,
    named: Option<&'a str>,
    supported: &[String],
) -> Option<&'a str> {
    named.or_else(|| request.choose_protocol(supported))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(offers: &str) -> UpgradeRequest {
        let request = http::Request::get("/")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", offers)
            .body(())
            .unwrap();
        wsrelay_ws::validate_request(&request).unwrap()
    }

    #[test]
    fn protocol_choice_table() {
        let supported = vec!["mqtt".to_owned(), "graphql-transport-ws".to_owned()];
        let offers = request("v2.chat, graphql-transport-ws, mqtt");
        // The client's order wins among the listed ones; a named protocol wins over the list.
        assert_eq!(
            choose_protocol(&offers, None, &supported),
            Some("graphql-transport-ws")
        );
        assert_eq!(
            choose_protocol(&offers, Some("mqtt"), &supported),
            Some("mqtt")
        );
        assert_eq!(choose_protocol(&request("v2.chat"), None, &supported), None);
        assert_eq!(choose_protocol(&request("mqtt"), None, &[]), None);
    }

    #[test]
    fn options_parse_and_name_the_key() {
        assert_eq!(
            parse_subprotocols("k", " mqtt, graphql-transport-ws ,").unwrap(),
            ["mqtt", "graphql-transport-ws"]
        );
        assert!(parse_subprotocols("wsrelay.subprotocols", "a b")
            .unwrap_err()
            .contains("wsrelay.subprotocols"));
        assert!(parse_compression("k", "Permessage-Deflate").unwrap());
        assert!(!parse_compression("k", "off").unwrap());
        assert!(parse_compression("wsrelay.compression", "gzip")
            .unwrap_err()
            .contains("wsrelay.compression"));
        assert_eq!(parse_level("k", "9"), Ok(9));
        assert!(parse_level("k", "10").is_err());
    }
}
