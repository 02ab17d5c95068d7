//! `wsrelay-app` assembles and runs a wsrelay app from its validated
//! [`AppConfig`].
//!
//! [`App::start`] does, in order:
//!
//! 1. adds a process host per `process.host` entry and per `http.service`
//!    (WebSocket connections are processes on the host named by the server's
//!    id, e.g. `app:gateway`);
//! 2. starts the Lua engine and registers every `process.lua` entry as a
//!    process factory, so `process.spawn(id, host)` works;
//! 3. builds the HTTP gateway: a server per `http.service`, routers with
//!    their pre/post middleware (the builtins plus `websocket_relay`),
//!    endpoints running `function.lua` entries, static mounts;
//! 4. starts and supervises `process.service` entries with
//!    `lifecycle.auto_start` (restart on error exit, with backoff), and waits until each has
//!    come to its first wait (up to [`SERVICE_START_WAIT`]): the names and groups a service
//!    sets up as it starts exist before the first client comes;
//! 5. binds the gateway's listeners;
//! 6. starts the operations listener (`/metrics`, `/healthz`, `/admin`, the `/dashboard`; see
//!    [`ops`]) when a `wsrelay.ops` entry or
//!    [`AppOptions::ops_listen`] asks for one.
//!
//! [`RunningApp::shutdown`] follows docs/spec.md §8: stop accepting, terminate every
//! connection with the error `shutdown` (the relay sends close `1001` and
//! `ws.leave` with reason `shutdown` to targets), wait for them within the
//! drain timeout, then stop every other process. The operations listener
//! answers `/healthz` with `503` from the start of the drain and stops last.
//!
//! [`RunningApp::reload_dir`] is hot reload (`wsrelay run --watch`, with [`watch::Watcher`]):
//! the directory validated by [`validate`], then new Lua code, routes and what needs a restart
//! applied or reported without dropping a connection (docs/decisions/hot-reload.md).
//!
//! [`load_options`] gives the loader the same middleware names and Lua
//! syntax check the runtime uses, so `wsrelay check` and `wsrelay run`
//! validate identically; [`check`] adds the middleware option checks.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use wsrelay_app::{load_options, App, AppOptions};
//! use wsrelay_config::AppConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AppConfig::load("examples/chat".as_ref(), &load_options())?;
//! let app = App::start(config, AppOptions::default()).await?;
//! for (server, addr) in app.addrs() {
//!     println!("{server}: http://{addr}/");
//! }
//! app.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod cluster;
pub mod demo;
mod error;
mod gateway;
mod handler;
mod http_client;
pub mod ops;
mod reload;
mod supervisor;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsrelay_config::{AppConfig, LoadOptions};
use wsrelay_http::{Gateway, MiddlewareRegistry, RunningGateway};
use wsrelay_lua::{EngineConfig, LuaEngine};
use wsrelay_process::{reason, ExitResult, GroupLimits, HostConfig, Node, Shards};
use wsrelay_relay::Relay;

/// How long [`App::start`] waits for the auto-started services to come to their first wait
/// before it opens the listeners anyway (with a warning naming the late ones): a service that
/// takes longer to start (one that fetches its data first, say) delays the app's start by
/// this much at most.
pub const SERVICE_START_WAIT: Duration = Duration::from_secs(10);

pub use error::{AppError, TokenProblem};
pub use reload::Reload;

/// Loader options with the runtime's middleware names (the builtins and
/// `websocket_relay`) and the Lua syntax checker.
#[must_use]
pub fn load_options() -> LoadOptions {
    let builtins = MiddlewareRegistry::with_builtins();
    let names: Vec<String> = builtins
        .names()
        .map(str::to_owned)
        .chain([wsrelay_relay::MIDDLEWARE_NAME.to_owned()])
        .collect();
    LoadOptions::new()
        .with_middleware(names)
        .with_lua_checker(LuaEngine::check_source)
}

/// The validation path of `wsrelay check`, `wsrelay run` and every hot reload: loads `dir`
/// with [`load_options`] (unknown fields are errors when `strict`), then [`check`]s it.
///
/// # Errors
///
/// The loader's errors (each naming file, entry and field; a Lua syntax error names the
/// file and line) or [`check`]'s.
pub fn validate(dir: &Path, strict: bool) -> Result<AppConfig, AppError> {
    let options = load_options().with_strict(strict);
    let config = AppConfig::load(dir, &options)?;
    check(&config)?;
    Ok(config)
}

