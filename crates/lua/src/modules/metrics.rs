//! The `metrics` module: counters, gauges and histograms with labels (Wippy's `metrics`),
//! which the operations listener exports on `/metrics`.
//!
//! `counter_inc(name, labels?)`, `counter_add(name, v, labels?)`, `gauge_set(name, v,
//! labels?)`, `gauge_inc(name, labels?)`, `gauge_dec(name, labels?)` and `histogram(name, v,
//! labels?)` return `true`, or `nil, err`. Every process of the engine writes into one
//! [`AppMetrics`] (a map behind a mutex: a call is a hash lookup and an add, and one lock
//! keeps the caps exact across shards); a scrape copies it out with
//! [`AppMetrics::snapshot`].
//!
//! Names and label names follow Prometheus' rules (`[a-zA-Z_][a-zA-Z0-9_]*`; a label name
//! may not start with `__`, and `le` is the histogram's own label). A name keeps one type: a
//! counter cannot later be set as a gauge, and no two metrics may expose the same sample name
//! (a counter `x` exposes `x_total`, a histogram `h` exposes `h_bucket`, `h_sum` and
//! `h_count`). A counter named `x_total` is the counter `x`.
//!
//! **Bounds.** Labels make series, and a label value taken from user input (a user id, a
//! path) would otherwise grow the map without end. A metric holds at most
//! [`MAX_SERIES_PER_METRIC`] series, the engine at most [`MAX_SERIES`] series and
//! [`MAX_METRICS`] metrics; a call that would create a series past a cap returns INTERNAL
//! (Wippy's kind for "the collector did not take it") and changes nothing, while calls on
//! series that exist keep working. Series are never removed: the caps are the memory bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::errors::{Kind, WippyError};
use super::{wippy_function, WippyFail};

/// The most series (distinct label sets) one metric holds.
pub const MAX_SERIES_PER_METRIC: usize = 1000;
/// The most series one engine holds, over all metrics.
pub const MAX_SERIES: usize = 10_000;
/// The most metrics (names) one engine holds.
pub const MAX_METRICS: usize = 1000;
/// The most labels on one series.
pub const MAX_LABELS: usize = 16;
/// The longest metric or label name, in bytes.
pub const MAX_NAME: usize = 128;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// The upper bounds of every histogram's buckets (Prometheus' defaults, in seconds, so a
/// latency in seconds lands in a useful bucket); `+Inf` follows.
pub const HISTOGRAM_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`counter_inc`, `counter_add`).
    Counter,
    /// Goes up and down (`gauge_set`, `gauge_inc`, `gauge_dec`).
    Gauge,
    /// Observations counted into buckets (`histogram`).
    Histogram,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }

    /// The sample names a metric of this kind exposes, besides its own name.
    fn samples(self, name: &str) -> Vec<String> {
        match self {
            MetricKind::Counter => vec![format!("{name}_total")],
            MetricKind::Gauge => vec![],
            MetricKind::Histogram => ["bucket", "sum", "count"]
                .iter()
                .map(|s| format!("{name}_{s}"))
                .collect(),
        }
    }
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    /// A counter's total.
    Counter(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram.
    Histogram {
        /// The sum of the observations.
        sum: f64,
        /// How many observations.
        count: u64,
        /// Per bucket (not cumulative): the upper bound ([`HISTOGRAM_BUCKETS`], then
        /// infinity) and how many observations fell into it and no lower one.
        buckets: Vec<(f64, u64)>,
    },
}

/// One series of a metric: its labels (sorted by name) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// Label names and values, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: SeriesValue,
}

/// One metric as a scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The name as Lua gave it (without the exporter's prefix; a counter without `_total`).
    pub name: String,
    /// The type.
    pub kind: MetricKind,
    /// Its series, sorted by labels.
    pub series: Vec<MetricSeries>,
}

type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    kind: MetricKind,
    series: BTreeMap<Labels, SeriesValue>,
}

#[derive(Debug, Default)]
struct Inner {
    families: HashMap<String, Family>,
    /// Every sample name in use, so two metrics never expose the same one.
    taken: HashSet<String>,
    series: usize,
}

