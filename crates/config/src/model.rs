//! The validated, typed app model.
//!
//! Every item carries its [`EntryId`] and the YAML file it came from, so the
//! runtime can name them in its own errors. References are resolved to
//! absolute ids and checked: they point to an existing entry of the right kind.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::id::EntryId;

/// Every kind this loader accepts, as written in `kind:`.
pub const KNOWN_KINDS: &[&str] = &[
    kind::HTTP_SERVICE,
    kind::HTTP_ROUTER,
    kind::HTTP_ENDPOINT,
    kind::HTTP_STATIC,
    kind::FUNCTION_LUA,
    kind::PROCESS_LUA,
    kind::PROCESS_HOST,
    kind::PROCESS_SERVICE,
    kind::CLUSTER,
    kind::OPS,
    kind::PG_SCOPE,
    kind::STORE_MEMORY,
    kind::ENV_STORAGE_OS,
    kind::ENV_STORAGE_MEMORY,
    kind::ENV_STORAGE_FILE,
    kind::ENV_STORAGE_STATIC,
    kind::ENV_STORAGE_ROUTER,
    kind::ENV_VARIABLE,
];

/// The Lua modules the runtime provides (docs/spec.md §1), valid in `modules`.
pub const KNOWN_LUA_MODULES: &[&str] = &[
    "http",
    "json",
    "process",
    "channel",
    "time",
    "pg",
    "errors",
    "base64",
    "hash",
    "uuid",
    "env",
    "crypto",
    "logger",
    "store",
    "metrics",
    "http_client",
    "events",
];

/// The `kind:` strings.
pub mod kind {
    /// An HTTP server.
    pub const HTTP_SERVICE: &str = "http.service";
    /// A router with a prefix and middleware chains.
    pub const HTTP_ROUTER: &str = "http.router";
    /// A method + path mapped to a handler function.
    pub const HTTP_ENDPOINT: &str = "http.endpoint";
    /// A directory of static files.
    pub const HTTP_STATIC: &str = "http.static";
    /// A Lua function (HTTP handler).
    pub const FUNCTION_LUA: &str = "function.lua";
    /// A Lua process.
    pub const PROCESS_LUA: &str = "process.lua";
    /// A process host.
    pub const PROCESS_HOST: &str = "process.host";
    /// A supervised, long-running process.
    pub const PROCESS_SERVICE: &str = "process.service";
    /// Cluster settings (reserved; at most one per app).
    pub const CLUSTER: &str = "cluster";
    /// The operations listener: metrics, health, admin (at most one per app).
    pub const OPS: &str = "wsrelay.ops";
    /// A scope of process groups (the Lua `pg` module).
    pub const PG_SCOPE: &str = "pg.scope";
    /// A key-value store in memory (the Lua `store` module).
    pub const STORE_MEMORY: &str = "store.memory";
    /// Variables of the process environment (the Lua `env` module).
    pub const ENV_STORAGE_OS: &str = "env.storage.os";
    /// Variables in memory, writable by `env.set`.
    pub const ENV_STORAGE_MEMORY: &str = "env.storage.memory";
    /// Variables of a `.env` file, read at load time.
    pub const ENV_STORAGE_FILE: &str = "env.storage.file";
    /// Variables written in the entry.
    pub const ENV_STORAGE_STATIC: &str = "env.storage.static";
    /// Reads through other storages in order.
    pub const ENV_STORAGE_ROUTER: &str = "env.storage.router";
    /// A variable the Lua `env` module may read, and where it lives.
    pub const ENV_VARIABLE: &str = "env.variable";
}