/// Checks what the loader cannot: each router's middleware options (e.g.
/// `wsrelay.allowed.origins`), each server's TLS files (read, parsed, the key matched
/// to the certificate) and the cluster secret (read, long enough). Starts nothing.
///
/// # Errors
///
/// [`AppError::Middleware`] naming the router and the field; [`AppError::Gateway`] naming
/// the `http.service` whose TLS files cannot be used; [`AppError::ClusterEntry`] naming the
/// `cluster` entry's `secret_file` (or [`AppError::ClusterEnv`] naming
/// `WSRELAY_CLUSTER_SECRET_FILE`, which takes precedence) when the secret cannot be used.
pub fn check(config: &AppConfig) -> Result<(), AppError> {
    let registry = registry(&Relay::new(Node::new()));
    gateway::check_middleware(config, &registry)?;
    cluster::check(config)
}

fn registry(relay: &Relay) -> MiddlewareRegistry {
    let mut registry = MiddlewareRegistry::with_builtins();
    relay.register(&mut registry);
    registry
}

/// The limits of a `pg.scope` entry: the runtime's defaults where it sets none, no limit where
/// it says 0 (Wippy's meaning).
fn group_limits(scope: &wsrelay_config::PgScope) -> GroupLimits {
    let defaults = GroupLimits::default();
    let limit = |set: Option<u64>, default: usize| match set {
        None => default,
        Some(0) => usize::MAX,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    GroupLimits::new(
        limit(scope.max_groups, defaults.max_groups),
        limit(scope.max_members_per_group, defaults.max_members),
    )
    .with_max_remote_members(limit(scope.max_remote_members, defaults.max_remote_members))
}

/// Options of [`App::start`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AppOptions {
    /// Listen on this address instead of the first `http.service`'s `addr`
    /// (the CLI's `--listen`).
    pub listen_override: Option<SocketAddr>,
    /// Settings of the Lua engine.
    pub engine: EngineConfig,
    /// Serve the operations listener on this address, replacing the
    /// `wsrelay.ops` entry's `addr` (the CLI's `--metrics`). Without a
    /// `wsrelay.ops` entry the admin API stays off.
    pub ops_listen: Option<SocketAddr>,
    /// Hosts of WebSocket connection processes besides the `http.service` ids: those of an
    /// app that embeds wsrelay and relays on its own server. Shutdown ends their processes
    /// first (close `1001`), as it does the gateway's connections.
    pub connection_hosts: Vec<String>,
}

impl AppOptions {
    /// Sets [`listen_override`](Self::listen_override).
    #[must_use]
    pub fn with_listen(mut self, addr: Option<SocketAddr>) -> Self {
        self.listen_override = addr;
        self
    }

    /// Sets [`ops_listen`](Self::ops_listen).
    #[must_use]
    pub fn with_ops_listen(mut self, addr: Option<SocketAddr>) -> Self {
        self.ops_listen = addr;
        self
    }

    /// Adds a host to [`connection_hosts`](Self::connection_hosts).
    #[must_use]
    pub fn with_connection_host(mut self, host: impl Into<String>) -> Self {
        self.connection_hosts.push(host.into());
        self
    }
}

/// Entry point: see [`App::start`].
#[derive(Debug)]
pub struct App;

