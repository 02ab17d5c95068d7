//! A server as its connections see it ([`Site`]), and the per-request service every
//! connection runs ([`handle`]): the body limit, the request's [`ConnectInfo`], routing, the
//! access log. The gateway (`gateway.rs`) accepts and hands each connection to `conn.rs`,
//! which serves its requests through [`handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use http::StatusCode;
use hyper::body::Incoming;
use parking_lot::RwLock;

use crate::server::{Routes, ServerConfig};
use crate::tls::TlsReloader;
use crate::{h2, response, Body, Request, Response, Shutdown, TrustedProxies};

/// Facts about the connection a request came on, a request extension.
///
/// The client's address is what the server determined for this request: the TCP peer, or,
/// when the peer is a trusted proxy (`ServerConfig::trusted_proxies`), the client its
/// PROXY header or forwarding headers name (see [`TrustedProxies`]).
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    server_id: Arc<str>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    remote_addr: SocketAddr,
    https: bool,
}

impl ConnectInfo {
    /// The facts of a connection another server accepted (an app that embeds wsrelay):
    /// `server_id` names the process host of the connections it relays, `local_addr` is the
    /// listener (the same-origin check treats a loopback listener specially) and
    /// `remote_addr` the client (per-IP limits count it). The client counts as the TCP peer,
    /// over plain HTTP; see [`with_https`](Self::with_https).
    pub fn new(
        server_id: impl Into<Arc<str>>,
        local_addr: SocketAddr,
        remote_addr: SocketAddr,
    ) -> ConnectInfo {
        ConnectInfo {
            server_id: server_id.into(),
            local_addr,
            peer_addr: remote_addr,
            remote_addr,
            https: false,
        }
    }

    /// Marks the connection as `https`/`wss` (the embedding server terminates TLS).
    #[must_use]
    pub fn with_https(mut self, https: bool) -> ConnectInfo {
        self.https = https;
        self
    }

    /// The id of the server that accepted the connection (e.g. `app:gateway`).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client's address: per-IP limits, logs and `ws.join` use it. Behind a trusted
    /// proxy it is the address the proxy reports (port 0 when a forwarding header gave
    /// none); otherwise the TCP peer.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The TCP peer (a load balancer, when there is one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Whether the client used `https`/`wss`: this connection is TLS, or a trusted proxy
    /// said so (`X-Forwarded-Proto`, `Forwarded: proto=`).
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// What is known about a connection before its first request.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The TCP peer.
    pub(crate) addr: SocketAddr,
    /// The client's address from a PROXY header, when there was one.
    pub(crate) proxied: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
}

/// What a connection task needs to know about its server.
pub(crate) struct Site {
    pub(crate) id: Arc<str>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) config: ServerConfig,
    /// The routing table, replaceable while the server runs (hot reload). A request reads it
    /// once and keeps its own `Arc`, so a replacement never waits for requests in flight.
    pub(crate) routes: RwLock<Arc<Routes>>,
    pub(crate) tls: Option<TlsReloader>,
    pub(crate) proxies: TrustedProxies,
}

/// The facts of one request's connection, the client's address resolved.
fn connect_info(site: &Site, peer: &Peer, headers: &http::HeaderMap) -> ConnectInfo {
    let direct = peer.proxied.unwrap_or(peer.addr);
    let origin = site.proxies.origin(direct, headers);
    ConnectInfo {
        server_id: site.id.clone(),
        local_addr: site.local_addr,
        peer_addr: peer.addr,
        remote_addr: origin.addr,
        https: peer.tls || origin.https.unwrap_or(false),
    }
}

/// The per-request service: limits, extensions, routing, access log.
pub(crate) async fn handle(
    site: Arc<Site>,
    peer: Arc<Peer>,
    shutdown: Shutdown,
    req: http::Request<Incoming>,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let version = req.version();
    let limit = site.config.max_body_size;
    let mut req: Request = req.map(|body| Body::incoming(body, limit));
    h2::host_from_authority(&mut req);
    let info = connect_info(&site, &peer, req.headers());
    let remote = info.remote_addr;
    req.extensions_mut().insert(info);
    req.extensions_mut().insert(shutdown);
    let res = AssertUnwindSafe(route(&site, req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(server = %site.id, %method, %uri, "handler panicked");
            response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
        });
    tracing::debug!(
        server = %site.id,
        %remote,
        %method,
        %uri,
        ?version,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

async fn route(site: &Site, req: Request) -> Response {
    if declared_length(&req).is_some_and(|len| len > site.config.max_body_size) {
        return response::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                site.config.max_body_size
            ),
        );
    }
    let routes = site.routes.read().clone();
    match routes.find(req.uri().path()) {
        Some(router) => router.handle(req).await,
        None => response::text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
