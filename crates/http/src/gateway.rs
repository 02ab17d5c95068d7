//! The gateway: binds every server, serves connections, shuts down.
//!
//! The shape follows axum's `serve`: one accept loop per server spawns one
//! task per connection; both are tracked by the [`Shutdown`] tracker. On
//! shutdown each accept loop stops and drops its listener (new connections
//! are refused), each connection is told to finish its in-flight request and
//! close (hyper's `graceful_shutdown`), and [`RunningGateway::shutdown`]
//! waits for the tracker to empty, up to the drain timeout; connections still
//! open then are dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::server::{Routes, Server, ServerConfig};
use crate::{response, Body, Error, Request, Response, Shutdown};

/// Facts about the connection a request came on, a request extension.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    server_id: Arc<str>,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
}

impl ConnectInfo {
    /// The id of the server that accepted the connection (e.g. `app:gateway`).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }
}

/// A set of servers to start together.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use http::{Method, StatusCode};
/// use wsrelay_http::{handler_fn, response, Gateway, Router, Server, ServerConfig};
///
/// # async fn run() -> Result<(), wsrelay_http::Error> {
/// let mut router = Router::new("/")?;
/// router.route(
///     Method::GET,
///     "/hello",
///     Arc::new(handler_fn(|_| async { response::text(StatusCode::OK, "hi") })),
/// )?;
/// let mut server = Server::new("app:gateway", ServerConfig::new(([127, 0, 0, 1], 8080).into()));
/// server.add_router(router)?;
///
/// let mut gateway = Gateway::new();
/// gateway.add_server(server)?;
/// let running = gateway.bind().await?;
/// // ... wait for a signal ...
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Gateway {
    servers: Vec<Server>,
    shutdown: Shutdown,
    drain_timeout: Duration,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    /// An empty gateway with its own [`Shutdown`] and a 10 s drain timeout.
    pub fn new() -> Self {
        Self {
            servers: Vec::new(),
            shutdown: Shutdown::new(),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// Uses `shutdown` instead of a fresh one, so that cancelling its token
    /// (from a signal handler, say) stops the gateway, and tasks on its
    /// tracker are waited for by [`RunningGateway::shutdown`].
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Sets how long [`RunningGateway::shutdown`] waits for connections.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The shutdown signal the gateway will use.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Adds a server.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateServer`] when a server with the same id was added.
    pub fn add_server(&mut self, server: Server) -> Result<&mut Self, Error> {
        if self.servers.iter().any(|s| s.id() == server.id()) {
            return Err(Error::DuplicateServer {
                server: server.id().to_owned(),
            });
        }
        self.servers.push(server);
        Ok(self)
    }

    /// Binds every server, then starts serving.
    ///
    /// Nothing is served unless every address could be bound.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] naming the first server whose address failed.
    pub async fn bind(self) -> Result<RunningGateway, Error> {
        let mut bound = Vec::with_capacity(self.servers.len());
        for server in self.servers {
            let (id, config, routes) = server.into_parts();
            let bind_error = |source| Error::Bind {
                server: id.to_string(),
                addr: config.addr,
                source,
            };
            let listener = TcpListener::bind(config.addr).await.map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            bound.push((
                listener,
                Site {
                    id,
                    local_addr,
                    config,
                    routes,
                },
            ));
        }
        let force = CancellationToken::new();
        let mut addrs = Vec::with_capacity(bound.len());
        for (listener, site) in bound {
            tracing::info!(server = %site.id, addr = %site.local_addr, "listening");
            addrs.push((site.id.to_string(), site.local_addr));
            let accept = accept_loop(
                listener,
                Arc::new(site),
                self.shutdown.clone(),
                force.clone(),
            );
            self.shutdown.tracker().spawn(accept);
        }
        Ok(RunningGateway {
            addrs,
            shutdown: self.shutdown,
            force,
            drain_timeout: self.drain_timeout,
        })
    }
}

/// A started gateway.
///
/// Dropping it does not stop the servers; call [`shutdown`](Self::shutdown)
/// (or cancel the [`Shutdown`] token, then call it to wait for the drain).
#[derive(Debug)]
pub struct RunningGateway {
    addrs: Vec<(String, SocketAddr)>,
    shutdown: Shutdown,
    force: CancellationToken,
    drain_timeout: Duration,
}

impl RunningGateway {
    /// The address server `id` listens on (the real port when it asked for 0).
    pub fn local_addr(&self, id: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(server, _)| server == id)
            .map(|(_, addr)| *addr)
    }

    /// Every server's id and address, in the order they were added.
    pub fn addrs(&self) -> impl Iterator<Item = (&str, SocketAddr)> {
        self.addrs.iter().map(|(id, addr)| (id.as_str(), *addr))
    }

    /// The shutdown signal (the one every request carries as an extension).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Shuts down gracefully: stops accepting, lets in-flight requests
    /// finish, and waits for every tracked task (connections, and whatever
    /// else was spawned on the [`Shutdown`] tracker) for at most the drain
    /// timeout. Connections still open then are closed.
    ///
    /// # Errors
    ///
    /// [`Error::DrainTimeout`] when tasks were still running at the timeout.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.trigger();
        self.shutdown.tracker().close();
        let drained =
            tokio::time::timeout(self.drain_timeout, self.shutdown.tracker().wait()).await;
        if drained.is_ok() {
            tracing::info!("gateway stopped");
            return Ok(());
        }
        self.force.cancel();
        tracing::warn!(
            timeout = ?self.drain_timeout,
            remaining = self.shutdown.tracker().len(),
            "drain timeout; closing remaining connections"
        );
        Err(Error::DrainTimeout {
            timeout: self.drain_timeout,
        })
    }
}

// ===== serving =====

/// What a connection task needs to know about its server.
struct Site {
    id: Arc<str>,
    local_addr: SocketAddr,
    config: ServerConfig,
    routes: Routes,
}

async fn accept_loop(
    listener: TcpListener,
    site: Arc<Site>,
    shutdown: Shutdown,
    force: CancellationToken,
) {
    loop {
        // Cancel safety: `accept` is cancel safe; a connection not yet
        // returned stays in the backlog and is refused when the listener drops.
        let accepted = tokio::select! {
            biased;
            () = shutdown.token().cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote_addr)) => {
                let conn = serve_connection(
                    stream,
                    remote_addr,
                    site.clone(),
                    shutdown.clone(),
                    force.clone(),
                );
                shutdown.tracker().spawn(conn);
            }
            Err(err) => accept_backoff(&site, err, &shutdown).await,
        }
    }
    tracing::debug!(server = %site.id, "stopped accepting");
}

/// Accept errors are usually per connection (reset before accept) or
/// resource exhaustion (`EMFILE`); waiting a little lets the latter pass
/// instead of spinning, as axum does.
async fn accept_backoff(site: &Site, err: std::io::Error, shutdown: &Shutdown) {
    tracing::warn!(server = %site.id, error = %err, "accept failed");
    tokio::select! {
        () = shutdown.token().cancelled() => {}
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote_addr: SocketAddr,
    site: Arc<Site>,
    shutdown: Shutdown,
    force: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let info = ConnectInfo {
        server_id: site.id.clone(),
        local_addr: site.local_addr,
        remote_addr,
    };
    let builder = connection_builder(&site.config);
    let service = {
        let (site, shutdown) = (site.clone(), shutdown.clone());
        service_fn(move |req| handle(site.clone(), info.clone(), shutdown.clone(), req))
    };
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return log_connection_end(&site, remote_addr, result),
        () = shutdown.token().cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        result = conn.as_mut() => log_connection_end(&site, remote_addr, result),
        () = force.cancelled() => {}
    }
}

fn connection_builder(config: &ServerConfig) -> http1::Builder {
    /// hyper panics below this buffer size.
    const MIN_BUF: usize = 8 * 1024;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF));
    builder
}

fn log_connection_end(site: &Site, remote_addr: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(server = %site.id, remote = %remote_addr, error = %err, "connection error");
    }
}

/// The per-request service: limits, extensions, routing, access log.
async fn handle(
    site: Arc<Site>,
    info: ConnectInfo,
    shutdown: Shutdown,
    req: http::Request<Incoming>,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let limit = site.config.max_body_size;
    let mut req: Request = req.map(|body| Body::incoming(body, limit));
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
        %method,
        %uri,
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
    match site.routes.find(req.uri().path()) {
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