/// A loaded, validated app.
///
/// Collections keep the order in which entries appear (files sorted by path,
/// entries in file order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppConfig {
    /// `http.service` entries.
    pub services: Vec<HttpService>,
    /// `http.router` entries.
    pub routers: Vec<HttpRouter>,
    /// `http.endpoint` entries.
    pub endpoints: Vec<HttpEndpoint>,
    /// `http.static` entries.
    pub statics: Vec<HttpStatic>,
    /// `function.lua` entries.
    pub functions: Vec<LuaEntry>,
    /// `process.lua` entries.
    pub processes: Vec<LuaEntry>,
    /// `process.host` entries.
    pub hosts: Vec<ProcessHost>,
    /// `process.service` entries.
    pub process_services: Vec<ProcessService>,
    /// The `cluster` entry, if any.
    pub cluster: Option<ClusterConfig>,
    /// The `wsrelay.ops` entry, if any.
    pub ops: Option<OpsConfig>,
    /// `pg.scope` entries.
    pub pg_scopes: Vec<PgScope>,
    /// `store.memory` entries.
    pub memory_stores: Vec<MemoryStore>,
    /// `env.storage.*` entries.
    pub env_storages: Vec<EnvStorage>,
    /// `env.variable` entries.
    pub env_variables: Vec<EnvVariable>,
}

impl AppConfig {
    /// The `function.lua` entry with this id.
    #[must_use]
    pub fn function(&self, id: &EntryId) -> Option<&LuaEntry> {
        self.functions.iter().find(|entry| &entry.id == id)
    }

    /// The `process.lua` entry with this id.
    #[must_use]
    pub fn process(&self, id: &EntryId) -> Option<&LuaEntry> {
        self.processes.iter().find(|entry| &entry.id == id)
    }

    /// The `http.service` entry with this id.
    #[must_use]
    pub fn service(&self, id: &EntryId) -> Option<&HttpService> {
        self.services.iter().find(|entry| &entry.id == id)
    }

    /// The `http.router` entry with this id.
    #[must_use]
    pub fn router(&self, id: &EntryId) -> Option<&HttpRouter> {
        self.routers.iter().find(|entry| &entry.id == id)
    }

    /// The `process.host` entry with this id.
    #[must_use]
    pub fn host(&self, id: &EntryId) -> Option<&ProcessHost> {
        self.hosts.iter().find(|entry| &entry.id == id)
    }

    /// The routers attached to a server.
    pub fn routers_of<'a>(&'a self, server: &'a EntryId) -> impl Iterator<Item = &'a HttpRouter> {
        self.routers
            .iter()
            .filter(move |router| &router.server == server)
    }

    /// The static mounts attached to a server or a router.
    pub fn statics_at<'a>(
        &'a self,
        mount: &'a StaticMount,
    ) -> impl Iterator<Item = &'a HttpStatic> {
        self.statics
            .iter()
            .filter(move |entry| &entry.mount == mount)
    }

    /// The endpoints attached to a router.
    pub fn endpoints_of<'a>(
        &'a self,
        router: &'a EntryId,
    ) -> impl Iterator<Item = &'a HttpEndpoint> {
        self.endpoints
            .iter()
            .filter(move |endpoint| &endpoint.router == router)
    }
}

/// An `http.service`: one HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpService {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// Listen address; `:8080` becomes `0.0.0.0:8080`, `localhost` becomes `127.0.0.1`.
    pub addr: SocketAddr,
    /// `lifecycle.auto_start`, default `true`.
    pub auto_start: bool,
    /// `tls`: serve HTTPS (and HTTP/2 by ALPN) with these files.
    pub tls: Option<ServiceTls>,
    /// `h2c`: also serve cleartext HTTP/2 by prior knowledge; default `false`.
    pub h2c: bool,
    /// `trusted_proxies`: networks whose forwarding headers (and PROXY headers) are
    /// believed; default none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `proxy_protocol`: every connection starts with a PROXY protocol header from a
    /// trusted proxy; default `false`.
    pub proxy_protocol: bool,
    /// `header_read_timeout`: how long a client may take to send a request head (slowloris
    /// defence); `None` keeps the server's default of 30 s.
    pub header_read_timeout: Option<Duration>,
}

