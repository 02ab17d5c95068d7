//! What the relay sends to targets (docs/spec.md §6) and what it accepts from processes (docs/spec.md §7).
//!
//! Messages to targets carry a [`ClientEvent`] as an opaque payload: a Rust target reads it
//! with [`Value::downcast_ref`] without any copy, and everything else (Lua, JSON, another
//! node) sees the plain map of docs/spec.md §6 through [`OpaqueValue::to_value`].

use std::sync::Arc;

use bytes::Bytes;
use wsrelay_process::{Field, Map, OpaqueValue, Pid, Unbuilt, Value, ValueBuilder, Visit};
use wsrelay_ws::{Message as Frame, SharedFrame};

/// Topic of the first message a target gets from a connection.
pub const JOIN: &str = "ws.join";
/// Topic of the periodic heartbeat.
pub const HEARTBEAT: &str = "ws.heartbeat";
/// Topic of the last message a target gets from a connection.
pub const LEAVE: &str = "ws.leave";
/// Topic that sends one frame to the client.
pub const SEND: &str = "ws.send";
/// Topic that closes the connection.
pub const CLOSE: &str = "ws.close";
/// Topic that transfers the connection to another target.
pub const CONTROL: &str = "ws.control";

/// A message from a connection to its target.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    /// The connection's PID.
    pub client_pid: Pid,
    /// What happened.
    pub kind: ClientEventKind,
    /// The metadata of the relay settings.
    pub metadata: Arc<Map>,
}

/// The kinds of [`ClientEvent`]. More may come (a new relay event is a new variant), so a
/// `match` needs a wildcard arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEventKind {
    /// `ws.join`: the client connected (or was transferred here).
    Join {
        /// The subprotocol accepted in the handshake (docs/spec.md §13), if any.
        protocol: Option<Arc<str>>,
        /// The client's IP address as text (behind a trusted proxy, the one it reports;
        /// docs/spec.md §13), when the request came through a gateway.
        remote_addr: Option<Arc<str>>,
    },
    /// `ws.message` (or the configured topic): a client data frame.
    Message {
        /// Whether it was a text frame (valid UTF-8) rather than a binary one.
        text: bool,
        /// The payload.
        data: Bytes,
    },
    /// `ws.heartbeat`.
    Heartbeat {
        /// Seconds since the connection opened.
        uptime: f64,
        /// Client data frames received so far.
        message_count: u64,
    },
    /// `ws.leave`: the connection ended or moved away.
    Leave {
        /// One of docs/spec.md §6's reasons.
        reason: &'static str,
        /// The close code, when known.
        code: Option<u16>,
    },
}

impl OpaqueValue for ClientEvent {
    /// The map [`visit`](OpaqueValue::visit) walks, built: one description of the map.
    fn to_value(&self) -> Value {
        let mut builder = ValueBuilder::default();
        self.visit(&mut builder);
        builder.finish()
    }

