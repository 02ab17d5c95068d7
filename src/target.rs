//! [`RelayConfig`] (a relay route's options) and [`RelayTo`] (a handler's typed answer).

use http::{HeaderValue, StatusCode};
use wsrelay_http::{response, Options, Response};
use wsrelay_process::Pid;

/// The options of a relay route: the `wsrelay.*` names and values of a `websocket_relay`
/// router's `post_options` in YAML (docs/spec.md §9, docs/OPERATIONS.md), checked by
/// [`Runtime::relay`](crate::Runtime::relay). Unset options keep `wsrelay run`'s defaults
/// (same-origin only, 1 MiB messages, the default admission limits).
///
/// ```
/// let config = wsrelay::RelayConfig::new()
///     .allowed_origins("https://app.example.com")
///     .option("wsrelay.max_message_size", "64KiB");
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RelayConfig {
    pub(crate) options: Options,
}

impl RelayConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one option, e.g. `("wsrelay.max_connections", "1000")`.
    pub fn option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(name.into(), value.into());
        self
    }

    /// Sets `wsrelay.allowed.origins`: a comma-separated list of origins (`*` wildcards in
    /// host labels), or `*` for any origin; unset means same-origin only.
    pub fn allowed_origins(self, list: impl Into<String>) -> Self {
        self.option("wsrelay.allowed.origins", list)
    }
}

/// A handler's typed answer asking for a relay: the `X-WS-Relay` header of docs/spec.md §4
/// on an empty `200`, built from typed fields. Return
/// [`into_response`](Self::into_response) (or `Response::from`) from a handler behind a
/// [`RelayLayer`](crate::RelayLayer).
///
/// ```
/// use wsrelay::{RelayTo, Response};
///
/// let res: Response = RelayTo::name("chat:room")
///     .metadata("user", "ada")
///     .heartbeat_interval("30s")
///     .into_response();
/// let header = res.headers()["x-ws-relay"].to_str().unwrap();
/// assert!(header.contains(r#""target_pid":"chat:room""#));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RelayTo {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl RelayTo {
    /// Relay to the process `pid`.
    pub fn process(pid: &Pid) -> Self {
        Self::name(pid.to_string())
    }

    /// Relay to the process registered as `name` (or a PID in text).
    pub fn name(name: impl Into<String>) -> Self {
        let mut fields = serde_json::Map::new();
        fields.insert("target_pid".into(), serde_json::Value::String(name.into()));
        RelayTo { fields }
    }

    /// Adds `key` to the metadata attached to every message the target gets.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        let metadata = self
            .fields
            .entry("metadata")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(map) = metadata {
            map.insert(key.into(), value.into());
        }
        self
    }

    /// The topic of client frames (default `ws.message`).
    pub fn message_topic(mut self, topic: impl Into<String>) -> Self {
        self.fields.insert(
            "message_topic".into(),
            serde_json::Value::String(topic.into()),
        );
        self
    }

    /// Sends the target `ws.heartbeat` at this period (`"30s"`, `"500ms"`).
    pub fn heartbeat_interval(mut self, period: impl Into<String>) -> Self {
        self.fields.insert(
            "heartbeat_interval".into(),
            serde_json::Value::String(period.into()),
        );
        self
    }

    /// Accepts this subprotocol (one the client offered).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.fields.insert(
            "protocol".into(),
            serde_json::Value::String(protocol.into()),
        );
        self
    }

    /// The `X-WS-Relay` header value (JSON).
    ///
    /// # Errors
    ///
    /// [`http::header::InvalidHeaderValue`] when a string holds a character a header cannot
    /// carry (DEL; JSON escapes the other control characters).
    pub fn header_value(&self) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        let json = serde_json::Value::Object(self.fields.clone()).to_string();
        HeaderValue::from_bytes(json.as_bytes())
    }

    /// An empty `200` carrying the header; a `500` if the header cannot be built (logged).
    pub fn into_response(self) -> Response {
        match self.header_value() {
            Ok(value) => {
                let mut res = response::empty(StatusCode::OK);
                res.headers_mut().insert(wsrelay_relay::RELAY_HEADER, value);
                res
            }
            Err(error) => {
                tracing::error!(%error, "X-WS-Relay cannot be a header value");
                response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
        }
    }
}

impl From<RelayTo> for Response {
    fn from(to: RelayTo) -> Response {
        to.into_response()
    }
}