/// The metrics of one engine, written by Lua and read by a scrape.
#[derive(Debug, Default)]
pub(crate) struct AppMetrics(Mutex<Inner>);

/// What an update does to a series.
#[derive(Debug, Clone, Copy)]
enum Op {
    Add(f64),
    Set(f64),
    Observe(f64),
}

impl Op {
    fn apply(self, value: &mut SeriesValue) {
        match (self, value) {
            (Op::Add(v), SeriesValue::Counter(n) | SeriesValue::Gauge(n)) => *n += v,
            (Op::Set(v), SeriesValue::Gauge(n)) => *n = v,
            (
                Op::Observe(v),
                SeriesValue::Histogram {
                    sum,
                    count,
                    buckets,
                },
            ) => {
                *sum += v;
                *count += 1;
                // The first bucket whose bound is at least `v`; the last is infinity.
                if let Some(bucket) = buckets.iter_mut().find(|(le, _)| v <= *le) {
                    bucket.1 += 1;
                }
            }
            // The kind was checked before; a mismatch cannot reach here.
            _ => {}
        }
    }
}

fn zero(kind: MetricKind) -> SeriesValue {
    match kind {
        MetricKind::Counter => SeriesValue::Counter(0.0),
        MetricKind::Gauge => SeriesValue::Gauge(0.0),
        MetricKind::Histogram => SeriesValue::Histogram {
            sum: 0.0,
            count: 0,
            buckets: HISTOGRAM_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|le| (le, 0))
                .collect(),
        },
    }
}

impl AppMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic cannot happen while the lock is held (no Lua runs under it); recover anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `op` to the series `labels` of metric `name` of type `kind`.
    fn update(
        &self,
        name: &str,
        kind: MetricKind,
        labels: Labels,
        op: Op,
    ) -> Result<(), WippyError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(family) = inner.families.get_mut(name) {
            if family.kind != kind {
                return Err(WippyError::invalid(format!(
                    "metric {name:?} is a {}, not a {}",
                    family.kind.name(),
                    kind.name()
                )));
            }
            if let Some(value) = family.series.get_mut(&labels) {
                op.apply(value);
                return Ok(());
            }
            if family.series.len() >= MAX_SERIES_PER_METRIC {
                return Err(full(format!(
                    "metric {name:?} has {MAX_SERIES_PER_METRIC} series already"
                )));
            }
            if inner.series >= MAX_SERIES {
                return Err(full(format!("the app has {MAX_SERIES} series already")));
            }
            let mut value = zero(kind);
            op.apply(&mut value);
            family.series.insert(labels, value);
            inner.series += 1;
            return Ok(());
        }
        if inner.families.len() >= MAX_METRICS {
            return Err(full(format!("the app has {MAX_METRICS} metrics already")));
        }
        if inner.series >= MAX_SERIES {
            return Err(full(format!("the app has {MAX_SERIES} series already")));
        }
        let mut names = kind.samples(name);
        names.push(name.to_owned());
        if let Some(clash) = names.iter().find(|n| inner.taken.contains(n.as_str())) {
            return Err(WippyError::invalid(format!(
                "metric {name:?}: the name {clash:?} is exposed by another metric"
            )));
        }
        inner.taken.extend(names);
        let mut value = zero(kind);
        op.apply(&mut value);
        inner.families.insert(
            name.to_owned(),
            Family {
                kind,
                series: BTreeMap::from([(labels, value)]),
            },
        );
        inner.series += 1;
        Ok(())
    }

    /// A copy of every metric, sorted by name.
    pub(crate) fn snapshot(&self) -> Vec<MetricFamily> {
        let inner = self.lock();
        let mut out: Vec<MetricFamily> = inner
            .families
            .iter()
            .map(|(name, f)| MetricFamily {
                name: name.clone(),
                kind: f.kind,
                series: f
                    .series
                    .iter()
                    .map(|(labels, value)| MetricSeries {
                        labels: labels.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
            .collect();
        drop(inner);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

fn full(message: String) -> WippyError {
    WippyError::new(Kind::Internal, format!("{message} (series are capped)"))
}

/// Prometheus' name rule: `[a-zA-Z_][a-zA-Z0-9_]*`, 1..=[`MAX_NAME`] bytes. (Colons are
/// legal in Prometheus but reserved for recording rules, so apps do not get them.)
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The metric name argument, checked; a counter's `_total` suffix is dropped.
fn name_arg(fname: &str, args: &MultiValue, kind: MetricKind) -> Result<String, WippyError> {
    let name = match args.front() {
        Some(LuaValue::String(s)) => s.to_str().map(|s| s.to_owned()).ok(),
        None | Some(LuaValue::Nil) => {
            return Err(WippyError::invalid(format!(
                "metrics.{fname}: name is required"
            )))
        }
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "metrics.{fname}: name must be a string, got {}",
                other.type_name()
            )))
        }
    };
    let name = name.filter(|n| valid_name(n)).ok_or_else(|| {
        WippyError::invalid(format!(
            "metrics.{fname}: name must match [a-zA-Z_][a-zA-Z0-9_]* (at most {MAX_NAME} bytes)"
        ))
    })?;
    match name.strip_suffix("_total") {
        Some(base) if kind == MetricKind::Counter && !base.is_empty() => Ok(base.to_owned()),
        _ => Ok(name),
    }
}

/// The number argument `index`: finite.
fn value_arg(fname: &str, args: &MultiValue, index: usize) -> Result<f64, WippyError> {
    let v = match args.get(index) {
        Some(LuaValue::Integer(n)) => *n as f64,
        Some(LuaValue::Number(f)) => *f,
        None | Some(LuaValue::Nil) => {
            return Err(WippyError::invalid(format!(
                "metrics.{fname}: value is required"
            )))
        }
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "metrics.{fname}: value must be a number, got {}",
                other.type_name()
            )))
        }
    };
    if !v.is_finite() {
        return Err(WippyError::invalid(format!(
            "metrics.{fname}: value must be finite"
        )));
    }
    Ok(v)
}

