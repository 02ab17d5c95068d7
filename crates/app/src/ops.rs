//! The operations listener: Prometheus `/metrics`, `/healthz` and, off by default, a
//! token-protected `/admin` API, on an address of its own (never on the app's servers).
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
//! same registry (`ClusterStats::register`).
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
//! | `GET /admin/connections` | JSON list of WebSocket connection processes |
//! | `GET /admin/processes` | JSON: every process and every host |
//! | `POST /admin/connections/{pid}/close` | connection: sends it `ws.close` (1000, `"closed by operator"`); other process: `cancel`. `404` if not alive |

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::json;
use wsrelay_config::AdminConfig;
use wsrelay_http::{
    handler_fn, response, Gateway, PathParams, Request, Response, Router, RunningGateway, Server,
    ServerConfig,
};
use wsrelay_lua::LuaEngine;
use wsrelay_process::{Map, Message, Node, Pid, Value};
use wsrelay_relay::{Relay, CLOSE_REASONS};

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
    /// The cluster's counters, when the node is clustered.
    pub(crate) cluster: Option<Arc<wsrelay_cluster::ClusterStats>>,
    draining: AtomicBool,
    started: SystemTime,
}

impl OpsState {
    pub(crate) fn new(
        node: Node,
        relay: Relay,
        engine: LuaEngine,
        connection_hosts: HashSet<String>,
        cluster: Option<Arc<wsrelay_cluster::ClusterStats>>,
    ) -> OpsState {
        OpsState {
            node,
            relay,
            engine,
            connection_hosts,
            cluster,
            draining: AtomicBool::new(false),
            started: SystemTime::now(),
        }
    }

    /// Marks the app as draining: `/healthz` answers `503` from now on.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// A running operations listener.
#[derive(Debug)]
pub(crate) struct Ops {
    gateway: RunningGateway,
}

impl Ops {
    /// Binds the listener and starts serving.
    pub(crate) async fn start(
        settings: OpsSettings,
        state: Arc<OpsState>,
    ) -> Result<Ops, AppError> {
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
        Ok(Ops { gateway })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.gateway.local_addr(OPS_SERVER_ID)
    }

    /// Stops the listener.
    pub(crate) async fn stop(self) {
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
    let s = state.clone();
    router.route(
        Method::GET,
        "/metrics",
        Arc::new(handler_fn(move |_req| {
            let s = s.clone();
            async move { metrics(&s) }
        })),
    )?;
    let s = state.clone();
    router.route(
        Method::GET,
        "/healthz",
        Arc::new(handler_fn(move |_req| {
            let s = s.clone();
            async move { healthz(&s) }
        })),
    )?;
    let Some(token) = token else {
        return Ok(router); // admin off: /admin is a 404
    };
    type AdminFn = fn(&OpsState, &Request) -> Response;
    let endpoints: [(Method, &str, AdminFn); 3] = [
        (Method::GET, "/admin/connections", list_connections),
        (Method::GET, "/admin/processes", list_processes),
        (Method::POST, "/admin/connections/{pid}/close", close),
    ];
    for (method, path, f) in endpoints {
        let (s, token) = (state.clone(), token.clone());
        router.route(
            method,
            path,
            Arc::new(handler_fn(move |req: Request| {
                let answer = if authorized(&req, &token) {
                    f(&s, &req)
                } else {
                    unauthorized()
                };
                async move { answer }
            })),
        )?;
    }
    Ok(router)
}

// ===== health and metrics =====

fn healthz(state: &OpsState) -> Response {
    if state.draining.load(Ordering::Acquire) {
        response::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        response::text(StatusCode::OK, "ok\n")
    }
}

/// The app's metrics, read at scrape time: the series `/metrics` serves, for a registry of
/// the embedding app's.
///
/// ```no_run
/// # fn f(app: &wsrelay_app::RunningApp) {
/// let mut registry = prometheus_client::registry::Registry::default();
/// app.metrics().register(&mut registry);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    state: Arc<OpsState>,
}

impl Metrics {
    pub(crate) fn new(state: Arc<OpsState>) -> Metrics {
        Metrics { state }
    }

