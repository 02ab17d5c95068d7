//! Servers: an id, an address, limits, and the routers under it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::router::{Router, SharedRouter};
use crate::static_files::{StaticDir, StaticFiles};
use crate::tls::{TlsFiles, TlsReloader};
use crate::{path, Error, TrustedProxies};

/// The address and limits of one server.
///
/// Build it with [`ServerConfig::new`] and change the fields you need; every
/// limit is finite by default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port (see
    /// [`RunningGateway::local_addr`](crate::RunningGateway::local_addr)).
    pub addr: SocketAddr,
    /// How long a client may take to send a request's headers (default 30 s).
    pub header_read_timeout: Duration,
    /// The most headers a request may have (default 100); more gets `431`.
    pub max_headers: usize,
    /// The read buffer size, which bounds a request head (default 64 KiB,
    /// at least 8 KiB).
    pub max_header_bytes: usize,
    /// The largest request body handlers may read (default 1 MiB). A request
    /// whose `Content-Length` is larger gets `413` before any middleware
    /// runs; a chunked body that grows larger fails to read with
    /// [`BodyError::TooLarge`](crate::BodyError::TooLarge).
    pub max_body_size: u64,
    /// Serve HTTP/2 by prior knowledge (h2c) on a cleartext listener, beside HTTP/1.1
    /// (default off: looking at the first bytes costs plain WebSockets their bare socket).
    /// A TLS listener always offers HTTP/2 by ALPN.
    pub h2c: bool,
    /// The most concurrent streams of one HTTP/2 connection (default 256): requests and
    /// WebSockets (RFC 8441) alike. More are refused with `REFUSED_STREAM`.
    pub max_concurrent_streams: u32,
    /// Peers whose `Forwarded`/`X-Forwarded-*` headers (and PROXY headers) are believed
    /// (default none). See [`TrustedProxies`].
    pub trusted_proxies: TrustedProxies,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a trusted
    /// proxy (default off); others are closed.
    pub proxy_protocol: bool,
    /// How often the TLS files are checked for changes (default 10 s).
    pub tls_watch_interval: Duration,
}

impl ServerConfig {
    /// Defaults for a server on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            header_read_timeout: Duration::from_secs(30),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_body_size: 1024 * 1024,
            h2c: false,
            max_concurrent_streams: 256,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            tls_watch_interval: Duration::from_secs(10),
        }
    }
}

/// One HTTP server: an id (the registry id, e.g. `app:gateway`), its
/// [`ServerConfig`], its routers and its static mounts.
///
/// A request goes to the router with the longest prefix that matches its
/// path; with none, it gets `404`. A static mount added with
/// [`static_files`](Self::static_files) acts as a router of its own, without
/// middleware; if a router has the same prefix, the mount is served by that
/// router (behind its endpoints, through its pre-match chain).
#[derive(Debug)]
pub struct Server {
    id: Arc<str>,
    config: ServerConfig,
    routers: Vec<Router>,
    statics: Vec<(String, StaticFiles)>,
    tls: Option<TlsReloader>,
}

impl Server {
    /// A server with no routers.
    pub fn new(id: impl Into<String>, config: ServerConfig) -> Self {
        Self {
            id: id.into().into(),
            config,
            routers: Vec::new(),
            statics: Vec::new(),
            tls: None,
        }
    }

    /// Serves TLS with `files`, loaded now (and reloaded when they change, see
    /// [`ServerConfig::tls_watch_interval`]).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when a file is unreadable or malformed, or the key does not fit the
    /// certificate.
    pub fn tls(&mut self, files: TlsFiles) -> Result<&mut Self, Error> {
        let reloader = TlsReloader::new(&self.id, files).map_err(|source| Error::Tls {
            server: self.id.to_string(),
            source: Box::new(source),
        })?;
        self.tls = Some(reloader);
        Ok(self)
    }

    /// The server's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's config.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Adds a router.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicatePrefix`] when another router has the same prefix.
    pub fn add_router(&mut self, router: Router) -> Result<&mut Self, Error> {
        if self.routers.iter().any(|r| r.prefix() == router.prefix()) {
            return Err(Error::DuplicatePrefix {
                server: self.id.to_string(),
                prefix: router.prefix().to_owned(),
            });
        }
        self.routers.push(router);
        Ok(self)
    }

    /// Serves `dir` under its URL path, as a router of its own at that prefix would.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicatePrefix`] when another static mount of this server has the same
    /// path.
    pub fn static_files(&mut self, dir: StaticDir) -> Result<&mut Self, Error> {
        if self.statics.iter().any(|(p, _)| *p == dir.path) {
            return Err(Error::DuplicatePrefix {
                server: self.id.to_string(),
                prefix: dir.path,
            });
        }
        self.statics.push((dir.path, dir.files));
        Ok(self)
    }

    /// Splits the server into its id, config, routing table and TLS.
    pub(crate) fn into_parts(self) -> (Arc<str>, ServerConfig, Routes, Option<TlsReloader>) {
        let mut routers: Vec<SharedRouter> =
            self.routers.into_iter().map(Router::into_shared).collect();
        for (prefix, files) in self.statics {
            match routers.iter_mut().find(|r| r.prefix() == prefix) {
                Some(router) => router.mount_root(files),
                None => routers.push(root_only(prefix, files)),
            }
        }
        // Longest prefix first, so the first match is the longest.
        routers.sort_by_key(|r| std::cmp::Reverse(r.prefix().len()));
        (self.id, self.config, Routes { routers }, self.tls)
    }
}

fn root_only(prefix: String, files: StaticFiles) -> SharedRouter {
    let mut router = Router::with_normalized_prefix(prefix).into_shared();
    router.mount_root(files);
    router
}

/// The routers of one server, longest prefix first.
#[derive(Clone)]
pub(crate) struct Routes {
    routers: Vec<SharedRouter>,
}

impl Routes {
    /// The router with the longest prefix that matches `path`.
    pub(crate) fn find(&self, path: &str) -> Option<&SharedRouter> {
        self.routers
            .iter()
            .find(|r| path::strip_prefix(r.prefix(), path).is_some())
    }
}