impl App {
    /// Assembles and starts the app (see the crate docs for the steps).
    ///
    /// # Errors
    ///
    /// [`AppError::Bind`] when a server cannot listen (runtime failure);
    /// any other variant is a configuration problem naming its entry. On
    /// error nothing keeps running.
    pub async fn start(config: AppConfig, options: AppOptions) -> Result<RunningApp, AppError> {
        // Resolved first: a missing admin token must stop the app before anything starts.
        let ops_settings = Self::ops_settings(&config, &options)?;
        let scopes: Vec<(String, GroupLimits)> = config
            .pg_scopes
            .iter()
            .map(|scope| (scope.id.to_string(), group_limits(scope)))
            .collect();
        let (node, cluster) = cluster::node(&config, &scopes).await?;
        // One shard per core runs the servers' connections, the Lua states and the task
        // processes together (see `wsrelay_process::shard`).
        let shards = Shards::start(options.engine.worker_count(), "wsrelay")
            .map_err(|e| AppError::Engine(Box::new(wsrelay_lua::LuaError::Init(e.to_string()))))?;
        node.set_shards(shards);
        for host in &config.hosts {
            let host_config = HostConfig {
                max_processes: host.max_processes,
                ..HostConfig::default()
            };
            node.add_host(&host.id.to_string(), host_config);
        }
        let connection_hosts: HashSet<String> = config
            .services
            .iter()
            .map(|s| s.id.to_string())
            .chain(options.connection_hosts.iter().cloned())
            .collect();
        for host in &connection_hosts {
            node.add_host(host, HostConfig::default());
        }

        let result = Self::assemble(&node, &config, &options).await;
        let (engine, gateway, relay, functions, chains) = match result {
            Ok(parts) => parts,
            Err(error) => {
                node.shutdown();
                return Err(error);
            }
        };

        // Services first, listeners after: a client's first request must not come before the
        // names the services register as they start (docs/lua/guide.md, "Services are up
        // before clients come").
        let stop = CancellationToken::new();
        let services = TaskTracker::new();
        let mut starting = Vec::new();
        for service in &config.process_services {
            if service.auto_start {
                let (ready, started) = tokio::sync::watch::channel(false);
                starting.push((service.id.to_string(), started));
                services.spawn(supervisor::supervise(
                    node.clone(),
                    service.clone(),
                    stop.clone(),
                    ready,
                ));
            }
        }
        services.close();
        supervisor::wait_started(starting, SERVICE_START_WAIT).await;
        let gateway = match gateway.bind().await {
            Ok(gateway) => gateway,
            Err(error) => {
                stop.cancel();
                services.wait().await;
                node.shutdown();
                return Err(AppError::Bind(Box::new(error)));
            }
        };
        let ops_state = Arc::new(ops::OpsState::new(
            node.clone(),
            relay.clone(),
            engine.clone(),
            connection_hosts.clone(),
            cluster,
        ));
        let mut app = RunningApp {
            node,
            engine,
            gateway,
            connection_hosts,
            stop,
            services,
            ops: None,
            ops_state: ops_state.clone(),
            relay,
            live: parking_lot::Mutex::new(reload::Live::new(config, functions, chains)),
        };
        if let Some(settings) = ops_settings {
            match ops::Ops::start(settings, ops_state).await {
                Ok(ops) => app.ops = Some(ops),
                Err(error) => {
                    app.shutdown(Duration::from_secs(1)).await;
                    return Err(error);
                }
            }
        }
        Ok(app)
    }

    fn ops_settings(
        config: &AppConfig,
        options: &AppOptions,
    ) -> Result<Option<ops::OpsSettings>, AppError> {
        let admin_token = match &config.ops {
            Some(entry) => ops::admin_token(entry)?,
            None => None,
        };
        let addr = options
            .ops_listen
            .or_else(|| config.ops.as_ref().map(|entry| entry.addr));
        Ok(addr.map(|addr| ops::OpsSettings { addr, admin_token }))
    }

