//! The `websocket_relay` middleware: SPEC §3 from request to `101`.

use std::sync::Arc;

use http::{header, HeaderValue, StatusCode};
use wsrelay_http::{
    response, BoxFuture, ConnectInfo, Middleware, Next, Request, Response, Shutdown,
};
use wsrelay_process::{HostConfig, SpawnError, SpawnOptions};

use crate::connection::{ws_config, Connection};
use crate::limits::Admission;
use crate::settings::{RelayOptions, RelayTarget};
use crate::Relay;

/// The response header a handler sets to ask for a relay.
pub const RELAY_HEADER: &str = "x-ws-relay";

/// The middleware of one router, with that router's options.
#[derive(Debug)]
pub(crate) struct RelayMiddleware {
    pub(crate) relay: Relay,
    pub(crate) options: Arc<RelayOptions>,
    pub(crate) admission: Arc<Admission>,
}

impl Middleware for RelayMiddleware {
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        let relay = self.relay.clone();
        let options = self.options.clone();
        let admission = self.admission.clone();
        Box::pin(async move { relay_request(relay, options, admission, req, next).await })
    }
}

async fn relay_request(
    relay: Relay,
    options: Arc<RelayOptions>,
    admission: Arc<Admission>,
    mut req: Request,
    next: Next,
) -> Response {
    // 1. Origin before the handler, so a refused cross-site request spawns nothing.
    let upgrade_attempt = wsrelay_ws::handshake::is_upgrade_attempt(req.headers());
    if upgrade_attempt {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if !options.origins.allows(origin, host) {
            tracing::info!(origin = ?origin, path = %req.uri().path(), "websocket origin refused");
            relay
                .limit_stats()
                .forbidden_origin
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return relay.refused(response::text(
                StatusCode::FORBIDDEN,
                "origin not allowed\n",
            ));
        }
    }
    // 1b. Admission (rate per client IP, connections per router), also before the handler.
    // The permit travels with the connection and frees its slot when it ends.
    let permit = if upgrade_attempt {
        let client = req
            .extensions()
            .get::<ConnectInfo>()
            .map(|i| i.remote_addr().ip());
        match admission.admit(client) {
            Ok(permit) => Some(permit),
            Err(refusal) => {
                tracing::debug!(?client, ?refusal, "websocket upgrade refused");
                refusal.count(relay.limit_stats());
                return relay.refused(refusal.into_response());
            }
        }
    } else {
        None
    };
    let accepted =
        wsrelay_ws::accept::<_, wsrelay_http::ResponseBody>(&mut req, ws_config(&options));
    let info = req.extensions().get::<ConnectInfo>().cloned();
    let shutdown = req.extensions().get::<Shutdown>().cloned();

    // 2. The handler.
    let mut res = next.run(req).await;
    let Some(value) = res.headers_mut().remove(RELAY_HEADER) else {
        return res; // not a relay: pass through untouched
    };

    // 3. A relay needs a valid upgrade request and an empty body.
    let (switching, pending) = match accepted {
        Ok(accepted) => accepted,
        Err(rejection) => return relay.refused(rejection.into_response()),
    };
    if !res.body().is_known_empty() {
        tracing::error!("handler wrote a body and set X-WS-Relay");
        return relay.refused(response::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler must not write a body when it sets X-WS-Relay\n",
        ));
    }

    // 4. The header.
    let settings = match RelayTarget::from_header(value.as_bytes()) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!("invalid X-WS-Relay header: {e}");
            return relay.refused(response::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("invalid X-WS-Relay header: {e}\n"),
            ));
        }
    };

    // 5. The target must be alive now.
    let node = relay.node().clone();
    let target = match node.resolve(&settings.target) {
        Ok(pid) if node.is_alive(&pid) => pid,
        Ok(pid) => return relay.refused(unavailable(&pid.to_string())),
        Err(wsrelay_process::SendError::BadDestination(text, problem)) => {
            tracing::error!("invalid X-WS-Relay header: field `target_pid`: {problem}");
            return relay.refused(response::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("invalid X-WS-Relay header: field `target_pid`: {text:?}: {problem}\n"),
            ));
        }
        Err(_) => return relay.refused(unavailable(&settings.target)),
    };

    // 6. The connection's process, on the server's host, monitoring its target.
    let host = info.as_ref().map_or("wsrelay:gateway", |i| i.server_id());
    let process = match attach(&relay, host) {
        Ok(process) => process,
        Err(e) => {
            tracing::warn!("cannot start a connection process: {e}");
            return relay.refused(response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}\n"),
            ));
        }
    };
    let (ctx, guard) = process.detach();
    if ctx.monitor(&target).is_err() {
        return relay.refused(unavailable(&target.to_string()));
    }
    let stats = relay.stats().clone();
    let task = async move {
        let _permit = permit;
        match pending.into_connection().await {
            Ok(ws) => {
                Connection::new(ctx, ws, target, settings, options, stats)
                    .run(guard)
                    .await
            }
            // The client left before the upgrade completed: no join, so no leave.
            Err(e) => guard.exit(wsrelay_process::ExitResult::error_with_value(
                "connection_lost",
                e,
            )),
        }
    };
    match shutdown {
        Some(shutdown) => drop(shutdown.tracker().spawn(task)),
        None => drop(tokio::spawn(task)),
    }
    relay
        .stats()
        .upgrades_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut switching: Response = switching;
    switching
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("wsrelay"));
    switching
}

fn attach(relay: &Relay, host: &str) -> Result<wsrelay_process::NewProcess, SpawnError> {
    match relay.node().attach(host, SpawnOptions::new()) {
        Err(SpawnError::UnknownHost(_)) => {
            // Connections live on a host named after their server (SPEC §2).
            relay.node().add_host(host, HostConfig::default());
            relay.node().attach(host, SpawnOptions::new())
        }
        other => other,
    }
}

fn unavailable(target: &str) -> Response {
    response::text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("target process {target} is not alive\n"),
    )
}
