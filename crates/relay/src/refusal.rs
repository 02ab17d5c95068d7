//! Every answer the relay gives instead of `101` or the handler's own response (docs/spec.md §3), as
//! one type: its status, its plain-text body, the counter it bumps and how it is logged.
//!
//! | refusal | status | before the handler? | counter (upgrade request) | log |
//! |---|---|---|---|---|
//! | [`Origin`](RelayRefusal::Origin) | `403` | yes | `forbidden_origin` | info |
//! | [`Limit`](RelayRefusal::Limit) | `429` / `503`, `Retry-After` | yes | `rate_limited` / `over_capacity` | debug |
//! | [`Handshake`](RelayRefusal::Handshake) | `400` / `405` / `426` | yes | — | debug |
//! | [`BodyWithRelay`](RelayRefusal::BodyWithRelay) | `500` | no | — | error |
//! | [`BadHeader`](RelayRefusal::BadHeader) | `500` | no | — | error |
//! | [`ProtocolNotOffered`](RelayRefusal::ProtocolNotOffered) | `500` | no | — | error |
//! | [`NotUpgraded`](RelayRefusal::NotUpgraded) | `426` | no | — | debug |
//! | [`TargetDown`](RelayRefusal::TargetDown) | `503` | no | — | debug |
//! | [`NoProcess`](RelayRefusal::NoProcess) | `503` | no | — | warn |
//!
//! Every refusal of a request that asked to upgrade counts in `upgrades_refused`, plus the
//! counter of its row. A plain request refused before its handler (origin, limits) counts in
//! `plain_refused` instead. Each `ws.leave` `not_upgraded` sent counts in `not_upgraded`.

use std::sync::atomic::Ordering;

use http::StatusCode;
use wsrelay_http::{response, Response};
use wsrelay_process::SpawnError;
use wsrelay_ws::handshake::insert_upgrade_required_headers;
use wsrelay_ws::{ProtocolNotOffered, Rejection};

use crate::header::SettingsError;
use crate::limits;
use crate::origin::OriginRefusal;
use crate::Relay;

