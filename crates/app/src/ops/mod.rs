//! The operations listener: Prometheus `/metrics`, `/healthz` and, off by default, a
//! token-protected `/admin` API and live `/dashboard`, on an address of its own (never on
//! the app's servers).
//!
//! It is configured by the `wsrelay.ops` entry or the CLI's `--metrics ADDR`, started by
//! [`App::start`](crate::App::start) after the app's servers, and stopped last by
//! [`RunningApp::shutdown`](crate::RunningApp::shutdown), so health checks and scrapes see
//! the drain: `/healthz` answers `503` from the moment shutdown starts.
//!
//! Metrics are exported with `prometheus-client` (OpenMetrics text). Nothing is counted on
//! the hot path by this module: a scrape reads the relay's and the Lua engine's atomic
//! counters and walks the process table once (`Node::processes`, O(processes)). A clustered
//! node's metrics are `prometheus-client` metrics of `wsrelay-cluster`, registered in the
//! same registry (`ClusterStats::register`). The dashboard's snapshots read the same
//! sources ([`dashboard`]).
//!
//! # Admin API
//!
//! Every `/admin` request needs `Authorization: Bearer <token>` (compared in constant time);
//! otherwise `401`. The token comes from the variable named by `admin.token_env` (or
//! `admin.token`); an enabled admin API with no token, or one shorter than 16 bytes,
//! refuses to start.
//!
//! | request | answer |
//! |---|---|
//! | `GET /admin/connections` | JSON list of WebSocket connections: PID, peer address, route, target PID, age, bytes in/out, queue depth |
//! | `GET /admin/processes` | JSON: every process and every host |
//! | `POST /admin/connections/{pid}/close[?code=N&reason=TEXT]` | connection: sends it `ws.close` (code 1000 or 3000–4999, default 1000; reason default `"closed by operator"`); other process: `cancel`. `404` if not alive |
//! | `POST /admin/processes/{pid}/terminate` | stops any process at once with the error `terminated`. `404` if not alive |
//! | `GET /admin/events` | `text/event-stream`: a dashboard snapshot every second ([`dashboard`]) |
//! | `GET /dashboard` | the dashboard page (no token needed to load it; it asks for the token and sends it as a header) |

mod admin;
pub mod dashboard;
mod metrics;

pub use metrics::Metrics;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::Method;
use tokio_util::sync::CancellationToken;
use wsrelay_config::AdminConfig;
use wsrelay_http::{
    handler_fn, Gateway, Request, Response, Router, RunningGateway, Server, ServerConfig,
};
use wsrelay_lua::LuaEngine;
use wsrelay_process::Node;
use wsrelay_relay::Relay;

use crate::{AppError, TokenProblem};

/// The server id of the operations listener (as it appears in logs).
pub(crate) const OPS_SERVER_ID: &str = "wsrelay:ops";

/// What the operations listener serves, resolved from config, flags and the environment.
#[derive(Debug, Clone)]
pub(crate) struct OpsSettings {
    /// Where to listen.
    pub(crate) addr: SocketAddr,
    /// The admin bearer token; `None`: admin off.
    pub(crate) admin_token: Option<String>,
}

/// The state the handlers read.
#[derive(Debug)]
pub(crate) struct OpsState {
    pub(crate) node: Node,
    pub(crate) relay: Relay,
    pub(crate) engine: LuaEngine,
    pub(crate) connection_hosts: HashSet<String>,
    /// The cluster side, when the node is clustered: its counters and peer table.
    pub(crate) cluster: Option<wsrelay_cluster::Cluster>,
    draining: AtomicBool,
    started: SystemTime,
    /// Hot reloads applied and failed (`wsrelay_reloads_total`).
    reloads: [AtomicU64; 2],
    /// Open `/admin/events` streams (at most [`dashboard::MAX_SUBSCRIBERS`]).
    subscribers: AtomicUsize,
    /// Cancelled when the listener stops, so event streams end and do not hold the drain.
    closed: CancellationToken,
    /// The last dashboard snapshot, shared by the streams that tick within its lifetime.
    cache: dashboard::SnapshotCache,
}

impl OpsState {
    pub(crate) fn new(
        node: Node,
        relay: Relay,
        engine: LuaEngine,
        connection_hosts: HashSet<String>,
        cluster: Option<wsrelay_cluster::Cluster>,
    ) -> OpsState {
        OpsState {
            node,
            relay,
            engine,
            connection_hosts,
            cluster,
            draining: AtomicBool::new(false),
            started: SystemTime::now(),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            subscribers: AtomicUsize::new(0),
            closed: CancellationToken::new(),
            cache: dashboard::SnapshotCache::default(),
        }
    }

    /// Marks the app as draining: `/healthz` answers `503` from now on.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Counts a hot reload, applied (`ok`) or not.
    pub(crate) fn count_reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Hot reloads so far: (applied, failed).
    pub(crate) fn reloads(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }
}

/// A running operations listener.
#[derive(Debug)]
pub(crate) struct Ops {
    gateway: RunningGateway,
    state: Arc<OpsState>,
    admin: bool,
}