    /// Registers the app's collector (and a clustered node's cluster metrics) in `registry`.
    /// Nothing is counted until a scrape: the collector reads the counters then.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Snapshot(self.state.clone())));
        if let Some(cluster) = &self.state.cluster {
            // The cluster's metrics live in the cluster crate; registering shares them.
            cluster.register(registry);
        }
    }
}

fn metrics(state: &Arc<OpsState>) -> Response {
    let mut registry = Registry::default();
    Metrics::new(state.clone()).register(&mut registry);
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(%error, "cannot encode metrics");
        return response::text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    let mut res = response::text(StatusCode::OK, body);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// Reads every source at scrape time.
#[derive(Debug)]
struct Snapshot(Arc<OpsState>);

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let stats = s.relay.stats();
        let limits = s.relay.limit_stats();
        gauge(
            &mut enc,
            "wsrelay_connections_open",
            "WebSocket connections open now",
            stats.open(),
        )?;
        let (accepted, refused) = stats.upgrades();
        let by_limits = limits.forbidden_origin() + limits.rate_limited() + limits.over_capacity();
        counters(
            &mut enc,
            "wsrelay_upgrades",
            "WebSocket upgrade requests answered, by outcome",
            "outcome",
            &[
                ("accepted", accepted),
                ("forbidden_origin", limits.forbidden_origin()),
                ("rate_limited", limits.rate_limited()),
                ("over_capacity", limits.over_capacity()),
                ("rejected", refused.saturating_sub(by_limits)),
            ],
        )?;
        let (frames_in, bytes_in) = stats.inbound();
        let (frames_out, bytes_out) = stats.outbound();
        counters(
            &mut enc,
            "wsrelay_frames",
            "WebSocket data frames, by direction (in: from clients)",
            "direction",
            &[("in", frames_in), ("out", frames_out)],
        )?;
        counters(
            &mut enc,
            "wsrelay_bytes",
            "WebSocket payload bytes, by direction (in: from clients)",
            "direction",
            &[("in", bytes_in), ("out", bytes_out)],
        )?;
        let closes: Vec<(&str, u64)> = stats.closes().collect();
        debug_assert_eq!(closes.len(), CLOSE_REASONS.len());
        counters(
            &mut enc,
            "wsrelay_closes",
            "WebSocket connections ended, by reason (SPEC section 6 words)",
            "reason",
            &closes,
        )?;
        let hosts = s.node.hosts();
        let hosts: Vec<(&str, u64)> = hosts.iter().map(|(h, n)| (h.as_str(), *n as u64)).collect();
        gauges(
            &mut enc,
            "wsrelay_processes",
            "Live processes, by host",
            "host",
            &hosts,
        )?;
        let (mut depth, mut peak) = (0usize, 0usize);
        for info in s.node.processes() {
            depth = depth.max(info.inbox_len);
            peak = peak.max(info.inbox_peak);
        }
        gauge(
            &mut enc,
            "wsrelay_inbox_depth_max",
            "Longest inbox of any live process now",
            depth as u64,
        )?;
        gauge(
            &mut enc,
            "wsrelay_inbox_depth_peak",
            "Longest inbox any live process has had (high-water mark)",
            peak as u64,
        )?;
        let lua = s.engine.stats();
        counters(
            &mut enc,
            "wsrelay_lua_errors",
            "Lua failures: process (a process.lua ended with an error), function (a function.lua call failed), timeout (a call hit call_timeout)",
            "kind",
            &[
                ("process", lua.process_errors),
                ("function", lua.function_errors),
                ("timeout", lua.function_timeouts),
            ],
        )?;
        gauge(
            &mut enc,
            "wsrelay_draining",
            "1 while the app is shutting down",
            u64::from(s.draining.load(Ordering::Acquire)),
        )?;
        gauges(
            &mut enc,
            "wsrelay_build_info",
            "Always 1; the version label names the build",
            "version",
            &[(env!("CARGO_PKG_VERSION"), 1)],
        )?;
        process_metrics(&mut enc, s.started)
    }
}