    async fn assemble(
        node: &Node,
        config: &AppConfig,
        options: &AppOptions,
    ) -> Result<
        (
            LuaEngine,
            Gateway,
            Relay,
            gateway::Functions,
            gateway::Chains,
        ),
        AppError,
    > {
        let engine = LuaEngine::new(node.clone(), engine_config(config, &options.engine))
            .map_err(|e| AppError::Engine(Box::new(e)))?;
        for store in &config.memory_stores {
            let max_size = store
                .max_size
                .map_or(wsrelay_lua::DEFAULT_STORE_MAX_SIZE, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                });
            engine
                .register_memory_store(&store.id.to_string(), max_size)
                .map_err(|source| AppError::Store {
                    entry: store.id.clone(),
                    file: store.file.clone(),
                    source,
                })?;
        }
        register_env(&engine, config)?;
        if config
            .functions
            .iter()
            .chain(&config.processes)
            .any(|e| e.modules.iter().any(|m| m == "http_client"))
        {
            // Read the certificate files here, not on a shard at the first HTTPS request.
            wsrelay_http::client::load_system_roots();
        }
        engine.set_http_client(std::sync::Arc::new(http_client::HyperClient));
        for entry in config.functions.iter().chain(&config.processes) {
            if let Some(policy) = &entry.http_client {
                engine.set_http_client_policy(&entry.id.to_string(), http_client::policy(policy));
            }
        }
        for entry in &config.processes {
            engine
                .register_process(&entry.id.to_string(), gateway::spec(entry))
                .map_err(AppError::lua(entry))?;
        }
        let functions = gateway::Functions::prepare(config, &engine)?;
        let relay = Relay::new(node.clone());
        let registry = registry(&relay);
        let none = gateway::Chains::default();
        let mut middleware = gateway::Middlewares::new(&registry, &none);
        let gateway = gateway::build(
            config,
            &mut middleware,
            &functions.handlers,
            options.listen_override,
        )?;
        let chains = middleware.built;
        let gateway = match node.shards() {
            Some(shards) => gateway.accept_on(
                (0..shards.len())
                    .map(|i| shards.handle(i).clone())
                    .collect(),
            ),
            None => gateway,
        };
        Ok((engine, gateway, relay, functions, chains))
    }
}