/// The labels argument `index`: nil, or a table of at most [`MAX_LABELS`] name → value
/// (string, number or boolean) pairs; sorted by name.
fn labels_arg(
    fname: &str,
    args: &MultiValue,
    index: usize,
    kind: MetricKind,
) -> Result<Labels, WippyFail> {
    let table = match args.get(index) {
        None | Some(LuaValue::Nil) => return Ok(Vec::new()),
        Some(LuaValue::Table(t)) => t,
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "metrics.{fname}: labels must be a table, got {}",
                other.type_name()
            ))
            .into())
        }
    };
    let bad = |m: String| WippyFail::from(WippyError::invalid(format!("metrics.{fname}: {m}")));
    let mut labels = Vec::new();
    // `for_each` stops at the first error, so an oversized table costs at most MAX_LABELS + 1
    // steps.
    let mut problem = None;
    table.for_each(|k: LuaValue, v: LuaValue| {
        if labels.len() >= MAX_LABELS {
            problem = Some(format!("at most {MAX_LABELS} labels"));
            return Err(mlua::Error::runtime("stop"));
        }
        let key = match &k {
            LuaValue::String(s) => s.to_str().ok().map(|s| s.to_owned()),
            _ => None,
        };
        let Some(key) = key.filter(|k| valid_name(k) && !k.starts_with("__")) else {
            problem = Some(
                "label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __".to_owned(),
            );
            return Err(mlua::Error::runtime("stop"));
        };
        if kind == MetricKind::Histogram && key == "le" {
            problem = Some("a histogram cannot have a label named le".to_owned());
            return Err(mlua::Error::runtime("stop"));
        }
        let value = match &v {
            LuaValue::String(s) => s.to_str().ok().map(|s| s.to_owned()),
            LuaValue::Integer(_) | LuaValue::Number(_) | LuaValue::Boolean(_) => {
                v.to_string().ok()
            }
            _ => None,
        };
        match value {
            Some(value) if value.len() <= MAX_LABEL_VALUE => {
                labels.push((key, value));
                Ok(())
            }
            _ => {
                problem = Some(format!(
                    "label {key:?}: the value must be UTF-8 text, a number or a boolean of at most {MAX_LABEL_VALUE} bytes"
                ));
                Err(mlua::Error::runtime("stop"))
            }
        }
    })
    .or_else(|e| if problem.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(p) = problem {
        return Err(bad(p));
    }
    labels.sort();
    Ok(labels)
}

