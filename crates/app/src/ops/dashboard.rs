//! The live dashboard: a page embedded in the binary (`/dashboard`, its script and style)
//! and the event stream it reads (`GET /admin/events`).
//!
//! **Sources.** A snapshot reads what `/metrics` and `/admin` read, nothing else: the
//! relay's counters and connection table, the node's hosts and process table (one walk),
//! the Lua engine's error counters, the cluster's counters and peer table. Rates (connections
//! per second, messages in/out per second) are differences of those counters, computed by
//! the page; so are its plots, kept in the browser for the last five minutes.
//!
//! **Token.** Loading the page needs no token (a browser cannot send a header with a
//! navigation, and the token must never be in a URL); the page asks for it, keeps it in
//! `sessionStorage`, and sends it as `Authorization: Bearer` with `fetch`, reading the
//! stream's body as it arrives (`EventSource` cannot set headers). Every action goes through
//! the `/admin` API with the same header.
//!
//! **Bounds.** At most [`MAX_SUBSCRIBERS`] streams at once (more get `503`); one snapshot
//! every [`INTERVAL`], computed at most once per [`CACHE_FOR`] whatever the number of
//! streams; at most [`MAX_ROWS`] connections and [`MAX_BUSIEST`] mailboxes per snapshot.
//! Streams end when the listener stops, so they never hold its drain.
//!
//! **CSP.** The page runs under `default-src 'none'` with only its own script, style, icon
//! and `fetch` allowed from `'self'`: no inline script or style, no other origin.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body::{Body, Frame};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Sleep;
use wsrelay_http::{response, Request, Response, ResponseBody};

use super::{admin, OpsState};

/// The most event streams open at once; one more is answered `503`.
pub const MAX_SUBSCRIBERS: usize = 8;

/// How often a stream sends a snapshot.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How long one snapshot serves every stream that ticks (so N streams cost one walk).
pub const CACHE_FOR: Duration = Duration::from_millis(250);

/// The most connections a snapshot lists (oldest first); it always carries the total.
pub const MAX_ROWS: usize = 200;

/// How many of the fullest mailboxes a snapshot lists.
pub const MAX_BUSIEST: usize = 10;

/// The Content-Security-Policy of the page and its assets.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");
const ICON: &str = include_str!("dashboard.svg");

/// An embedded file the page loads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asset {
    /// `dashboard.js`.
    Script,
    /// `dashboard.css`.
    Style,
    /// `dashboard.svg`, the page's icon (so the browser does not ask for a missing
    /// `/favicon.ico`).
    Icon,
}

impl Asset {
    pub(super) fn response(self) -> Response {
        let (body, kind) = match self {
            Asset::Script => (SCRIPT, "text/javascript; charset=utf-8"),
            Asset::Style => (STYLE, "text/css; charset=utf-8"),
            Asset::Icon => (ICON, "image/svg+xml"),
        };
        embedded(body, kind)
    }
}

/// `GET /dashboard`.
pub(super) fn page() -> Response {
    embedded(PAGE, "text/html; charset=utf-8")
}

fn embedded(body: &'static str, kind: &'static str) -> Response {
    let mut res = response::text(StatusCode::OK, body);
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    secure_headers(headers);
    res
}

