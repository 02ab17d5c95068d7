//! The router options of the relay (docs/spec.md §5, §9): `wsrelay.*` keys of a router's
//! `post_options`, parsed into [`RelayOptions`] with errors that name the option.

use std::time::Duration;

use wsrelay_http::Options;

use crate::limits::{self, LimitOptions};
use crate::negotiation::{self, CompressionOptions};
use crate::origin::OriginPolicy;
use crate::timer::parse_timer;

/// The relay's router options, with the defaults of docs/spec.md §9.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayOptions {
    /// `wsrelay.allowed.origins`.
    pub origins: OriginPolicy,
    /// `wsrelay.max_message_size`: the largest client message (default 1 MiB).
    pub max_message_size: usize,
    /// `wsrelay.max_outbound_bytes`: bytes queued to a client before it is a slow consumer
    /// (default 1 MiB).
    pub max_outbound_bytes: usize,
    /// `wsrelay.write_timeout`: the longest a write may wait for the client (default 10 s).
    pub write_timeout: Duration,
    /// `wsrelay.ping_interval`: how often to ping an otherwise silent client (default 30 s).
    pub ping_interval: Duration,
    /// `wsrelay.pong_timeout`: how long to wait for the pong (default 30 s).
    pub pong_timeout: Duration,
    /// `wsrelay.close_timeout`: how long each step of a close handshake may take (default 5 s).
    pub close_timeout: Duration,
    /// `wsrelay.max_connections`, `wsrelay.upgrade_rate`, `wsrelay.upgrade_burst`: admission
    /// limits checked before the handler runs (see [`limits`] and docs/spec.md §3.1).
    pub limits: LimitOptions,
    /// `wsrelay.subprotocols`: the subprotocols accepted when `X-WS-Relay` names none, the
    /// client's first offer in this list wins (docs/spec.md §13). Default none.
    pub subprotocols: Vec<String>,
    /// `wsrelay.compression` (`permessage-deflate` or `off`), with
    /// `wsrelay.compression_threshold` and `wsrelay.compression_level`: `None` (the default)
    /// negotiates no compression. See [`crate::negotiation`].
    pub compression: Option<wsrelay_ws::Compression>,
}

impl Default for RelayOptions {
    fn default() -> RelayOptions {
        RelayOptions {
            origins: OriginPolicy::default(),
            max_message_size: 1 << 20,
            max_outbound_bytes: 1 << 20,
            write_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            limits: LimitOptions::default(),
            subprotocols: Vec::new(),
            compression: None,
        }
    }
}

/// The option names the relay reads.
pub const OPTION_NAMES: &[&str] = &[
    "wsrelay.allowed.origins",
    "wsrelay.max_message_size",
    "wsrelay.max_outbound_bytes",
    "wsrelay.write_timeout",
    "wsrelay.ping_interval",
    "wsrelay.pong_timeout",
    "wsrelay.close_timeout",
    "wsrelay.max_connections",
    "wsrelay.upgrade_rate",
    "wsrelay.upgrade_burst",
    "wsrelay.subprotocols",
    "wsrelay.compression",
    "wsrelay.compression_threshold",
    "wsrelay.compression_level",
];

impl RelayOptions {
    /// The WebSocket settings of a route: its message limit, its compression, and the longest
    /// a connection waits for its peer at each step of a close ([`close_timeout`], at most
    /// a minute).
    ///
    /// [`close_timeout`]: RelayOptions::close_timeout
    pub(crate) fn ws_config(&self) -> wsrelay_ws::Config {
        wsrelay_ws::Config::default()
            .max_message_size(self.max_message_size)
            .close_timeout(self.close_timeout.min(Duration::from_secs(60)))
            .compression(self.compression)
    }