/// One module function: parses `name`, the value (at `value_at`, or a fixed one) and the
/// labels, then applies the update.
fn updater(
    lua: &Lua,
    metrics: &std::sync::Arc<AppMetrics>,
    fname: &'static str,
    kind: MetricKind,
    value_at: Option<usize>,
    op: fn(f64) -> Result<Op, &'static str>,
    fixed: f64,
) -> mlua::Result<mlua::Function> {
    let metrics = metrics.clone();
    wippy_function(lua, move |_, args: MultiValue| {
        let name = name_arg(fname, &args, kind)?;
        let (v, labels_at) = match value_at {
            Some(i) => (value_arg(fname, &args, i)?, i + 1),
            None => (fixed, 1),
        };
        let op = op(v).map_err(|m| WippyError::invalid(format!("metrics.{fname}: {m}")))?;
        let labels = labels_arg(fname, &args, labels_at, kind)?;
        metrics
            .update(&name, kind, labels, op)
            .map_err(|e| WippyError::new(e.kind(), format!("metrics.{fname}: {e}")))?;
        Ok(LuaValue::Boolean(true))
    })
}

/// Builds the `metrics` module table over the engine's `metrics`.
pub(crate) fn module(lua: &Lua, metrics: std::sync::Arc<AppMetrics>) -> mlua::Result<Table> {
    use MetricKind::{Counter, Gauge, Histogram};
    let m = lua.create_table()?;
    let counter_add: fn(f64) -> Result<Op, &'static str> = |v| {
        if v < 0.0 {
            Err("a counter only goes up: the value must be at least 0")
        } else {
            Ok(Op::Add(v))
        }
    };
    let set: fn(f64) -> Result<Op, &'static str> = |v| Ok(Op::Set(v));
    let observe: fn(f64) -> Result<Op, &'static str> = |v| Ok(Op::Observe(v));
    let gauge_add: fn(f64) -> Result<Op, &'static str> = |v| Ok(Op::Add(v));
    let f = |name, kind, at, op, fixed| updater(lua, &metrics, name, kind, at, op, fixed);
    m.raw_set(
        "counter_inc",
        f("counter_inc", Counter, None, counter_add, 1.0)?,
    )?;
    m.raw_set(
        "counter_add",
        f("counter_add", Counter, Some(1), counter_add, 0.0)?,
    )?;
    m.raw_set("gauge_set", f("gauge_set", Gauge, Some(1), set, 0.0)?)?;
    m.raw_set("gauge_inc", f("gauge_inc", Gauge, None, gauge_add, 1.0)?)?;
    m.raw_set("gauge_dec", f("gauge_dec", Gauge, None, gauge_add, -1.0)?)?;
    m.raw_set(
        "histogram",
        f("histogram", Histogram, Some(1), observe, 0.0)?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(valid_name("a"));
        assert!(valid_name("_x9"));
        assert!(valid_name("http_requests"));
        assert!(!valid_name(""));
        assert!(!valid_name("9x"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(&"a".repeat(MAX_NAME + 1)));
    }

    #[test]
    fn histogram_buckets_are_per_bucket() {
        let m = AppMetrics::default();
        for v in [0.001, 0.3, 0.3, 100.0] {
            m.update("h", MetricKind::Histogram, vec![], Op::Observe(v))
                .unwrap();
        }
        let snap = m.snapshot();
        let SeriesValue::Histogram {
            sum,
            count,
            buckets,
        } = &snap[0].series[0].value
        else {
            panic!("not a histogram: {snap:?}");
        };
        assert_eq!(*count, 4);
        assert!((sum - 100.601).abs() < 1e-9);
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[6], (0.5, 2));
        assert_eq!(buckets[11], (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
    }
}
