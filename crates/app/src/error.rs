//! [`AppError`]: why an app could not start, naming the entry at fault.

use std::path::{Path, PathBuf};

use wsrelay_config::{ConfigErrors, EntryId, LuaEntry};

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
    /// A `store.memory` entry could not be registered (the engine's bound on stores).
    #[error("{file}: entry {entry}: {source}")]
    Store {
        /// The `store.memory` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// What the Lua engine said.
        source: wsrelay_lua::StoreError,
    },
    /// An `env.storage.*` or `env.variable` entry could not be registered (a router
    /// cycle, or the engine's bound).
    #[error("{file}: entry {entry}: {source}")]
    Env {
        /// The entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// What the Lua engine said.
        source: wsrelay_lua::EnvError,
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
    /// A field of the `cluster` entry names something that cannot be used (its
    /// `secret_file` cannot be read or holds too short a secret): a configuration error.
    #[error("{file}: entry {entry}: field {field}: {source}")]
    ClusterEntry {
        /// The `cluster` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// The field (`secret_file`).
        field: &'static str,
        /// What the cluster crate said.
        source: Box<wsrelay_cluster::ClusterError>,
    },
    /// A cluster environment variable (`WSRELAY_NATS_URLS`, `WSRELAY_NODE`,
    /// `WSRELAY_CLUSTER_SECRET_FILE`, `WSRELAY_CLUSTER_MAX_PEERS`) has a value that cannot be
    /// used: a configuration error.
    #[error("environment variable {var}={value:?}: {problem}")]
    ClusterEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// The admin endpoint is enabled but has no usable token.
    #[error("{file}: entry {entry}: field {field}: {problem}")]
    OpsToken {
        /// The `wsrelay.ops` entry.
        entry: EntryId,
        /// Its YAML file.
        file: PathBuf,
        /// Where the token came from: `admin.token_env` or `admin.token`.
        field: &'static str,
        /// What is wrong with it.
        problem: Box<TokenProblem>,
    },
}

/// Why the admin token cannot be used (see [`AppError::OpsToken`]). The token itself is
/// never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenProblem {
    /// The variable named by `admin.token_env` is unset or empty, and no `admin.token` is set.
    #[error("environment variable {var:?} is unset or empty (the admin endpoint needs a token)")]
    Unset {
        /// The variable named by `admin.token_env`.
        var: String,
    },
    /// The token is shorter than [`AdminConfig::MIN_TOKEN_BYTES`](wsrelay_config::AdminConfig::MIN_TOKEN_BYTES).
    #[error("the admin token{} is {len} bytes long; at least {min} are required (use a long random value)", fmt_var(.var.as_deref()))]
    TooShort {
        /// The variable it came from, if it came from one.
        var: Option<String>,
        /// Its length in bytes, surrounding white space trimmed.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

fn fmt_var(var: Option<&str>) -> String {
    var.map(|var| format!(" in environment variable {var:?}"))
        .unwrap_or_default()
}

impl AppError {
    /// Whether the error is a configuration problem (docs/spec.md §12: exit status 2)
    /// rather than a runtime failure (exit status 1).
    #[must_use]
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            AppError::Bind(_) | AppError::Engine(_) | AppError::Demo(_) | AppError::Cluster(_)
        )
    }
}

impl AppError {
    /// A mapper for errors of the HTTP crate about the entry `entry` of `file`.
    pub(crate) fn gateway<'a>(
        entry: &'a EntryId,
        file: &'a Path,
    ) -> impl Fn(wsrelay_http::Error) -> AppError + Copy + 'a {
        move |source| AppError::Gateway {
            entry: entry.clone(),
            file: file.to_path_buf(),
            source: Box::new(source),
        }
    }

    /// A mapper for errors of the Lua engine about the entry `entry`.
    pub(crate) fn lua(entry: &LuaEntry) -> impl FnOnce(wsrelay_lua::LuaError) -> AppError + '_ {
        move |source| AppError::Lua {
            entry: entry.id.clone(),
            file: entry.file.clone(),
            source: Box::new(source),
        }
    }
}

impl From<ConfigErrors> for AppError {
    fn from(errors: ConfigErrors) -> AppError {
        AppError::Config(Box::new(errors))
    }
}
