//! The gateway's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors from building or starting a gateway.
///
/// Every variant names the input at fault: the server id, the address, the
/// route, the directory or the middleware.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A server could not bind its address.
    #[error("server {server}: cannot listen on {addr}")]
    Bind {
        /// The server's id, e.g. `app:gateway`.
        server: String,
        /// The address it tried to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A running gateway has no server with this id (a routing table for it cannot be
    /// replaced).
    #[error("server {server} is not running")]
    UnknownServer {
        /// The server id.
        server: String,
    },
    /// Two servers have the same id.
    #[error("server {server} is defined twice")]
    DuplicateServer {
        /// The repeated id.
        server: String,
    },
    /// Two routers of one server have the same prefix.
    #[error("server {server}: two routers have the prefix {prefix:?}")]
    DuplicatePrefix {
        /// The server's id.
        server: String,
        /// The repeated prefix.
        prefix: String,
    },
    /// A router prefix, endpoint path or static URL path is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two endpoints of one router have the same method and path shape.
    #[error("route {method} {path} is defined twice")]
    DuplicateRoute {
        /// The method.
        method: http::Method,
        /// The second path.
        path: String,
    },
    /// A static directory does not exist or is not a directory.
    #[error("static directory {}: {reason}", dir.display())]
    StaticDir {
        /// The directory as given.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A server's TLS files cannot be used.
    #[error("server {server}: {source}")]
    Tls {
        /// The server's id.
        server: String,
        /// What is wrong, naming the field and the file.
        #[source]
        source: Box<crate::TlsError>,
    },
    /// Connections were still open when the drain timeout ran out.
    #[error("shutdown: connections still open after the drain timeout of {timeout:?}")]
    DrainTimeout {
        /// The drain timeout.
        timeout: std::time::Duration,
    },
    /// No middleware of that name is registered.
    #[error("unknown middleware {name:?}")]
    UnknownMiddleware {
        /// The name as given.
        name: String,
    },
    /// A middleware factory rejected the router's options.
    #[error("middleware {name}: {message}")]
    MiddlewareOptions {
        /// The middleware's name.
        name: String,
        /// The factory's message, naming the option.
        message: String,
    },
}