    fn size_hint(&self) -> usize {
        match &self.kind {
            ClientEventKind::Message { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// The map of [`to_value`](OpaqueValue::to_value), walked without building it: this is
    /// what a Lua target converts for every client frame.
    fn visit(&self, v: &mut dyn Visit) {
        let fields = match &self.kind {
            ClientEventKind::Join {
                protocol,
                remote_addr,
            } => 2 + usize::from(protocol.is_some()) + usize::from(remote_addr.is_some()),
            ClientEventKind::Message { .. } => 4,
            ClientEventKind::Heartbeat { .. } => 4,
            ClientEventKind::Leave { code, .. } => 3 + usize::from(code.is_some()),
        };
        v.begin_map(fields);
        v.key("client_pid");
        v.str(self.client_pid.as_str());
        match &self.kind {
            ClientEventKind::Join {
                protocol,
                remote_addr,
            } => {
                if let Some(protocol) = protocol {
                    v.key("protocol");
                    v.str(protocol);
                }
                if let Some(remote_addr) = remote_addr {
                    v.key("remote_addr");
                    v.str(remote_addr);
                }
            }
            ClientEventKind::Message { text, data } => {
                v.key("type");
                v.str(if *text { "text" } else { "binary" });
                v.key("data");
                match std::str::from_utf8(data) {
                    Ok(s) if *text => v.str(s),
                    _ => v.bytes(data),
                }
            }
            ClientEventKind::Heartbeat {
                uptime,
                message_count,
            } => {
                v.key("uptime");
                v.float(*uptime);
                v.key("message_count");
                match i64::try_from(*message_count) {
                    Ok(count) => v.int(count),
                    Err(_) => v.float(*message_count as f64),
                }
            }
            ClientEventKind::Leave { reason, code } => {
                v.key("reason");
                v.str(reason);
                if let Some(code) = code {
                    v.key("code");
                    v.int(i64::from(*code));
                }
            }
        }
        v.key("metadata");
        self.metadata.visit(v);
        v.end_map();
    }
}

/// The `ws.leave` a target gets when the request that named it never became a connection
/// (reason `not_upgraded`, docs/spec.md §3.3): a plain request, a refused upgrade, or a client that
/// left before the upgrade completed. There is no client, so there is no `client_pid`, and
/// no `ws.join` came before it; the message has no sender either.
///
/// A Rust target tells it from a connection's events with
/// `msg.payload().downcast_ref::<NotUpgraded>()`; Lua and JSON see
/// `{reason = "not_upgraded", metadata = {...}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotUpgraded {
    /// The `metadata` of the `X-WS-Relay` header that named the target.
    pub metadata: Arc<Map>,
}

/// The `ws.leave` reason of [`NotUpgraded`].
pub const NOT_UPGRADED: &str = "not_upgraded";

impl OpaqueValue for NotUpgraded {
    fn to_value(&self) -> Value {
        Map::new()
            .with("reason", NOT_UPGRADED)
            .with("metadata", Value::Map((*self.metadata).clone()))
            .into()
    }
}

/// A message to send to a client, as a Rust sender can pass it to `ws.send` without building
/// a map: `Value::Opaque(Arc::new(Outgoing::text("hi")))`. A [`SharedFrame`] prepared once
/// goes to many clients as it is (what a group send of `ws.send` does).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outgoing {
    /// A message for one connection.
    Frame(Frame),
    /// A message prepared (checked, compressed) once for many connections.
    Shared(SharedFrame),
}

impl Outgoing {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Outgoing {
        Outgoing::Frame(Frame::text(text))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Outgoing {
        Outgoing::Frame(Frame::binary(data))
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        match self {
            Outgoing::Frame(frame) => frame.is_text(),
            Outgoing::Shared(shared) => shared.is_text(),
        }
    }

    /// The message as given (uncompressed).
    pub fn data(&self) -> &Bytes {
        match self {
            Outgoing::Frame(frame) => frame.data(),
            Outgoing::Shared(shared) => shared.data(),
        }
    }
}

impl OpaqueValue for Outgoing {
    fn to_value(&self) -> Value {
        let data = self.data();
        let (kind, data) = if self.is_text() {
            (
                "text",
                Value::String(String::from_utf8_lossy(data).into_owned()),
            )
        } else {
            ("binary", Value::Bytes(data.clone()))
        };
        Map::new().with("type", kind).with("data", data).into()
    }

    fn size_hint(&self) -> usize {
        self.data().len()
    }
}

/// A `ws.send` payload, read ([`read_send`]).
pub(crate) enum ToSend {
    /// Text that came as a `String`: UTF-8 by its type, written without a second check and
    /// without a copy.
    Text(String),
    /// Anything else: a Rust sender's frame, or bytes (text is checked again when written).
    Out(Outgoing),
}

impl ToSend {
    /// The bytes to write.
    pub(crate) fn len(&self) -> usize {
        match self {
            ToSend::Text(text) => text.len(),
            ToSend::Out(out) => out.data().len(),
        }
    }

