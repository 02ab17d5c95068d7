//! Admission limits of a relay route: a cap on open connections and a per-client-IP request
//! rate (token bucket). Both are checked **before the handler runs**, for every request on
//! the route (docs/spec.md §3.1), plain ones included: a plain GET to a handler that spawns a target
//! costs what an upgrade costs, so a refused request spawns nothing. A connection keeps its
//! slot of the pool until it ends; any other request holds one only while its handler runs.
//!
//! | option | default | on excess |
//! |---|---|---|
//! | `wsrelay.max_connections` | 10000 per router (connections plus requests in their handler) | `503`, `Retry-After: 1` |
//! | `wsrelay.upgrade_rate` | `100/s` per client IP (every request on the route) | `429`, `Retry-After` = seconds until a token |
//! | `wsrelay.upgrade_burst` | 200 | (bucket size) |
//!
//! The options keep their names from when only upgrades were counted.
//!
//! Why these defaults: 10,000 connections keep a router well under the usual 65,536
//! descriptor limit and its worst-case outbound buffering bounded, while leaving room for a
//! real deployment; raise it deliberately. 100 requests per second with a burst of 200 is far
//! above what browsers do, even a few hundred users behind one NAT reconnecting after a
//! deploy, yet a single address needs more than a minute and a half to fill a router's pool.
//!
//! The per-IP table is bounded: at most [`MAX_TRACKED_CLIENTS`] entries. A bucket that has
//! refilled completely is the same as no entry, so it is evicted when room is needed (sweeps
//! happen at most once a second). If the table is still full, new addresses share one
//! overflow bucket: memory stays bounded, and a flood from many addresses is throttled as one
//! client. IPv6 clients are keyed by their `/64`, since one host usually owns a whole `/64`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, StatusCode};
use parking_lot::Mutex;
use wsrelay_http::{response, Response};

/// The most client addresses one rate limiter tracks at once.
pub const MAX_TRACKED_CLIENTS: usize = 16_384;

/// The default `wsrelay.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default `wsrelay.upgrade_rate` (requests per second per client IP).
pub const DEFAULT_UPGRADE_RATE: f64 = 100.0;

/// The default `wsrelay.upgrade_burst`.
pub const DEFAULT_UPGRADE_BURST: u32 = 200;

/// The admission settings of one router.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitOptions {
    /// `wsrelay.max_connections`: open connections of the router (`None`: `unlimited`).
    pub max_connections: Option<usize>,
    /// `wsrelay.upgrade_rate` in requests per second per IP (`None`: `off`).
    pub upgrade_rate: Option<f64>,
    /// `wsrelay.upgrade_burst`: the token bucket's size.
    pub upgrade_burst: u32,
}

impl Default for LimitOptions {
    fn default() -> LimitOptions {
        LimitOptions {
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            upgrade_rate: Some(DEFAULT_UPGRADE_RATE),
            upgrade_burst: DEFAULT_UPGRADE_BURST,
        }
    }
}

/// Parses `wsrelay.max_connections`: a positive integer or `unlimited`.
pub(crate) fn parse_max_connections(key: &str, value: &str) -> Result<Option<usize>, String> {
    if value.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .map(Some)
        .ok_or_else(|| {
            format!("option {key}: bad value {value:?} (a positive integer or `unlimited`)")
        })
}

/// Parses `wsrelay.upgrade_rate`: `N`, `N/s` or `N/m` (per second or minute), or `off`.
pub(crate) fn parse_rate(key: &str, value: &str) -> Result<Option<f64>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("option {key}: bad rate {value:?} (use e.g. 100/s, 600/m or off)");
    let (number, per) = match value.split_once('/') {
        Some((n, unit)) => (n.trim(), unit.trim().to_ascii_lowercase()),
        None => (value, "s".to_owned()),
    };
    let seconds = match per.as_str() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        _ => return Err(bad()),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    Ok(Some(n / seconds))
}