/// The `tls` field of an `http.service`: PEM files, paths resolved against the YAML file's
/// directory (absolute paths as they are). Read when the server starts (and by
/// `wsrelay check`), not when the config loads.
///
/// ```yaml
/// tls:
///   cert: /etc/wsrelay/fullchain.pem
///   key: /etc/wsrelay/privkey.pem
///   client_ca: clients-ca.pem   # optional: require client certificates
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTls {
    /// `tls.cert`: the certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// `tls.key`: the private key.
    pub key: PathBuf,
    /// `tls.client_ca`: CA certificates client certificates must chain to.
    pub client_ca: Option<PathBuf>,
}

/// An `http.router`: a prefix on a server with two middleware chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouter {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `meta.server`: the `http.service` it is mounted on.
    pub server: EntryId,
    /// `prefix`, default `/`; always starts with `/` and has no trailing `/`
    /// (except the root itself).
    pub prefix: String,
    /// `middleware`: pre-match chain, in order.
    pub middleware: Vec<String>,
    /// `options` for the pre-match chain; scalars are stringified.
    pub options: BTreeMap<String, String>,
    /// `post_middleware`: post-match chain, in order (e.g. `websocket_relay`).
    pub post_middleware: Vec<String>,
    /// `post_options` for the post-match chain (e.g. `wsrelay.allowed.origins`).
    pub post_options: BTreeMap<String, String>,
}

/// An HTTP method accepted by `http.endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
}

impl Method {
    /// All methods, in the order shown in error messages.
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Head,
        Method::Options,
    ];

    /// The upper-case name, e.g. `GET`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }

    /// Parses a method name, case-insensitively.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `http.endpoint`: method + path on a router, handled by a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `meta.router`: the `http.router` it belongs to.
    pub router: EntryId,
    /// `method`, normalized.
    pub method: Method,
    /// `path` relative to the router prefix, starting with `/`; may hold
    /// `{param}` segments (and a final `{rest...}` catch-all).
    pub path: String,
    /// The parameter names in `path`, in order.
    pub params: Vec<String>,
    /// `func`: the `function.lua` entry that handles it.
    pub func: EntryId,
}

/// Where an `http.static` is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticMount {
    /// `meta.router`: under a router's prefix.
    Router(EntryId),
    /// `meta.server`: directly on a server.
    Server(EntryId),
}

/// An `http.static`: a directory served under a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStatic {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `meta.router` or `meta.server`.
    pub mount: StaticMount,
    /// `path`: URL prefix, starting with `/`.
    pub path: String,
    /// `directory`, resolved against the YAML file's directory.
    pub directory: PathBuf,
    /// `index`, default `index.html`.
    pub index: String,
    /// `dotfiles: allow` (default `deny`): serve files and directories whose
    /// names start with `.`.
    pub allow_dotfiles: bool,
}

/// Whether a Lua entry is a function or a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LuaKind {
    /// `function.lua`.
    Function,
    /// `process.lua`.
    Process,
}

/// Where a Lua source came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    /// Written inline in the YAML (`source: |`).
    Inline,
    /// Read from `file://…`, resolved against the YAML file's directory.
    File(PathBuf),
}

/// A `function.lua` or `process.lua` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaEntry {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// Function or process.
    pub kind: LuaKind,
    /// The Lua text.
    pub source: String,
    /// Where the text came from.
    pub origin: SourceOrigin,
    /// The chunk name used for compile errors: the resolved file path, or the
    /// entry id for inline sources.
    pub chunk_name: String,
    /// `method`: the function to call in the table the chunk returns. `None`
    /// when the chunk returns a function itself (only Lua can tell).
    pub method: Option<String>,
    /// `modules`: the Lua modules it uses (each one of [`KNOWN_LUA_MODULES`]).
    pub modules: Vec<String>,
    /// `imports`: alias → another Lua entry.
    pub imports: BTreeMap<String, EntryId>,
    /// `http_client`: what its `http_client` requests may do; `None` keeps the runtime's
    /// defaults (no private addresses).
    pub http_client: Option<HttpClientConfig>,
}