    /// As an [`Outgoing`], for a write that must wait (no copy).
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self {
            ToSend::Text(text) => Outgoing::text(text),
            ToSend::Out(out) => out,
        }
    }
}

/// Reads a `ws.send` payload into a frame.
///
/// `type` defaults to `"text"`. Text must be UTF-8.
///
/// # Errors
///
/// A description of what is wrong, for the log (the payload is then ignored).
pub fn frame_from_send(payload: &Value) -> Result<Frame, String> {
    Ok(match read_send(payload.clone())?.into_outgoing() {
        Outgoing::Frame(frame) => frame,
        Outgoing::Shared(shared) if shared.is_text() => Frame::Text(shared.data().clone()),
        Outgoing::Shared(shared) => Frame::Binary(shared.data().clone()),
    })
}

/// [`frame_from_send`] for a payload the caller owns (a connection's own message): an
/// [`Outgoing`] as it is, and `String` data kept as it is instead of copied into a frame.
///
/// # Errors
///
/// As [`frame_from_send`].
pub(crate) fn read_send(payload: Value) -> Result<ToSend, String> {
    if let Some(out) = payload.downcast_ref::<Outgoing>() {
        return Ok(ToSend::Out(out.clone()));
    }
    let map = match payload {
        Value::Map(m) => m,
        Value::Opaque(o) => return read_send(o.to_value()),
        _ => return Err("ws.send payload must be a table {type=, data=}".into()),
    };
    // The map is taken apart rather than searched and removed from: a removal shifts the
    // entries after it. The first of repeated keys counts, as with `Map::get`.
    let (mut data, mut kind) = (None, None);
    for (key, value) in map {
        match key.as_str() {
            "data" if data.is_none() => data = Some(value),
            "type" if kind.is_none() => kind = Some(value),
            _ => {}
        }
    }
    // Text that came as a `String` is UTF-8 already; only bytes need the check.
    let data = match data {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Bytes(b)) => Err(b),
        Some(_) => return Err("ws.send: data must be a string".into()),
        None => return Err("ws.send: data is missing".into()),
    };
    match (
        kind.as_ref().and_then(Value::as_str).unwrap_or("text"),
        data,
    ) {
        ("text", Ok(text)) => Ok(ToSend::Text(text)),
        ("text", Err(b)) if std::str::from_utf8(&b).is_ok() => {
            Ok(ToSend::Out(Outgoing::Frame(Frame::Text(b))))
        }
        ("text", Err(_)) => {
            Err("ws.send: text data is not valid UTF-8 (use type = \"binary\")".into())
        }
        ("binary", Ok(text)) => Ok(ToSend::Out(Outgoing::binary(text.into_bytes()))),
        ("binary", Err(b)) => Ok(ToSend::Out(Outgoing::binary(b))),
        (other, _) => Err(format!(
            "ws.send: type must be \"text\" or \"binary\", not {other:?}"
        )),
    }
}

/// A `ws.send` payload read before it is built, in its common shapes only: `data` a string,
/// `type` absent, `"text"` or `"binary"`. `None` for anything else: [`read_send`] then
/// reads (and reports) the built payload, so both give the same result.
pub(crate) fn read_unbuilt_send(payload: &dyn Unbuilt) -> Option<ToSend> {
    let binary = match payload.field("type") {
        Field::Missing | Field::Text("text") => false,
        Field::Text("binary") => true,
        _ => return None,
    };
    match (payload.field("data"), binary) {
        (Field::Text(text), false) => Some(ToSend::Text(text.to_owned())),
        (Field::Text(text), true) => Some(ToSend::Out(Outgoing::binary(Bytes::copy_from_slice(
            text.as_bytes(),
        )))),
        (Field::Bytes(bytes), true) => {
            Some(ToSend::Out(Outgoing::binary(Bytes::copy_from_slice(bytes))))
        }
        _ => None,
    }
}

