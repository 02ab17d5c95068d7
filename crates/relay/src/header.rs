//! The `X-WS-Relay` header (docs/spec.md §4) and the `ws.control` payload (docs/spec.md §7): where a
//! connection's frames go, parsed into a typed value with errors that name the field.

use std::time::Duration;

use wsrelay_process::{Map, Value};

use crate::timer::parse_timer;

/// The default topic of client frames.
pub const DEFAULT_MESSAGE_TOPIC: &str = "ws.message";

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
    /// The subprotocol to accept (docs/spec.md §4, §13); one the client offered. Fixed for
    /// the connection's life: `ws.control` keeps it.
    pub protocol: Option<String>,
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
    /// [`SettingsError`] naming the field (docs/spec.md §3.4: answered with 500).
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

    /// The target and metadata an `X-WS-Relay` value names, read leniently: what a header
    /// that [`from_header`](Self::from_header) refuses still says about the process the
    /// handler may have spawned for it, so that process can be told `ws.leave`.
    pub(crate) fn named_in(text: &[u8]) -> Option<(String, Map)> {
        let json: serde_json::Value = serde_json::from_slice(text).ok()?;
        let target = json.get("target_pid")?.as_str()?.trim();
        if target.is_empty() {
            return None;
        }
        let metadata = match json.get("metadata").map(|m| Value::from_json(m.clone())) {
            Some(Value::Map(map)) => map,
            _ => Map::new(),
        };
        Some((target.to_owned(), metadata))
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
        let protocol = match current {
            Some(current) => current.protocol.clone(),
            None => parse_protocol(map.get("protocol"))?,
        };
        Ok(RelayTarget {
            target,
            message_topic,
            heartbeat_interval,
            metadata,
            protocol,
        })
    }
}

/// The `protocol` field: absent, or a subprotocol name (an HTTP token).
fn parse_protocol(value: Option<&Value>) -> Result<Option<String>, SettingsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if crate::negotiation::is_token(s) => Ok(Some(s.clone())),
        Some(_) => Err(SettingsError::field(
            "protocol",
            "must be a subprotocol name the client offered (a token such as \"v2.chat\")",
        )),
    }
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
        assert_eq!(t.protocol, None);
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
        assert_eq!(field_of(r#"{"target_pid":"x","protocol":""}"#), "protocol");
        assert_eq!(
            field_of(r#"{"target_pid":"x","protocol":"a b"}"#),
            "protocol"
        );
        assert_eq!(field_of(r#"{"target_pid":"x","protocol":7}"#), "protocol");
        assert_eq!(field_of(r#"{"target_pid":"x","protocol":"v2.chat"}"#), "ok");
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
        // The subprotocol belongs to the connection: a transfer cannot change it.
        let current = RelayTarget {
            protocol: Some("mqtt".into()),
            ..current
        };
        let payload: Value = Map::new()
            .with("target_pid", "b")
            .with("protocol", "other")
            .into();
        let next = RelayTarget::from_control(&payload, &current).unwrap();
        assert_eq!(next.protocol.as_deref(), Some("mqtt"));
    }

    proptest::proptest! {
        #[test]
        fn header_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = RelayTarget::from_header(&bytes);
        }
    }
}
