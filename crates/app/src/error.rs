//! [`AppError`]: why an app could not start, naming the entry at fault.

use std::path::PathBuf;

use wsrelay_config::{ConfigErrors, EntryId};

/// Why an app could not be assembled or started.
///
/// Every variant that comes from an entry names it (and its file). Use
/// [`AppError::is_config`] to tell configuration problems (exit status 2)
/// from runtime failures such as a port already in use (exit status 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The app directory did not load; one line per problem.
    #[error("{0}")]
    Config(#[from] Box<ConfigErrors>),
    /// A router's middleware could not be built (unknown name, bad options).
    #[error("{file}: entry {entry}: field {field}: {source}")]
    Middleware {
        /// The `http.router` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// `middleware` or `post_middleware`.
        field: &'static str,
        /// What the HTTP crate said.
        source: Box<wsrelay_http::Error>,
    },
    /// A router, endpoint or static mount was rejected by the gateway.
    #[error("{file}: entry {entry}: {source}")]
    Gateway {
        /// The entry (router, endpoint, static or service).
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// What the HTTP crate said.
        source: Box<wsrelay_http::Error>,
    },
    /// A Lua entry could not be prepared.
    #[error("{file}: entry {entry}: field source: {source}")]
    Lua {
        /// The `function.lua`/`process.lua` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// What the Lua engine said.
        source: Box<wsrelay_lua::LuaError>,
    },
    /// The Lua engine did not start.
    #[error("cannot start the Lua engine: {0}")]
    Engine(#[source] Box<wsrelay_lua::LuaError>),
    /// The embedded demo app could not be written to a temporary directory.
    #[error("cannot unpack the built-in demo app: {0}")]
    Demo(#[source] std::io::Error),
    /// A server could not bind its address (a runtime failure, not a config error).
    #[error("cannot start the HTTP servers: {0}")]
    Bind(#[source] Box<wsrelay_http::Error>),
    /// The `cluster` entry is set but the node could not join (NATS unreachable, bad
    /// credentials, names bucket unavailable).
    #[error("cannot join the cluster: {0}")]
    Cluster(#[source] Box<wsrelay_cluster::ClusterError>),
    /// The admin endpoint is enabled but its token variable is unset or empty.
    #[error("{file}: entry {entry}: field admin.token_env: environment variable {var:?} is unset or empty (the admin endpoint needs a token)")]
    OpsToken {
        /// The `wsrelay.ops` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// The variable named by `admin.token_env`.
        var: String,
    },
}

impl AppError {
    /// Whether the error is a configuration problem (SPEC §12: exit status 2)
    /// rather than a runtime failure (exit status 1).
    #[must_use]
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            AppError::Bind(_) | AppError::Engine(_) | AppError::Demo(_) | AppError::Cluster(_)
        )
    }
}

impl From<ConfigErrors> for AppError {
    fn from(errors: ConfigErrors) -> AppError {
        AppError::Config(Box::new(errors))
    }
}