/// Why the relay answered a request itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayRefusal {
    /// The `Origin` is not allowed (docs/spec.md §5).
    #[error("origin not allowed: {0}")]
    Origin(#[from] OriginRefusal),
    /// An admission limit: the client's request rate or the route's connections.
    #[error(transparent)]
    Limit(limits::Refusal),
    /// The request asks to upgrade but is not a valid WebSocket upgrade request.
    #[error(transparent)]
    Handshake(#[from] Rejection),
    /// The handler set `X-WS-Relay` and wrote a body.
    #[error("handler must not write a body when it sets X-WS-Relay")]
    BodyWithRelay,
    /// `X-WS-Relay` is not valid (docs/spec.md §3.4).
    #[error("invalid X-WS-Relay header: {0}")]
    BadHeader(#[from] SettingsError),
    /// `X-WS-Relay` names a `protocol` the client did not offer (docs/spec.md §4, §13).
    #[error("invalid X-WS-Relay header: field `protocol`: {0}")]
    ProtocolNotOffered(#[from] ProtocolNotOffered),
    /// The handler named a target, but the request is not a WebSocket upgrade (docs/spec.md §3.3).
    #[error("this resource is a WebSocket endpoint: send a WebSocket upgrade request")]
    NotUpgraded,
    /// The target is not alive (docs/spec.md §3.5); the text is its PID or name.
    #[error("target process {0} is not alive")]
    TargetDown(String),
    /// The connection's process could not be started.
    #[error("cannot start a connection process: {0}")]
    NoProcess(SpawnError),
}

impl From<limits::Refusal> for RelayRefusal {
    fn from(refusal: limits::Refusal) -> RelayRefusal {
        RelayRefusal::Limit(refusal)
    }
}

impl RelayRefusal {
    /// Answers, counts and logs the refusal of a request (one that asked to upgrade when
    /// `asked_to_upgrade`).
    pub(crate) fn answer(self, relay: &Relay, asked_to_upgrade: bool) -> Response {
        self.log();
        self.count(relay, asked_to_upgrade);
        self.into_response()
    }

    /// Whether the target the handler named is alive and waits for a connection that will
    /// not come, so it must be told `ws.leave` `not_upgraded`.
    pub(crate) fn leaves_a_target_waiting(&self) -> bool {
        matches!(
            self,
            RelayRefusal::BodyWithRelay
                | RelayRefusal::NotUpgraded
                | RelayRefusal::NoProcess(_)
                | RelayRefusal::ProtocolNotOffered(_)
        )
    }

    fn into_response(self) -> Response {
        match self {
            RelayRefusal::Limit(refusal) => refusal.into_response(),
            RelayRefusal::Handshake(rejection) => rejection.into_response(),
            other => {
                let mut res = response::text(other.status(), format!("{other}\n"));
                if matches!(other, RelayRefusal::NotUpgraded) {
                    insert_upgrade_required_headers(res.headers_mut());
                }
                res
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RelayRefusal::Origin(_) => StatusCode::FORBIDDEN,
            RelayRefusal::Limit(refusal) => refusal.status(),
            RelayRefusal::Handshake(rejection) => rejection.status(),
            RelayRefusal::BodyWithRelay
            | RelayRefusal::BadHeader(_)
            | RelayRefusal::ProtocolNotOffered(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RelayRefusal::NotUpgraded => StatusCode::UPGRADE_REQUIRED,
            RelayRefusal::TargetDown(_) | RelayRefusal::NoProcess(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The admission counters ([`LimitStats`](crate::LimitStats)) and `upgrades_refused`
    /// keep counting upgrade requests only, so the upgrade outcomes exported from them still
    /// add up; a plain request refused before its handler counts in `plain_refused`.
    fn count(&self, relay: &Relay, asked_to_upgrade: bool) {
        let stats = relay.stats();
        if !asked_to_upgrade {
            if matches!(self, RelayRefusal::Origin(_) | RelayRefusal::Limit(_)) {
                stats.plain_refused.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        stats.upgrades_refused.fetch_add(1, Ordering::Relaxed);
        let limit_stats = relay.limit_stats();
        match self {
            RelayRefusal::Origin(_) => {
                limit_stats.forbidden_origin.fetch_add(1, Ordering::Relaxed);
            }
            RelayRefusal::Limit(refusal) => refusal.count(limit_stats),
            _ => {}
        }
    }

    fn log(&self) {
        let status = self.status().as_u16();
        match self {
            RelayRefusal::Origin(_) => tracing::info!(status, "relay refused: {self}"),
            RelayRefusal::BodyWithRelay
            | RelayRefusal::BadHeader(_)
            | RelayRefusal::ProtocolNotOffered(_) => {
                tracing::error!(status, "relay refused: {self}")
            }
            RelayRefusal::NoProcess(_) => tracing::warn!(status, "relay refused: {self}"),
            _ => tracing::debug!(status, "relay refused: {self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_a_body_naming_the_problem() {
        let cases: Vec<(RelayRefusal, u16, &str)> = vec![
            (OriginRefusal::Several.into(), 403, "several Origin"),
            (limits::Refusal::OverCapacity.into(), 503, "connections"),
            (limits::Refusal::RateLimited(2).into(), 429, "requests"),
            (Rejection::KeyMissing.into(), 400, "Sec-WebSocket-Key"),
            (RelayRefusal::BodyWithRelay, 500, "body"),
            (SettingsError::NotObject.into(), 500, "object"),
            (RelayRefusal::NotUpgraded, 426, "upgrade"),
            (
                ProtocolNotOffered {
                    protocol: "v3".into(),
                    offered: vec!["v2".into()],
                }
                .into(),
                500,
                "protocol",
            ),
            (
                RelayRefusal::TargetDown("{a|0x00001}".into()),
                503,
                "{a|0x00001}",
            ),
        ];
        for (refusal, status, text) in cases {
            // The body is the message (every variant's response is built from it).
            let message = refusal.to_string();
            assert!(message.contains(text), "{status}: {message}");
            let res = refusal.into_response();
            assert_eq!(res.status().as_u16(), status, "{message}");
            assert_eq!(
                res.headers()[http::header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
        }
    }

    #[test]
    fn a_426_names_the_protocol_to_upgrade_to() {
        let res = RelayRefusal::NotUpgraded.into_response();
        assert_eq!(res.headers()[http::header::UPGRADE], "websocket");
        assert_eq!(res.headers()[http::header::SEC_WEBSOCKET_VERSION], "13");
    }
}