/// The `http_client` field of a Lua entry: the policy of its outbound requests. Every field
/// is optional; an absent one keeps the runtime's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// `allow_private`: whether loopback, private and link-local addresses may be reached
    /// (default `false`).
    pub allow_private: bool,
    /// `timeout`: of a request that sets none.
    pub timeout: Option<Duration>,
    /// `max_timeout`: the longest timeout a request may ask for.
    pub max_timeout: Option<Duration>,
    /// `connect_timeout`: of one TCP connect.
    pub connect_timeout: Option<Duration>,
    /// `max_request_body`, in bytes.
    pub max_request_body: Option<u64>,
    /// `max_response_body`, in bytes.
    pub max_response_body: Option<u64>,
    /// `max_redirects` (`0`: redirects are returned, not followed).
    pub max_redirects: Option<u64>,
}

/// A `pg.scope`: a scope of process groups that `pg.open(id)` opens.
#[derive(Debug, Clone, PartialEq)]
pub struct PgScope {
    /// Entry id (what `pg.open` names).
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `max_groups`: groups with members at once; `None` keeps the runtime's default,
    /// `Some(0)` means no limit (as in Wippy).
    pub max_groups: Option<u64>,
    /// `max_members_per_group`: joins per group; as `max_groups`.
    pub max_members_per_group: Option<u64>,
    /// `max_remote_members`: (group, member) pairs kept for one other cluster node; as
    /// `max_groups`.
    pub max_remote_members: Option<u64>,
}

/// A `store.memory`: a key-value store that `store.get(id)` opens.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStore {
    /// Entry id (what `store.get` names).
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `max_size`: live keys at most; `None` keeps the runtime's default (10,000, Wippy's).
    pub max_size: Option<u64>,
}

/// An `env.storage.*` entry: where `env.variable`s live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvStorage {
    /// Entry id (what `env.variable`'s `storage` and a router's `storages` name).
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// Which kind, with its data.
    pub kind: EnvStorageKind,
}

/// The kinds of `env.storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvStorageKind {
    /// `env.storage.os`: the process environment, read when the app starts; read-only.
    Os,
    /// `env.storage.memory`: starts empty; `env.set` writes it.
    Memory,
    /// `env.storage.file`: a `.env` file (`file_path`), read at load time; read-only.
    File {
        /// The file as resolved.
        path: PathBuf,
        /// Its variables.
        variables: BTreeMap<String, String>,
    },
    /// `env.storage.static`: the entry's `variables`; read-only.
    Static {
        /// The variables.
        variables: BTreeMap<String, String>,
    },
    /// `env.storage.router`: reads from the first of `storages` that has the variable;
    /// writes to the first writable one.
    Router {
        /// The storages, in order.
        storages: Vec<EntryId>,
    },
}

/// An `env.variable`: a name the Lua `env` module reads, and the storage that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVariable {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `variable`: the name (`env.get(name)`, and the key in the storage); default the
    /// entry's name.
    pub variable: String,
    /// `storage`: an `env.storage.*` entry.
    pub storage: EntryId,
    /// `default`: the value when the storage does not have it.
    pub default: Option<String>,
    /// `read_only`: `env.set` refuses it.
    pub read_only: bool,
}

/// A `process.host`: where processes run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessHost {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `workers`: worker threads, if set (> 0).
    pub workers: Option<usize>,
    /// `max_processes`: cap on live processes, if set (> 0).
    pub max_processes: Option<usize>,
    /// Every other field (except `name`, `kind`, `meta`), as JSON.
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Restart policy of a `process.service` (`lifecycle.restart`).
///
/// A service is restarted when it exits with an error, after
/// `initial_delay`, doubling (×`backoff_factor`) up to `max_delay` on each
/// consecutive failure. A normal exit is not restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// First delay, default 1s.
    pub initial_delay: Duration,
    /// Delay cap, default 60s.
    pub max_delay: Duration,
    /// Growth per failure, default 2.0 (≥ 1.0).
    pub backoff_factor: f64,
    /// Restarts before giving up; `None` (default) is unlimited, `Some(0)` never restarts.
    pub max_attempts: Option<u32>,
}