/// Registers the `env.storage.*` entries (a router after the storages it reads, whatever
/// the file order) and then the `env.variable` entries on the engine.
fn register_env(engine: &LuaEngine, config: &AppConfig) -> Result<(), AppError> {
    use wsrelay_config::EnvStorageKind;
    use wsrelay_lua::EnvStorageSpec;
    let mut pending: Vec<&wsrelay_config::EnvStorage> = config.env_storages.iter().collect();
    let mut done = std::collections::HashSet::new();
    // Each round registers every storage whose routes are done; a round without progress
    // leaves only routers in a cycle (the loader checked that every route exists).
    while !pending.is_empty() {
        let before = pending.len();
        let mut error = None;
        pending.retain(|storage| {
            let spec = match &storage.kind {
                EnvStorageKind::Os => EnvStorageSpec::Os,
                EnvStorageKind::Memory => EnvStorageSpec::Memory,
                EnvStorageKind::File { variables, .. } | EnvStorageKind::Static { variables } => {
                    EnvStorageSpec::Values(variables.clone())
                }
                EnvStorageKind::Router { storages } => {
                    if !storages.iter().all(|s| done.contains(&s.to_string())) {
                        return true;
                    }
                    EnvStorageSpec::Router(storages.iter().map(ToString::to_string).collect())
                }
            };
            let id = storage.id.to_string();
            if let Err(source) = engine.register_env_storage(&id, spec) {
                error.get_or_insert(AppError::Env {
                    entry: storage.id.clone(),
                    file: storage.file.clone(),
                    source,
                });
            }
            done.insert(id);
            false
        });
        if let Some(error) = error {
            return Err(error);
        }
        if pending.len() == before {
            let storage = pending[0];
            return Err(AppError::Env {
                entry: storage.id.clone(),
                file: storage.file.clone(),
                source: wsrelay_lua::EnvError::Cycle(storage.id.to_string()),
            });
        }
    }
    for variable in &config.env_variables {
        engine
            .register_env_variable(
                &variable.variable,
                wsrelay_lua::EnvVariableSpec {
                    storage: variable.storage.to_string(),
                    default: variable.default.clone(),
                    read_only: variable.read_only,
                },
            )
            .map_err(|source| AppError::Env {
                entry: variable.id.clone(),
                file: variable.file.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The `function.lua` entries as handlers, by entry id (`namespace:name`).
pub type Handlers = HashMap<String, Arc<dyn wsrelay_http::Handler>>;

/// A started app. Dropping it does not stop it; call
/// [`shutdown`](RunningApp::shutdown).
pub struct RunningApp {
    node: Node,
    engine: LuaEngine,
    gateway: RunningGateway,
    connection_hosts: HashSet<String>,
    stop: CancellationToken,
    services: TaskTracker,
    ops: Option<ops::Ops>,
    ops_state: Arc<ops::OpsState>,
    relay: Relay,
    /// What a reload replaces; locked only while one is applied or the handlers are read.
    live: parking_lot::Mutex<reload::Live>,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Handlers are trait objects without `Debug`: their ids say which they are.
        let live = self.live.lock();
        let mut handlers: Vec<&str> = live.handlers.keys().map(String::as_str).collect();
        handlers.sort_unstable();
        f.debug_struct("RunningApp")
            .field("node", &self.node)
            .field("gateway", &self.gateway)
            .field("connection_hosts", &self.connection_hosts)
            .field("handlers", &handlers)
            .field("ops", &self.ops)
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// Every server's id and bound address (the real port when `:0` was asked).
    #[must_use]
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.gateway
            .addrs()
            .map(|(id, addr)| (id.to_owned(), addr))
            .collect()
    }

    /// The node the app's processes run on.
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The relay of the app's node: an embedding app builds its relay routes from it
    /// ([`Relay::middleware`]), so their connections count in the same metrics.
    #[must_use]
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Every `function.lua` entry as a handler, by entry id: what an embedding app serves on
    /// its own routes (the app's `http.endpoint` entries serve the same handlers). A reload
    /// changes the code these handlers run; entries it adds are in the next call's map.
    #[must_use]
    pub fn handlers(&self) -> Arc<Handlers> {
        self.live.lock().handlers.clone()
    }

    /// Hot reload: validates `dir` on the path `wsrelay check` uses ([`validate`]) and
    /// applies it (see [`reload`](Self::reload)). A failure is logged with the validation's
    /// error and counted (`wsrelay_reloads_total{result="error"}`); the running version
    /// keeps serving.
    ///
    /// # Errors
    ///
    /// What [`validate`] or [`reload`](Self::reload) returned.
    pub fn reload_dir(&self, dir: &Path, strict: bool) -> Result<Reload, AppError> {
        let result = validate(dir, strict).and_then(|config| self.apply(config));
        self.record(&result);
        result
    }

    /// Hot reload of a validated `config`: new handler calls and new spawns of changed Lua
    /// entries run the new code, running processes and calls in flight keep theirs; routing
    /// tables are replaced; what needs a restart (listeners, hosts, services, scopes, stores,
    /// env, cluster, ops) is named in the result and left as it runs. Counted and logged as
    /// [`reload_dir`](Self::reload_dir) is.
    ///
    /// # Errors
    ///
    /// An added `function.lua` entry that does not compile, or a routing table the gateway
    /// rejects; nothing was changed then.
    pub fn reload(&self, config: AppConfig) -> Result<Reload, AppError> {
        let result = self.apply(config);
        self.record(&result);
        result
    }

    fn apply(&self, config: AppConfig) -> Result<Reload, AppError> {
        let parts = reload::Parts {
            engine: &self.engine,
            gateway: &self.gateway,
            relay: &self.relay,
        };
        reload::apply(&parts, &mut self.live.lock(), config)
    }

    /// Counts and logs a reload's outcome.
    fn record(&self, result: &Result<Reload, AppError>) {
        self.ops_state.count_reload(result.is_ok());
        match result {
            Ok(reload) => {
                for item in &reload.needs_restart {
                    tracing::warn!("reload: needs a restart: {item}");
                }
                tracing::info!(%reload, "reloaded");
            }
            Err(error) => {
                for line in error.to_string().lines() {
                    tracing::error!("reload failed; the previous version keeps serving: {line}");
                }
            }
        }
    }

    /// The app's metrics (the ones `/metrics` of the operations listener serves), to
    /// register in the embedding app's registry.
    #[must_use]
    pub fn metrics(&self) -> ops::Metrics {
        ops::Metrics::new(self.ops_state.clone())
    }

    /// Whether server `id` serves TLS (`https://`).
    #[must_use]
    pub fn is_tls(&self, id: &str) -> bool {
        self.gateway.is_tls(id)
    }

    /// Reloads every TLS server's certificates now (SIGHUP); established connections keep
    /// theirs. Files are also reloaded when they change, without a signal.
    ///
    /// # Errors
    ///
    /// The first server whose files failed to load; it keeps the certificates in use.
    pub fn reload_tls(&self) -> Result<(), wsrelay_http::Error> {
        self.gateway.reload_tls()
    }

    /// Whether the operations listener serves `/admin` and `/dashboard` (a token is set).
    #[must_use]
    pub fn admin_enabled(&self) -> bool {
        self.ops.as_ref().is_some_and(ops::Ops::admin_enabled)
    }

    /// The bound address of the operations listener, if one runs.
    #[must_use]
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(ops::Ops::addr)
    }

    /// Shuts down gracefully (docs/spec.md §8): stops accepting and supervising,
    /// terminates every WebSocket connection with the error `shutdown` (each
    /// client gets close `1001`, each target `ws.leave` with reason
    /// `shutdown`), waits up to `drain_timeout` for connections and
    /// in-flight requests, then stops every remaining process.
    pub async fn shutdown(self, drain_timeout: Duration) {
        let deadline = Instant::now() + drain_timeout;
        self.ops_state.set_draining();
        self.stop.cancel();
        self.gateway.shutdown_handle().trigger();

        let mut killed = 0usize;
        for info in self.node.processes() {
            if self.connection_hosts.contains(info.pid.host())
                && self
                    .node
                    .kill(&info.pid, ExitResult::error(reason::SHUTDOWN))
                    .is_ok()
            {
                killed += 1;
            }
        }
        tracing::info!(connections = killed, "shutting down");
        while self.connections_alive() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.gateway.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "gateway did not drain"),
            Err(_) => tracing::warn!(?drain_timeout, "drain timeout; closing what remains"),
        }
        self.services.wait().await;
        self.node.shutdown();
        drop(self.engine);
        // Last, so health checks and scrapes see the whole drain.
        if let Some(ops) = self.ops {
            ops.stop().await;
        }
        tracing::info!("stopped");
    }

    fn connections_alive(&self) -> usize {
        // Per-host counters: no snapshot of every process while draining.
        self.node
            .hosts()
            .into_iter()
            .filter(|(host, _)| self.connection_hosts.contains(host.as_str()))
            .map(|(_, count)| count)
            .sum()
    }
}

