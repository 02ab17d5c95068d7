//! The `X-WS-Relay` header (SPEC §4), the `ws.control` payload (SPEC §7) and the router
//! options of the relay (SPEC §5, §9), each parsed into a typed value with errors that name
//! the field.

use std::time::Duration;

use wsrelay_config::parse_positive_duration;
use wsrelay_http::Options;
use wsrelay_process::{Map, Value};

use crate::limits::{self, LimitOptions};
use crate::origin::OriginPolicy;

/// The default topic of client frames.
pub const DEFAULT_MESSAGE_TOPIC: &str = "ws.message";

/// The longest timer the relay accepts (heartbeat, write timeout, ping interval...): one
/// year, which already means "never". The connection adds these to the current time, and a
/// longer one (duration text goes up to ~584 billion years) would overflow the clock and
/// panic the connection task.
const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A positive duration of at most [`MAX_TIMER`].
fn parse_timer(text: &str) -> Result<Duration, String> {
    let duration = parse_positive_duration(text).map_err(|e| e.to_string())?;
    if duration > MAX_TIMER {
        return Err(format!(
            "invalid duration {:?}: too large (at most 8760h)",
            text.trim()
        ));
    }
    Ok(duration)
}

/// Where a connection's frames go: the parsed `X-WS-Relay` header or `ws.control` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayTarget {
    /// The PID text or registered name of the target.
    pub target: String,
    /// The topic of client frames.
    pub message_topic: String,
    /// The period of `ws.heartbeat`, if any.
    pub heartbeat_interval: Option<Duration>,
    /// Attached to every message sent to the target.
    pub metadata: Map,
}

/// A bad field in `X-WS-Relay` or `ws.control`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The header is not JSON.
    #[error("X-WS-Relay is not valid JSON: {0}")]
    NotJson(String),
    /// The value is not a JSON object.
    #[error("X-WS-Relay must be a JSON object")]
    NotObject,
    /// A field is missing or has a bad value.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl SettingsError {
    fn field(field: &'static str, problem: impl Into<String>) -> SettingsError {
        SettingsError::Field {
            field,
            problem: problem.into(),
        }
    }
}

impl RelayTarget {
    /// Parses the `X-WS-Relay` header value.
    ///
    /// # Errors
    ///
    /// [`SettingsError`] naming the field (SPEC §3.4: answered with 500).
    pub fn from_header(text: &[u8]) -> Result<RelayTarget, SettingsError> {
        let json: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| SettingsError::NotJson(e.to_string()))?;
        if !json.is_object() {
            return Err(SettingsError::NotObject);
        }
        RelayTarget::from_value(&Value::from_json(json), None)
    }

    /// Parses a `ws.control` payload; fields it leaves out keep their values in `current`.
    ///
    /// # Errors
    ///
    /// [`SettingsError`] naming the field.
    pub fn from_control(
        payload: &Value,
        current: &RelayTarget,
    ) -> Result<RelayTarget, SettingsError> {
        RelayTarget::from_value(&payload.clone().into_plain(), Some(current))
    }

    fn from_value(
        value: &Value,
        current: Option<&RelayTarget>,
    ) -> Result<RelayTarget, SettingsError> {
        let map = value.as_map().ok_or(SettingsError::NotObject)?;
        let target = match map.get("target_pid") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            None | Some(Value::Null) => {
                return Err(SettingsError::field("target_pid", "is required"))
            }
            Some(_) => {
                return Err(SettingsError::field(
                    "target_pid",
                    "must be a non-empty string (a PID or a registered name)",
                ))
            }
        };
        let message_topic = match map.get("message_topic") {
            None | Some(Value::Null) => current.map_or(DEFAULT_MESSAGE_TOPIC.to_owned(), |c| {
                c.message_topic.clone()
            }),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(SettingsError::field("message_topic", "must not be empty"))
            }
            Some(Value::String(s)) if s.starts_with('@') => {
                return Err(SettingsError::field(
                    "message_topic",
                    "must not start with '@' (reserved)",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(SettingsError::field("message_topic", "must be a string")),
        };
        let heartbeat_interval = match map.get("heartbeat_interval") {
            None | Some(Value::Null) => current.and_then(|c| c.heartbeat_interval),
            Some(Value::String(s)) => {
                Some(parse_timer(s).map_err(|e| SettingsError::field("heartbeat_interval", e))?)
            }
            Some(_) => {
                return Err(SettingsError::field(
                    "heartbeat_interval",
                    "must be a duration text such as \"30s\"",
                ))
            }
        };
        let metadata = match map.get("metadata") {
            None | Some(Value::Null) => current.map_or_else(Map::new, |c| c.metadata.clone()),
            Some(Value::Map(m)) => m.clone(),
            // An empty Lua table may arrive as an empty array.
            Some(Value::Array(a)) if a.is_empty() => Map::new(),
            Some(_) => return Err(SettingsError::field("metadata", "must be an object")),
        };
        Ok(RelayTarget {
            target,
            message_topic,
            heartbeat_interval,
            metadata,
        })
    }
}

/// The relay's router options, with the defaults of SPEC §9.
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
    /// limits checked before the handler runs (see [`limits`](crate::limits)).
    pub limits: LimitOptions,
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
];

