//! The gateway: binds every server, serves connections, shuts down.
//!
//! The shape follows axum's `serve`: one accept loop per server spawns one
//! task per connection; both are tracked by the [`Shutdown`] tracker. On
//! shutdown each accept loop stops and drops its listener (new connections
//! are refused), each connection is told to finish its in-flight request and
//! close (hyper's `graceful_shutdown`), and [`RunningGateway::shutdown`]
//! waits for the tracker to empty, up to the drain timeout; connections still
//! open then are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::conn;
use crate::server::Server;
use crate::site::Site;
use crate::tls::TlsReloader;
use crate::{Error, Shutdown};

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
    accept_on: Vec<Handle>,
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
            accept_on: Vec::new(),
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

    /// Accepts on each of `runtimes` (one accept loop per runtime on every listener) instead
    /// of the caller's runtime. With one current-thread runtime per core, each connection
    /// then lives on the thread that accepted it, with everything it spawns: the kernel wakes
    /// the accept loops of idle threads first, which spreads connections by load.
    pub fn accept_on(mut self, runtimes: Vec<Handle>) -> Self {
        self.accept_on = runtimes;
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
            let (id, config, routes, tls) = server.into_parts();
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
                    proxies: config.trusted_proxies.clone(),
                    config,
                    routes: RwLock::new(Arc::new(routes)),
                    tls,
                },
            ));
        }
        let force = CancellationToken::new();
        let mut addrs = Vec::with_capacity(bound.len());
        let mut sites = Vec::with_capacity(bound.len());
        let mut tls = Vec::new();
        for (listener, site) in bound {
            let scheme = if site.tls.is_some() { "https" } else { "http" };
            tracing::info!(server = %site.id, addr = %site.local_addr, scheme, "listening");
            addrs.push((site.id.to_string(), site.local_addr));
            if let Some(reloader) = &site.tls {
                let watch = watch_tls(
                    reloader.clone(),
                    site.config.tls_watch_interval,
                    self.shutdown.clone(),
                );
                self.shutdown.tracker().spawn(watch);
                tls.push(reloader.clone());
            }
            let site = Arc::new(site);
            sites.push(site.clone());
            if self.accept_on.is_empty() {
                let accept = accept_loop(listener, site, self.shutdown.clone(), force.clone());
                self.shutdown.tracker().spawn(accept);
                continue;
            }
            let listener = listener.into_std().map_err(|source| Error::Bind {
                server: site.id.to_string(),
                addr: site.local_addr,
                source,
            })?;
            for runtime in &self.accept_on {
                let copy = listener.try_clone().map_err(|source| Error::Bind {
                    server: site.id.to_string(),
                    addr: site.local_addr,
                    source,
                })?;
                let (site, shutdown, force) = (site.clone(), self.shutdown.clone(), force.clone());
                let accept = async move {
                    // Registered with the reactor of the runtime that runs this loop.
                    match TcpListener::from_std(copy) {
                        Ok(listener) => accept_loop(listener, site, shutdown, force).await,
                        Err(err) => {
                            tracing::error!(server = %site.id, error = %err, "cannot accept here")
                        }
                    }
                };
                self.shutdown.tracker().spawn_on(accept, runtime);
            }
        }
        Ok(RunningGateway {
            addrs,
            sites,
            tls,
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
pub struct RunningGateway {
    addrs: Vec<(String, SocketAddr)>,
    sites: Vec<Arc<Site>>,
    tls: Vec<TlsReloader>,
    shutdown: Shutdown,
    force: CancellationToken,
    drain_timeout: Duration,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sites are the servers of `addrs`, with routing tables made of trait objects.
        f.debug_struct("RunningGateway")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
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

    /// Whether server `id` serves TLS.
    pub fn is_tls(&self, id: &str) -> bool {
        self.tls.iter().any(|tls| tls.server() == id)
    }

    /// Reloads the certificates of every TLS server now (what SIGHUP does); new handshakes
    /// use them, established connections keep theirs. A server whose files fail to load
    /// keeps its certificates and is named in the result.
    ///
    /// # Errors
    ///
    /// The first server whose files failed, with why ([`Error::Tls`]); the others are
    /// reloaded all the same.
    pub fn reload_tls(&self) -> Result<(), Error> {
        let mut first = None;
        for tls in &self.tls {
            if let Err(source) = tls.reload() {
                tracing::error!(server = tls.server(), error = %source, "TLS reload failed; keeping the certificates in use");
                first.get_or_insert(Error::Tls {
                    server: tls.server().to_owned(),
                    source: Box::new(source),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Replaces the routers, endpoints and static mounts of the running server with
    /// `server`'s id by `server`'s (hot reload): requests that start afterwards are routed
    /// by the new table, requests in flight finish on the old one. Everything else of
    /// `server` (address, TLS, limits) is ignored: the listener keeps what it was bound with.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownServer`] when no running server has that id; nothing changes.
    pub fn replace_routes(&self, server: Server) -> Result<(), Error> {
        let Some(site) = self.sites.iter().find(|site| *site.id == *server.id()) else {
            return Err(Error::UnknownServer {
                server: server.id().to_owned(),
            });
        };
        let (_, _, routes, _) = server.into_parts();
        *site.routes.write() = Arc::new(routes);
        Ok(())
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
                let conn = conn::serve(
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

/// Reloads `tls` whenever its files change, until shutdown.
async fn watch_tls(tls: TlsReloader, every: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.token().cancelled() => return,
            _ = ticks.tick() => {}
        }
        // File reads are small and rare; a blocking pool would cost more than it saves.
        tls.reload_if_changed();
    }
}