    /// Reads the `wsrelay.*` options of a router; other options are ignored.
    ///
    /// # Errors
    ///
    /// A message naming the option and its bad value.
    pub fn from_options(options: &Options) -> Result<RelayOptions, String> {
        let mut out = RelayOptions::default();
        let mut compression = CompressionOptions::default();
        for (key, value) in options {
            let value = value.trim();
            let duration = || parse_timer(value).map_err(|e| format!("option {key}: {e}"));
            match key.as_str() {
                "wsrelay.allowed.origins" => {
                    out.origins =
                        OriginPolicy::parse(value).map_err(|e| format!("option {key}: {e}"))?
                }
                "wsrelay.max_message_size" => out.max_message_size = parse_size(key, value)?,
                "wsrelay.max_outbound_bytes" => out.max_outbound_bytes = parse_size(key, value)?,
                "wsrelay.write_timeout" => out.write_timeout = duration()?,
                "wsrelay.ping_interval" => out.ping_interval = duration()?,
                "wsrelay.pong_timeout" => out.pong_timeout = duration()?,
                "wsrelay.close_timeout" => out.close_timeout = duration()?,
                "wsrelay.max_connections" => {
                    out.limits.max_connections = limits::parse_max_connections(key, value)?
                }
                "wsrelay.upgrade_rate" => out.limits.upgrade_rate = limits::parse_rate(key, value)?,
                "wsrelay.upgrade_burst" => {
                    out.limits.upgrade_burst = limits::parse_burst(key, value)?
                }
                "wsrelay.subprotocols" => {
                    out.subprotocols = negotiation::parse_subprotocols(key, value)?
                }
                "wsrelay.compression" => {
                    compression.enabled = negotiation::parse_compression(key, value)?
                }
                "wsrelay.compression_threshold" => {
                    compression.threshold = Some(parse_bytes(key, value)?)
                }
                "wsrelay.compression_level" => {
                    compression.level = Some(negotiation::parse_level(key, value)?)
                }
                k if k.starts_with("wsrelay.") => {
                    return Err(format!(
                        "unknown option {k} (known: {})",
                        OPTION_NAMES.join(", ")
                    ))
                }
                _ => {}
            }
        }
        out.compression = compression.build();
        Ok(out)
    }
}

/// Parses a byte size: `1048576`, `64KiB`, `1MiB`, `512kb`, `2mb`. Must be at least 1.
fn parse_size(key: &str, value: &str) -> Result<usize, String> {
    match parse_bytes(key, value)? {
        0 => Err(bad_size(key, value)),
        n => Ok(n),
    }
}

fn bad_size(key: &str, value: &str) -> String {
    format!("option {key}: bad size {value:?} (use e.g. 65536, 64KiB, 1MiB)")
}

/// Parses a byte size as [`parse_size`] does, zero included.
fn parse_bytes(key: &str, value: &str) -> Result<usize, String> {
    let lower = value.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit_bytes: usize = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad_size(key, value)),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| bad_size(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let mut o = Options::new();
        o.insert("wsrelay.max_message_size".into(), "64KiB".into());
        o.insert("wsrelay.write_timeout".into(), "2s".into());
        o.insert("other".into(), "x".into());
        let r = RelayOptions::from_options(&o).unwrap();
        assert_eq!(r.max_message_size, 65536);
        assert_eq!(r.write_timeout, Duration::from_secs(2));
        o.insert("wsrelay.pong_timeout".into(), "never".into());
        assert!(RelayOptions::from_options(&o)
            .unwrap_err()
            .contains("wsrelay.pong_timeout"));
        let mut o = Options::new();
        o.insert("wsrelay.max_outbound_bytes".into(), "0".into());
        assert!(RelayOptions::from_options(&o)
            .unwrap_err()
            .contains("wsrelay.max_outbound_bytes"));
        let mut o = Options::new();
        o.insert("wsrelay.compression_threshold".into(), "0".into());
        o.insert("wsrelay.subprotocols".into(), "mqtt, v2.chat".into());
        let r = RelayOptions::from_options(&o).unwrap();
        assert_eq!(
            r.compression, None,
            "a threshold alone does not turn compression on"
        );
        assert_eq!(r.subprotocols, ["mqtt", "v2.chat"]);
        o.insert("wsrelay.compression".into(), "permessage-deflate".into());
        let compression = RelayOptions::from_options(&o).unwrap().compression.unwrap();
        assert_eq!(compression.threshold, 0);
        let mut o = Options::new();
        o.insert("wsrelay.max_mesage_size".into(), "1".into());
        assert!(RelayOptions::from_options(&o)
            .unwrap_err()
            .contains("unknown option"));
    }
}