impl RelayOptions {
    /// Reads the `wsrelay.*` options of a router; other options are ignored.
    ///
    /// # Errors
    ///
    /// A message naming the option and its bad value.
    pub fn from_options(options: &Options) -> Result<RelayOptions, String> {
        let mut out = RelayOptions::default();
        for (key, value) in options {
            let value = value.trim();
            let duration = || parse_timer(value).map_err(|e| format!("option {key}: {e}"));
            match key.as_str() {
                "wsrelay.allowed.origins" => out.origins = OriginPolicy::parse(value),
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
                k if k.starts_with("wsrelay.") => {
                    return Err(format!(
                        "unknown option {k} (known: {})",
                        OPTION_NAMES.join(", ")
                    ))
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Parses a byte size: `1048576`, `64KiB`, `1MiB`, `512kb`, `2mb`. Must be at least 1.
fn parse_size(key: &str, value: &str) -> Result<usize, String> {
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
        _ => {
            return Err(format!(
                "option {key}: bad size {value:?} (use e.g. 65536, 64KiB, 1MiB)"
            ))
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("option {key}: bad size {value:?} (use e.g. 65536, 64KiB, 1MiB)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        match RelayTarget::from_header(text.as_bytes()) {
            Err(SettingsError::Field { field, .. }) => field.to_owned(),
            Err(e) => format!("{e}"),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn header_defaults() {
        let t = RelayTarget::from_header(br#"{"target_pid": "{app:p|0x00001}"}"#).unwrap();
        assert_eq!(t.target, "{app:p|0x00001}");
        assert_eq!(t.message_topic, "ws.message");
        assert_eq!(t.heartbeat_interval, None);
        assert!(t.metadata.is_empty());
    }

    #[test]
    fn header_full() {
        let t = RelayTarget::from_header(
            br#"{"target_pid":"hub","message_topic":"chat","heartbeat_interval":"1m30s","metadata":{"user":"7"}}"#,
        )
        .unwrap();
        assert_eq!(t.message_topic, "chat");
        assert_eq!(t.heartbeat_interval, Some(Duration::from_secs(90)));
        assert_eq!(t.metadata.get("user"), Some(&Value::from("7")));
    }

    #[test]
    fn header_errors_name_the_field() {
        assert!(matches!(
            RelayTarget::from_header(b"nope"),
            Err(SettingsError::NotJson(_))
        ));
        assert_eq!(
            RelayTarget::from_header(b"[1]"),
            Err(SettingsError::NotObject)
        );
        assert_eq!(field_of("{}"), "target_pid");
        assert_eq!(field_of(r#"{"target_pid": 5}"#), "target_pid");
        assert_eq!(field_of(r#"{"target_pid": ""}"#), "target_pid");
        assert_eq!(
            field_of(r#"{"target_pid":"x","message_topic":"@sys"}"#),
            "message_topic"
        );
        assert_eq!(
            field_of(r#"{"target_pid":"x","message_topic":3}"#),
            "message_topic"
        );
        assert_eq!(
            field_of(r#"{"target_pid":"x","heartbeat_interval":"0s"}"#),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(r#"{"target_pid":"x","heartbeat_interval":"soon"}"#),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(r#"{"target_pid":"x","heartbeat_interval":30}"#),
            "heartbeat_interval"
        );
        assert_eq!(field_of(r#"{"target_pid":"x","metadata":"a"}"#), "metadata");
    }

    #[test]
    fn control_keeps_unset_fields() {
        let current = RelayTarget::from_header(
            br#"{"target_pid":"a","message_topic":"t","heartbeat_interval":"5s","metadata":{"k":1}}"#,
        )
        .unwrap();
        let payload: Value = Map::new().with("target_pid", "b").into();
        let next = RelayTarget::from_control(&payload, &current).unwrap();
        assert_eq!(next.target, "b");
        assert_eq!(next.message_topic, "t");
        assert_eq!(next.heartbeat_interval, Some(Duration::from_secs(5)));
        assert_eq!(next.metadata, current.metadata);
    }

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
        o.insert("wsrelay.max_mesage_size".into(), "1".into());
        assert!(RelayOptions::from_options(&o)
            .unwrap_err()
            .contains("unknown option"));
    }

    /// Found by `fuzz/relay_header`: `"12646344259371037126s"` parsed, and the connection
    /// then panicked computing `now + period` (after `ws.join`, so its target never got
    /// `ws.leave` and the open-connection count leaked). Timers are now capped at a year.
    #[test]
    fn timers_that_would_overflow_the_clock_are_refused() {
        let huge = "12646344259371037126s";
        assert_eq!(
            field_of(&format!(
                r#"{{"target_pid":"x","heartbeat_interval":"{huge}"}}"#
            )),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(r#"{"target_pid":"x","heartbeat_interval":"8760h"}"#),
            "ok"
        );
        let current = RelayTarget::from_header(br#"{"target_pid":"a"}"#).unwrap();
        let payload: Value = Map::new()
            .with("target_pid", "b")
            .with("heartbeat_interval", huge)
            .into();
        assert!(RelayTarget::from_control(&payload, &current).is_err());
        for key in [
            "wsrelay.write_timeout",
            "wsrelay.ping_interval",
            "wsrelay.pong_timeout",
        ] {
            let mut o = Options::new();
            o.insert(key.into(), huge.into());
            assert!(RelayOptions::from_options(&o).unwrap_err().contains(key));
        }
    }

    proptest::proptest! {
        #[test]
        fn header_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = RelayTarget::from_header(&bytes);
        }
    }
}
