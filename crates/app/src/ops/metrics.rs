//! `/healthz` and `/metrics` (OpenMetrics text, read from the runtime's counters at scrape
//! time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use wsrelay_http::{response, Response};
use wsrelay_relay::CLOSE_REASONS;

use super::OpsState;

pub(super) fn healthz(state: &OpsState) -> Response {
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
            cluster.stats().register(registry);
        }
    }
}

pub(super) fn metrics(state: &Arc<OpsState>) -> Response {
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
        family(
            &mut enc,
            MetricType::Counter,
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
        family(
            &mut enc,
            MetricType::Counter,
            "wsrelay_frames",
            "WebSocket data frames, by direction (in: from clients)",
            "direction",
            &[("in", frames_in), ("out", frames_out)],
        )?;
        counter(
            &mut enc,
            "wsrelay_sends_taken",
            "ws.send messages handled in their sender's call, without the connection's inbox or a wake-up",
            stats.sends_taken(),
        )?;
        family(
            &mut enc,
            MetricType::Counter,
            "wsrelay_bytes",
            "WebSocket payload bytes, by direction (in: from clients)",
            "direction",
            &[("in", bytes_in), ("out", bytes_out)],
        )?;
        let closes: Vec<(&str, u64)> = stats.closes().collect();
        debug_assert_eq!(closes.len(), CLOSE_REASONS.len());
        family(
            &mut enc,
            MetricType::Counter,
            "wsrelay_closes",
            "WebSocket connections ended, by reason (docs/spec.md section 6 words)",
            "reason",
            &closes,
        )?;
        let hosts = s.node.hosts();
        let hosts: Vec<(&str, u64)> = hosts.iter().map(|(h, n)| (h.as_str(), *n as u64)).collect();
        family(
            &mut enc,
            MetricType::Gauge,
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
        family(
            &mut enc,
            MetricType::Counter,
            "wsrelay_lua_errors",
            "Lua failures: process (a process.lua ended with an error), function (a function.lua call failed), timeout (a call hit call_timeout)",
            "kind",
            &[
                ("process", lua.process_errors),
                ("function", lua.function_errors),
                ("timeout", lua.function_timeouts),
            ],
        )?;
        counter(
            &mut enc,
            "wsrelay_lua_preemptions",
            "Times a Lua process or call ran a whole time slice without yielding and was made to wait its turn",
            lua.preemptions,
        )?;
        gauge(
            &mut enc,
            "wsrelay_lua_heap_bytes",
            "Bytes the Lua workers' states have in use (live processes, loaded code, garbage not yet collected), as of each worker's last resume",
            lua.heap_bytes,
        )?;
        let (reloads_ok, reloads_failed) = s.reloads();
        family(
            &mut enc,
            MetricType::Counter,
            "wsrelay_reloads",
            "Hot reloads (run --watch), by result: ok (applied) or error (refused; the previous version kept serving)",
            "result",
            &[("ok", reloads_ok), ("error", reloads_failed)],
        )?;
        gauge(
            &mut enc,
            "wsrelay_draining",
            "1 while the app is shutting down",
            u64::from(s.draining.load(Ordering::Acquire)),
        )?;
        family(
            &mut enc,
            MetricType::Gauge,
            "wsrelay_build_info",
            "Always 1; the version label names the build",
            "version",
            &[(env!("CARGO_PKG_VERSION"), 1)],
        )?;
        process_metrics(&mut enc, s.started)?;
        app_metrics(&mut enc, &s.engine.metrics_snapshot())
    }
}

/// The prefix of the metrics Lua code makes with the `metrics` module, so an app's names
/// never collide with the runtime's own (`wsrelay_app_requests_total`).
pub(crate) const APP_METRIC_PREFIX: &str = "wsrelay_app_";

/// The `metrics` module's series, under [`APP_METRIC_PREFIX`].
fn app_metrics(
    enc: &mut DescriptorEncoder,
    families: &[wsrelay_lua::MetricFamily],
) -> std::fmt::Result {
    use wsrelay_lua::{MetricKind, SeriesValue};
    for family in families {
        let name = format!("{APP_METRIC_PREFIX}{}", family.name);
        let kind = match family.kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        let mut m = enc.encode_descriptor(&name, "Set by the app's Lua code", None, kind)?;
        for series in &family.series {
            let mut e = m.encode_family(&series.labels)?;
            match &series.value {
                SeriesValue::Counter(v) => ConstCounter::new(*v).encode(e)?,
                SeriesValue::Gauge(v) => ConstGauge::new(*v).encode(e)?,
                SeriesValue::Histogram {
                    sum,
                    count,
                    buckets,
                } => e.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
            }
        }
    }
    Ok(())
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
    ConstGauge::new(as_gauge(value)).encode(m)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// A gauge holds an `i64`: a count past it reads as the largest one.
fn as_gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One metric of type `kind` (a gauge or a counter) with a series per value of `label`.
fn family(
    enc: &mut DescriptorEncoder,
    kind: MetricType,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        let series = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*n).encode(series)?,
            _ => ConstGauge::new(as_gauge(*n)).encode(series)?,
        }
    }
    Ok(())
}