/// Reads a `ws.close` payload: the code (mapped to 1000 unless a server may send it) and the
/// reason (cut to 123 bytes on a character boundary).
pub fn close_from_payload(payload: &Value) -> (u16, String) {
    let plain;
    let payload = match payload {
        Value::Opaque(o) => {
            plain = o.to_value();
            &plain
        }
        other => other,
    };
    let code = payload
        .get("code")
        .and_then(Value::as_i64)
        .and_then(|c| u16::try_from(c).ok())
        .map_or(1000, wsrelay_ws::sendable_close_code);
    let reason = payload.get("reason").and_then(Value::as_str).unwrap_or("");
    (code, wsrelay_ws::truncate_close_reason(reason).to_owned())
}

/// The text frame sent for a message with a topic the relay does not handle:
/// `{"topic": "...", "data": <payload as JSON>}`.
pub fn passthrough_frame(topic: &str, payload: &Value) -> Frame {
    let json = serde_json::json!({ "topic": topic, "data": payload.to_json() });
    Frame::text(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_payloads() {
        let text: Value = Map::new().with("type", "text").with("data", "hi").into();
        assert_eq!(frame_from_send(&text).unwrap(), Frame::text("hi"));
        let bin: Value = Map::new()
            .with("type", "binary")
            .with("data", Value::Bytes(Bytes::from_static(&[0xff, 0])))
            .into();
        assert_eq!(
            frame_from_send(&bin).unwrap(),
            Frame::binary(Bytes::from_static(&[0xff, 0]))
        );
        let bad_text: Value = Map::new()
            .with("type", "text")
            .with("data", Value::Bytes(Bytes::from_static(&[0xff])))
            .into();
        assert!(frame_from_send(&bad_text).is_err());
        assert!(frame_from_send(&Value::from(3)).is_err());
        assert!(frame_from_send(&Map::new().with("type", "x").with("data", "y").into()).is_err());
        assert!(frame_from_send(&Map::new().with("type", "text").into()).is_err());
        let fast = Value::Opaque(Arc::new(Outgoing::text("fast")));
        assert_eq!(frame_from_send(&fast).unwrap(), Frame::text("fast"));
    }

    /// The connection's own path: `String` text is written as it is (no copy), everything
    /// else as `frame_from_send` reads it.
    #[test]
    fn owned_send_payloads() {
        let text = String::from("héllo");
        let at = text.as_ptr();
        let payload: Value = Map::new()
            .with("type", "text")
            .with("data", text)
            .with("extra", 1)
            .into();
        match read_send(payload) {
            Ok(ToSend::Text(sent)) => assert_eq!((sent.as_ptr(), sent.as_str()), (at, "héllo")),
            _ => panic!("text from a String stays a String"),
        }
        let untyped: Value = Map::new().with("data", "hi").into();
        assert!(matches!(read_send(untyped), Ok(ToSend::Text(t)) if t == "hi"));
        let binary: Value = Map::new().with("type", "binary").with("data", "ab").into();
        assert_eq!(
            read_send(binary).unwrap().into_outgoing().data(),
            &Bytes::from_static(b"ab")
        );
        let shared = Value::from(Map::new().with("data", "shared")).into_shared();
        assert!(matches!(read_send(shared), Ok(ToSend::Text(t)) if t == "shared"));
        let bytes: Value = Map::new()
            .with("data", Value::Bytes(Bytes::from_static(b"ok")))
            .into();
        let out = read_send(bytes).unwrap().into_outgoing();
        assert!(out.is_text() && out.data() == &Bytes::from_static(b"ok"));
        let bad: Value = Map::new()
            .with("data", Value::Bytes(Bytes::from_static(&[0xff])))
            .into();
        assert_eq!(
            read_send(bad).err().unwrap(),
            "ws.send: text data is not valid UTF-8 (use type = \"binary\")"
        );
        let bad_type: Value = Map::new().with("type", 5).with("data", "x").into();
        assert!(matches!(read_send(bad_type), Ok(ToSend::Text(_))));
    }

    #[test]
    fn close_payloads() {
        assert_eq!(close_from_payload(&Value::Null), (1000, String::new()));
        let p: Value = Map::new().with("code", 4000).with("reason", "bye").into();
        assert_eq!(close_from_payload(&p), (4000, "bye".into()));
        let p: Value = Map::new().with("code", 1005).into();
        assert_eq!(close_from_payload(&p).0, 1000);
        let p: Value = Map::new().with("code", 99999).into();
        assert_eq!(close_from_payload(&p).0, 1000);
        let long = "é".repeat(100);
        let p: Value = Map::new().with("reason", long.as_str()).into();
        let (_, reason) = close_from_payload(&p);
        assert!(reason.len() <= 123 && long.starts_with(&reason));
    }

    /// Found by `tests/backpressure.rs`: opaque frames counted 64 bytes in an inbox, so a
    /// Rust sender could queue any amount to a stalled client until the write timeout.
    #[test]
    fn opaque_payloads_count_their_bytes() {
        let frame = Outgoing::binary(vec![0u8; 65536]);
        assert_eq!(OpaqueValue::size_hint(&frame), 65536);
        let event = ClientEvent {
            client_pid: "{app:gw|0x00001}".parse().unwrap(),
            kind: ClientEventKind::Message {
                text: false,
                data: Bytes::from(vec![0u8; 1000]),
            },
            metadata: Arc::default(),
        };
        assert_eq!(event.size_hint(), 1000);
    }

    #[test]
    fn events_flatten_to_spec_maps() {
        let pid: Pid = "{app:gw|0x00001}".parse().unwrap();
        let event = ClientEvent {
            client_pid: pid,
            kind: ClientEventKind::Message {
                text: true,
                data: Bytes::from_static(b"hi"),
            },
            metadata: Arc::new(Map::new().with("user", "u1")),
        };
        assert_eq!(
            event.to_value().to_json(),
            serde_json::json!({"client_pid": "{app:gw|0x00001}", "type": "text", "data": "hi", "metadata": {"user": "u1"}})
        );
    }

    #[test]
    fn join_names_the_subprotocol_when_there_is_one() {
        let join = |protocol: Option<&str>| ClientEvent {
            client_pid: "{app:gw|0x00001}".parse().unwrap(),
            kind: ClientEventKind::Join {
                protocol: protocol.map(Arc::from),
                remote_addr: None,
            },
            metadata: Arc::default(),
        };
        assert_eq!(
            join(Some("v2.chat")).to_value().to_json(),
            serde_json::json!({"client_pid": "{app:gw|0x00001}", "protocol": "v2.chat", "metadata": {}})
        );
        assert_eq!(
            join(None).to_value().to_json(),
            serde_json::json!({"client_pid": "{app:gw|0x00001}", "metadata": {}})
        );
    }

    #[test]
    fn join_names_the_client_address_when_known() {
        let join = ClientEvent {
            client_pid: "{app:gw|0x00001}".parse().unwrap(),
            kind: ClientEventKind::Join {
                protocol: None,
                remote_addr: Some("2001:db8::7".into()),
            },
            metadata: Arc::default(),
        };
        assert_eq!(
            join.to_value().to_json(),
            serde_json::json!({"client_pid": "{app:gw|0x00001}", "remote_addr": "2001:db8::7", "metadata": {}})
        );
    }

    #[test]
    fn not_upgraded_has_a_reason_and_metadata_and_no_client() {
        let leave = NotUpgraded {
            metadata: Arc::new(Map::new().with("user", "u1")),
        };
        assert_eq!(
            leave.to_value().to_json(),
            serde_json::json!({"reason": "not_upgraded", "metadata": {"user": "u1"}})
        );
    }
}