fn secure_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /admin/events` (already authorized): a `text/event-stream` of `snapshot` events.
pub(super) fn events(state: &Arc<OpsState>, _req: &Request) -> Response {
    let Some(subscriber) = Subscriber::new(state) else {
        let mut res = response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_SUBSCRIBERS} event streams at once\n"),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return res;
    };
    let stream = EventStream {
        subscriber,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    let mut res = Response::new(ResponseBody::new(stream));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    secure_headers(headers);
    res
}

/// A slot among the [`MAX_SUBSCRIBERS`], freed when the stream is dropped (the client left,
/// or the listener stopped).
#[derive(Debug)]
struct Subscriber(Arc<OpsState>);

impl Subscriber {
    fn new(state: &Arc<OpsState>) -> Option<Subscriber> {
        let taken = state
            .subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            });
        taken.ok().map(|_| Subscriber(state.clone()))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The body of an event stream: a snapshot at once, then one per [`INTERVAL`]. Ends when
/// the listener stops (noticed at the next tick at the latest).
#[derive(Debug)]
struct EventStream {
    subscriber: Subscriber,
    sleep: Pin<Box<Sleep>>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let state = self.subscriber.0.clone();
        if state.closed.is_cancelled() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + INTERVAL);
        let mut event = Vec::with_capacity(4096);
        event.extend_from_slice(b"event: snapshot\ndata: ");
        event.extend_from_slice(&state.cache.get(&state));
        event.extend_from_slice(b"\n\n");
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}

/// The last snapshot and when it was taken.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCache {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl SnapshotCache {
    /// A snapshot at most [`CACHE_FOR`] old, as one line of JSON.
    fn get(&self, state: &OpsState) -> Bytes {
        if let Some((at, json)) = &*self.last.lock() {
            if at.elapsed() < CACHE_FOR {
                return json.clone();
            }
        }
        // Taken without the lock: two streams may both take one; the later one is kept.
        let json = Bytes::from(snapshot(state).to_string());
        *self.last.lock() = Some((Instant::now(), json.clone()));
        json
    }
}

/// One snapshot of everything the dashboard shows (see the module docs for the sources).
pub(crate) fn snapshot(state: &OpsState) -> serde_json::Value {
    let stats = state.relay.stats();
    let (accepted, refused) = stats.upgrades();
    let (frames_in, bytes_in) = stats.inbound();
    let (frames_out, bytes_out) = stats.outbound();
    let closes: serde_json::Map<String, serde_json::Value> = stats
        .closes()
        .map(|(reason, n)| (reason.to_owned(), n.into()))
        .collect();
    let processes = state.node.processes();
    let mut busiest: Vec<_> = processes
        .iter()
        .filter(|p| p.inbox_len > 0 || p.inbox_peak > 0)
        .collect();
    busiest.sort_by_key(|p| std::cmp::Reverse((p.inbox_len, p.inbox_peak)));
    let busiest: Vec<_> = busiest
        .iter()
        .take(MAX_BUSIEST)
        .map(|p| {
            json!({
                "pid": p.pid.to_string(),
                "host": p.pid.host(),
                "inbox_len": p.inbox_len,
                "inbox_peak": p.inbox_peak,
                "names": p.names,
                "connection": state.connection_hosts.contains(p.pid.host()),
            })
        })
        .collect();
    let hosts: Vec<_> = state
        .node
        .hosts()
        .into_iter()
        .map(|(id, n)| json!({ "id": id, "processes": n }))
        .collect();
    let (rows_total, rows) = admin::connections(state, &processes, MAX_ROWS);
    let lua = state.engine.stats();
    let cluster = state.cluster.as_ref().map(|c| {
        let s = c.stats();
        let peers: Vec<_> = c
            .peers()
            .into_iter()
            .map(|(name, up)| json!({ "name": name, "up": up }))
            .collect();
        json!({
            "node": state.node.name(),
            "connected": s.connected(),
            "peers": peers,
            "session_resets": s.session_resets(),
            "peer_downs": s.peer_downs(),
        })
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "time_ms": u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        "version": env!("CARGO_PKG_VERSION"),
        "draining": state.draining.load(Ordering::Acquire),
        "connections": stats.open(),
        "upgrades": { "accepted": accepted, "refused": refused },
        "frames": { "in": frames_in, "out": frames_out },
        "bytes": { "in": bytes_in, "out": bytes_out },
        "closes": closes,
        "processes": processes.len(),
        "hosts": hosts,
        "busiest": busiest,
        "lua_errors": {
            "process": lua.process_errors,
            "function": lua.function_errors,
            "timeout": lua.function_timeouts,
        },
        "cluster": cluster,
        "rows_total": rows_total,
        "rows": rows,
    })
}