/// The engine settings for `config`: the value budget (`max_value_size`) admits the largest
/// message a relay route accepts, with room for the table around it, so a Lua target can
/// always pass on (echo, forward, broadcast) any message its clients may send.
fn engine_config(config: &AppConfig, engine: &EngineConfig) -> EngineConfig {
    /// Room for the `ws.send` table and its fields around the message's bytes.
    const ENVELOPE: usize = 64 << 10;
    let largest_message = largest_relay_message(config);
    let mut engine = engine.clone();
    engine.max_value_size = engine
        .max_value_size
        .max(largest_message.saturating_add(ENVELOPE));
    engine
}

/// The largest message any relay route of `config` accepts (0 without one).
fn largest_relay_message(config: &AppConfig) -> usize {
    config
        .routers
        .iter()
        .filter_map(relay_message_limit)
        .max()
        .unwrap_or(0)
}

/// The `max_message_size` of `router`'s relay, if it relays.
fn relay_message_limit(router: &wsrelay_config::HttpRouter) -> Option<usize> {
    let relays = router
        .post_middleware
        .iter()
        .any(|name| name == wsrelay_relay::MIDDLEWARE_NAME);
    if !relays {
        return None;
    }
    wsrelay_relay::RelayOptions::from_options(&router.post_options)
        .ok()
        .map(|relay| relay.max_message_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(limits: [Option<u64>; 3]) -> wsrelay_config::PgScope {
        wsrelay_config::PgScope {
            id: "app:rooms".parse().unwrap(),
            file: "app.yaml".into(),
            max_groups: limits[0],
            max_members_per_group: limits[1],
            max_remote_members: limits[2],
        }
    }

    #[test]
    fn a_scope_s_limits_are_its_fields_the_defaults_or_none_for_zero() {
        let defaults = GroupLimits::default();
        let set = group_limits(&scope([Some(10), Some(0), Some(5000)]));
        assert_eq!(
            (set.max_groups, set.max_members, set.max_remote_members),
            (10, usize::MAX, 5000)
        );
        assert_eq!(group_limits(&scope([None; 3])), defaults);
    }
}