/// `process_*` basics from `/proc` (Linux); absent elsewhere.
fn process_metrics(enc: &mut DescriptorEncoder, started: SystemTime) -> std::fmt::Result {
    let start = started.duration_since(UNIX_EPOCH).unwrap_or_default();
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the app, seconds since the Unix epoch",
        start.as_secs(),
    )?;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(kib) = field("VmRSS:") {
            gauge(
                enc,
                "process_resident_memory_bytes",
                "Resident memory",
                kib * 1024,
            )?;
        }
        if let Some(threads) = field("Threads:") {
            gauge(enc, "process_threads", "OS threads", threads)?;
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            enc,
            "process_open_fds",
            "Open file descriptors",
            dir.count() as u64,
        )?;
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th, in USER_HZ ticks (100 per second in the kernel ABI).
        let ticks: Option<u64> = stat.rsplit_once(')').and_then(|(_, rest)| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
        if let Some(ticks) = ticks {
            let mut m = enc.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(ticks as f64 / 100.0).encode(m.encode_family(&NO_LABELS)?)?;
        }
    }
    Ok(())
}

const NO_LABELS: [(&str, &str); 0] = [];

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(m)
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX)).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

// ===== admin =====

fn authorized(req: &Request, token: &str) -> bool {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// bytes matched. (The length is not secret: tokens are long and random.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    let mut res = response::text(StatusCode::UNAUTHORIZED, "missing or bad bearer token\n");
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn process_json(state: &OpsState, info: &wsrelay_process::ProcessInfo) -> serde_json::Value {
    json!({
        "pid": info.pid.to_string(),
        "host": info.pid.host(),
        "connection": state.connection_hosts.contains(info.pid.host()),
        "inbox_len": info.inbox_len,
        "inbox_peak": info.inbox_peak,
        "monitors": info.monitors,
        "links": info.links,
        "names": info.names,
    })
}

fn list_connections(state: &OpsState, _req: &Request) -> Response {
    let connections: Vec<_> = state
        .node
        .processes()
        .iter()
        .filter(|info| state.connection_hosts.contains(info.pid.host()))
        .map(|info| process_json(state, info))
        .collect();
    response::json(
        StatusCode::OK,
        &json!({ "count": connections.len(), "connections": connections }),
    )
}

fn list_processes(state: &OpsState, _req: &Request) -> Response {
    let processes: Vec<_> = state
        .node
        .processes()
        .iter()
        .map(|info| process_json(state, info))
        .collect();
    let hosts: Vec<_> = state
        .node
        .hosts()
        .into_iter()
        .map(|(id, processes)| json!({ "id": id, "processes": processes }))
        .collect();
    response::json(
        StatusCode::OK,
        &json!({ "count": processes.len(), "processes": processes, "hosts": hosts }),
    )
}

fn close(state: &OpsState, req: &Request) -> Response {
    let text = req
        .extensions()
        .get::<PathParams>()
        .and_then(|p| p.get("pid"))
        .unwrap_or_default();
    let pid: Pid = match text.parse() {
        Ok(pid) => pid,
        Err(e) => {
            let mut body = String::new();
            let _ = writeln!(body, "bad PID {text:?}: {e}");
            return response::text(StatusCode::BAD_REQUEST, body);
        }
    };
    if !state.node.is_alive(&pid) {
        return response::text(StatusCode::NOT_FOUND, format!("{pid} is not alive\n"));
    }
    let (action, result) = if state.connection_hosts.contains(pid.host()) {
        let payload: Value = Map::new()
            .with("code", 1000)
            .with("reason", "closed by operator")
            .into();
        let result = state
            .node
            .send(&pid, Message::new(None, "ws.close", payload));
        ("ws.close", result)
    } else {
        let result = state
            .node
            .cancel(None, &pid, Value::from("closed by operator"));
        ("cancel", result)
    };
    match result {
        Ok(()) => {
            tracing::info!(%pid, action, "closed by operator");
            response::json(
                StatusCode::ACCEPTED,
                &json!({ "pid": pid.to_string(), "sent": action }),
            )
        }
        Err(e) => response::text(StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