/// Parses `wsrelay.upgrade_burst`: a positive integer.
pub(crate) fn parse_burst(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("option {key}: bad value {value:?} (a positive integer)"))
}

// ===== counters =====

/// Counts of upgrade requests refused before the handler (origin, rate, capacity), for the
/// metrics exporter. Plain requests refused so are counted in
/// [`RelayStats::plain_refused`](crate::RelayStats::plain_refused).
#[derive(Debug, Default)]
pub struct LimitStats {
    pub(crate) forbidden_origin: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) over_capacity: AtomicU64,
}

impl LimitStats {
    /// Upgrade requests refused with `403` because of their `Origin`.
    pub fn forbidden_origin(&self) -> u64 {
        self.forbidden_origin.load(Ordering::Relaxed)
    }

    /// Upgrade requests refused with `429` (`wsrelay.upgrade_rate`).
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Upgrade requests refused with `503` (`wsrelay.max_connections`).
    pub fn over_capacity(&self) -> u64 {
        self.over_capacity.load(Ordering::Relaxed)
    }
}

// ===== admission =====

/// The admission state of one router: its connection count and its per-IP buckets.
#[derive(Debug)]
pub(crate) struct Admission {
    options: LimitOptions,
    open: Arc<AtomicUsize>,
    rate: Option<RateLimiter>,
}

/// A slot of the router's connection pool; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    open: Option<Arc<AtomicUsize>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why a request was refused admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// Too many requests from this client; retry after this many seconds.
    #[error("too many requests from this address")]
    RateLimited(u64),
    /// The router has `max_connections` open (counting requests whose handler runs).
    #[error("too many WebSocket connections")]
    OverCapacity,
}

impl Refusal {
    /// `429` or `503`.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::OverCapacity => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: `429`/`503` with `Retry-After` and a plain-text body.
    pub(crate) fn into_response(self) -> Response {
        let retry = match self {
            Refusal::RateLimited(after) => after,
            Refusal::OverCapacity => 1,
        };
        let mut res = response::text(self.status(), format!("{self}\n"));
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        res
    }

    /// Counts the refusal.
    pub(crate) fn count(self, stats: &LimitStats) {
        let counter = match self {
            Refusal::RateLimited(_) => &stats.rate_limited,
            Refusal::OverCapacity => &stats.over_capacity,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// The admission state for `options`.
    pub(crate) fn new(options: LimitOptions) -> Admission {
        Admission {
            rate: options
                .upgrade_rate
                .map(|rate| RateLimiter::new(rate, options.upgrade_burst, MAX_TRACKED_CLIENTS)),
            options,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admits one request from `client` (when known), or says why not. The rate is
    /// checked first, so a client refused for capacity still spends a token: retry storms
    /// against a full router are throttled too.
    pub(crate) fn admit(&self, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        if let (Some(rate), Some(ip)) = (&self.rate, client) {
            rate.check(ip, Instant::now())?;
        }
        let Some(max) = self.options.max_connections else {
            return Ok(Permit { open: None });
        };
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Ok(Permit {
                open: Some(self.open.clone()),
            })
        } else {
            Err(Refusal::OverCapacity)
        }
    }
}

// ===== rate limiter =====

/// Per-client token buckets with a bounded table.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    state: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    /// Takes a token, or returns the whole seconds until one is there (at least 1).
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), u64> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / rate).ceil();
            Err((wait as u64).max(1))
        }
    }

    fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

/// How often a full table may be swept for idle entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// `rate` tokens per second, `burst` tokens at most, `capacity` tracked clients at most.
    pub(crate) fn new(rate: f64, burst: u32, capacity: usize) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            capacity: capacity.max(1),
            state: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: Bucket::full(burst, Instant::now()),
                last_sweep: None,
            }),
        }
    }

    /// Takes a token for `ip` at `now`.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let key = client_key(ip);
        let (rate, burst) = (self.rate, self.burst);
        let mut table = self.state.lock();
        if !table.buckets.contains_key(&key) && table.buckets.len() >= self.capacity {
            table.sweep(rate, burst, now);
        }
        let bucket = if let Some(bucket) = table.buckets.get_mut(&key) {
            bucket
        } else if table.buckets.len() < self.capacity {
            table
                .buckets
                .entry(key)
                .or_insert_with(|| Bucket::full(burst, now))
        } else {
            &mut table.overflow
        };
        bucket.take(rate, burst, now).map_err(Refusal::RateLimited)
    }

    /// The number of tracked clients.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.state.lock().buckets.len()
    }
}