impl RestartPolicy {
    /// Default first delay.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
    /// Default delay cap.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
    /// Default growth factor.
    pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;

    /// The delay before restart number `attempt` (0-based).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.backoff_factor.powi(attempt.min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            backoff_factor: Self::DEFAULT_BACKOFF_FACTOR,
            max_attempts: None,
        }
    }
}

/// A `process.service`: a process started and supervised by the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessService {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `process`: the `process.lua` entry to run.
    pub process: EntryId,
    /// `host`: the `process.host` to run it on.
    pub host: EntryId,
    /// `input`: arguments passed at spawn (a non-list value is one argument).
    pub input: Vec<serde_json::Value>,
    /// `lifecycle.auto_start`, default `false` (as in Wippy: opt in).
    pub auto_start: bool,
    /// `lifecycle.restart`.
    pub restart: RestartPolicy,
}

/// TLS files for the cluster connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterTls {
    /// `tls.ca`: CA bundle.
    pub ca: Option<PathBuf>,
    /// `tls.cert`: client certificate.
    pub cert: Option<PathBuf>,
    /// `tls.key`: client key.
    pub key: Option<PathBuf>,
}

/// The `cluster` entry: joins the app's node to a cluster over NATS (`docs/cluster.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `node`: this node's name.
    pub node: Option<String>,
    /// `nats_urls`: NATS servers.
    pub nats_urls: Vec<String>,
    /// `credentials`: NATS credentials file, resolved against the YAML file's
    /// directory (not read at load time).
    pub credentials: Option<PathBuf>,
    /// `tls`.
    pub tls: Option<ClusterTls>,
    /// `secret_file`: the file of the cluster secret that signs every frame, absolute or
    /// relative to the YAML file's directory (not read at load time; the secret itself is
    /// never written in YAML). `WSRELAY_CLUSTER_SECRET_FILE` takes precedence.
    pub secret_file: Option<PathBuf>,
    /// `max_peers`: the most peers known at once (positive; the runtime's default, 256, when
    /// unset). `WSRELAY_CLUSTER_MAX_PEERS` takes precedence.
    pub max_peers: Option<usize>,
}

/// The `wsrelay.ops` entry: a listener of its own for `/metrics`, `/healthz` and, when
/// enabled, `/admin` (never served on the app's servers).
///
/// ```yaml
/// - name: ops
///   kind: wsrelay.ops
///   addr: "127.0.0.1:9090"
///   admin:
///     enabled: true
///     token_env: WSRELAY_ADMIN_TOKEN
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Entry id.
    pub id: EntryId,
    /// The YAML file it came from.
    pub file: PathBuf,
    /// `addr`: where the listener binds.
    pub addr: SocketAddr,
    /// `admin`: the admin endpoint, `None` unless `admin.enabled: true` (default off).
    pub admin: Option<AdminConfig>,
}

/// Where the admin endpoint's bearer token comes from. The loader checks that at least one
/// source is named and that a literal `admin.token` is at least [`Self::MIN_TOKEN_BYTES`]
/// long; the runtime reads the variable (this crate reads only YAML) and applies the same
/// minimum to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `admin.token_env`: the environment variable holding the token (preferred).
    pub token_env: Option<String>,
    /// `admin.token`: the token itself (for tests; keep secrets out of config files).
    pub token: Option<String>,
}

impl AdminConfig {
    /// The shortest admin token accepted, in bytes, surrounding white space trimmed.
    ///
    /// The admin API can list and close every connection; a short bearer token could be
    /// guessed by anyone who reaches the port. 16 random bytes (or 16 characters of a
    /// longer random string) put guessing out of reach.
    pub const MIN_TOKEN_BYTES: usize = 16;
}