impl Ops {
    /// Binds the listener and starts serving.
    pub(crate) async fn start(
        settings: OpsSettings,
        state: Arc<OpsState>,
    ) -> Result<Ops, AppError> {
        let admin = settings.admin_token.is_some();
        let router = router(&state, settings.admin_token.map(Arc::from))
            .map_err(|e| AppError::Bind(Box::new(e)))?;
        let mut config = ServerConfig::new(settings.addr);
        config.max_body_size = 64 * 1024;
        let mut server = Server::new(OPS_SERVER_ID, config);
        let mut gateway = Gateway::new();
        let bind = |e| AppError::Bind(Box::new(e));
        server.add_router(router).map_err(bind)?;
        gateway.add_server(server).map_err(bind)?;
        let gateway = gateway.bind().await.map_err(bind)?;
        Ok(Ops {
            gateway,
            state,
            admin,
        })
    }

    /// Whether `/admin` and `/dashboard` are served.
    pub(crate) fn admin_enabled(&self) -> bool {
        self.admin
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.gateway.local_addr(OPS_SERVER_ID)
    }

    /// Stops the listener.
    pub(crate) async fn stop(self) {
        // Event streams never end by themselves; the graceful shutdown would wait for them.
        self.state.closed.cancel();
        if let Err(error) = self.gateway.shutdown().await {
            tracing::warn!(%error, "ops listener did not drain");
        }
    }
}

/// Resolves the admin token: the variable named by `token_env`, else `token`; surrounding
/// white space is trimmed.
///
/// # Errors
///
/// [`AppError::OpsToken`] when admin is enabled and neither gives a non-empty token, or the
/// token is shorter than [`AdminConfig::MIN_TOKEN_BYTES`] (the loader checks a literal
/// `token` already; a variable is only read here).
pub(crate) fn admin_token(ops: &wsrelay_config::OpsConfig) -> Result<Option<String>, AppError> {
    let Some(admin) = &ops.admin else {
        return Ok(None);
    };
    let non_empty = |token: String| Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    let from_env = admin.token_env.as_ref().and_then(|var| {
        let token = non_empty(std::env::var(var).ok()?)?;
        Some((var, token))
    });
    let (field, var, token) = match (from_env, admin.token.clone().and_then(non_empty)) {
        (Some((var, token)), _) => ("admin.token_env", Some(var.clone()), token),
        (None, Some(token)) => ("admin.token", None, token),
        (None, None) => {
            let var = admin.token_env.clone().unwrap_or_default();
            return Err(token_error(
                ops,
                "admin.token_env",
                TokenProblem::Unset { var },
            ));
        }
    };
    let (len, min) = (token.len(), AdminConfig::MIN_TOKEN_BYTES);
    if len < min {
        return Err(token_error(
            ops,
            field,
            TokenProblem::TooShort { var, len, min },
        ));
    }
    Ok(Some(token))
}

fn token_error(
    ops: &wsrelay_config::OpsConfig,
    field: &'static str,
    problem: TokenProblem,
) -> AppError {
    AppError::OpsToken {
        entry: ops.id.clone(),
        file: ops.file.clone(),
        field,
        problem: Box::new(problem),
    }
}

fn router(state: &Arc<OpsState>, token: Option<Arc<str>>) -> Result<Router, wsrelay_http::Error> {
    let mut router = Router::new("/")?;
    type OpenFn = fn(&Arc<OpsState>, &Request) -> Response;
    let open: [(&str, OpenFn); 2] = [
        ("/metrics", |s, _| metrics::metrics(s)),
        ("/healthz", |s, _| metrics::healthz(s)),
    ];
    for (path, f) in open {
        let s = state.clone();
        router.route(
            Method::GET,
            path,
            Arc::new(handler_fn(move |req: Request| {
                let answer = f(&s, &req);
                async move { answer }
            })),
        )?;
    }
    let Some(token) = token else {
        return Ok(router); // admin off: /admin and /dashboard are 404s
    };
    router.route(
        Method::GET,
        "/dashboard",
        Arc::new(handler_fn(|_req| async { dashboard::page() })),
    )?;
    let assets: [(&str, dashboard::Asset); 3] = [
        ("/dashboard/dashboard.js", dashboard::Asset::Script),
        ("/dashboard/dashboard.css", dashboard::Asset::Style),
        ("/dashboard/icon.svg", dashboard::Asset::Icon),
    ];
    for (path, asset) in assets {
        router.route(
            Method::GET,
            path,
            Arc::new(handler_fn(move |_req| async move { asset.response() })),
        )?;
    }
    let endpoints: [(Method, &str, OpenFn); 5] = [
        (Method::GET, "/admin/connections", |s, r| {
            admin::list_connections(s, r)
        }),
        (Method::GET, "/admin/processes", |s, r| {
            admin::list_processes(s, r)
        }),
        (Method::POST, "/admin/connections/{pid}/close", |s, r| {
            admin::close(s, r)
        }),
        (Method::POST, "/admin/processes/{pid}/terminate", |s, r| {
            admin::terminate(s, r)
        }),
        (Method::GET, "/admin/events", dashboard::events),
    ];
    for (method, path, f) in endpoints {
        let (s, token) = (state.clone(), token.clone());
        router.route(
            method,
            path,
            Arc::new(handler_fn(move |req: Request| {
                let answer = if admin::authorized(&req, &token) {
                    f(&s, &req)
                } else {
                    admin::unauthorized()
                };
                async move { answer }
            })),
        )?;
    }
    Ok(router)
}