impl Table {
    fn sweep(&mut self, rate: f64, burst: f64, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets.retain(|_, b| !b.is_full(rate, burst, now));
    }
}

/// IPv4 addresses as they are; IPv6 by their `/64` (IPv4-mapped ones as IPv4).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(10.0, 5, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(ip(1), t0), Ok(()));
        }
        assert_eq!(limiter.check(ip(1), t0), Err(Refusal::RateLimited(1)));
        // Another client is unaffected.
        assert_eq!(limiter.check(ip(2), t0), Ok(()));
        // 100 ms gives one token back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(ip(1), t1), Ok(()));
        assert!(limiter.check(ip(1), t1).is_err());
    }

    #[test]
    fn retry_after_reflects_a_slow_rate() {
        let limiter = RateLimiter::new(0.1, 1, 100); // one per 10 s
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip(1), t0), Ok(()));
        assert_eq!(limiter.check(ip(1), t0), Err(Refusal::RateLimited(10)));
    }

    #[test]
    fn table_is_bounded_and_idle_entries_are_evicted() {
        let limiter = RateLimiter::new(10.0, 2, 4);
        let t0 = Instant::now();
        for n in 0..100 {
            let _ = limiter.check(ip(n), t0);
            assert!(limiter.tracked() <= 4);
        }
        // Past the table, clients share the overflow bucket (2 tokens, long spent).
        assert!(limiter.check(ip(1000), t0).is_err());
        // Once the tracked buckets have refilled, a sweep makes room again.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(limiter.check(ip(2000), later), Ok(()));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_is_keyed_by_slash_64() {
        let limiter = RateLimiter::new(1.0, 1, 100);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter.check(a, t0), Ok(()));
        assert!(limiter.check(b, t0).is_err());
        assert_eq!(limiter.check(c, t0), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn connection_permits_are_released_on_drop() {
        let admission = Admission::new(LimitOptions {
            max_connections: Some(2),
            upgrade_rate: None,
            upgrade_burst: 1,
        });
        let a = admission.admit(None).unwrap();
        let _b = admission.admit(None).unwrap();
        assert_eq!(admission.admit(None).unwrap_err(), Refusal::OverCapacity);
        drop(a);
        assert!(admission.admit(None).is_ok());
    }

    #[test]
    fn refusals_carry_status_and_retry_after() {
        let res = Refusal::RateLimited(3).into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        let res = Refusal::OverCapacity.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn option_parsing() {
        let k = "wsrelay.upgrade_rate";
        assert_eq!(parse_rate(k, "100/s"), Ok(Some(100.0)));
        assert_eq!(parse_rate(k, "50"), Ok(Some(50.0)));
        assert_eq!(parse_rate(k, "600/m"), Ok(Some(10.0)));
        assert_eq!(parse_rate(k, "off"), Ok(None));
        for bad in ["0", "-1/s", "fast", "10/h", "NaN"] {
            assert!(parse_rate(k, bad).unwrap_err().contains(k), "{bad}");
        }
        let k = "wsrelay.max_connections";
        assert_eq!(parse_max_connections(k, "5"), Ok(Some(5)));
        assert_eq!(parse_max_connections(k, "unlimited"), Ok(None));
        assert!(parse_max_connections(k, "0").is_err());
        assert!(parse_burst("b", "0").is_err());
        assert_eq!(parse_burst("b", "7"), Ok(7));
    }
}
