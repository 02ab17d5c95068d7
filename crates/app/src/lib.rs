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
//!    endpoints running `function.lua` entries, static mounts; then binds;
//! 4. starts and supervises `process.service` entries with
//!    `lifecycle.auto_start` (restart on error exit, with backoff).
//!
//! [`RunningApp::shutdown`] follows SPEC §8: stop accepting, terminate every
//! connection with the error `shutdown` (the relay sends close `1001` and
//! `ws.leave` with reason `shutdown` to targets), wait for them within the
//! drain timeout, then stop every other process.
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

pub mod demo;
mod error;
mod gateway;
mod handler;
mod supervisor;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsrelay_config::{AppConfig, LoadOptions};
use wsrelay_http::{MiddlewareRegistry, RunningGateway};
use wsrelay_lua::{EngineConfig, LuaEngine};
use wsrelay_process::{reason, ExitResult, HostConfig, Node};
use wsrelay_relay::Relay;

pub use error::AppError;

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

/// Checks what the loader cannot: each router's middleware options (e.g.
/// `wsrelay.allowed.origins`). Starts nothing.
///
/// # Errors
///
/// [`AppError::Middleware`] naming the router and the field.
pub fn check(config: &AppConfig) -> Result<(), AppError> {
    let registry = registry(&Relay::new(Node::new()));
    gateway::check_middleware(config, &registry)
}

fn registry(relay: &Relay) -> MiddlewareRegistry {
    let mut registry = MiddlewareRegistry::with_builtins();
    relay.register(&mut registry);
    registry
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
}

impl AppOptions {
    /// Sets [`listen_override`](Self::listen_override).
    #[must_use]
    pub fn with_listen(mut self, addr: Option<SocketAddr>) -> Self {
        self.listen_override = addr;
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
        let node = Node::new();
        for host in &config.hosts {
            let host_config = HostConfig {
                max_processes: host.max_processes,
                ..HostConfig::default()
            };
            node.add_host(&host.id.to_string(), host_config);
        }
        let connection_hosts: HashSet<String> =
            config.services.iter().map(|s| s.id.to_string()).collect();
        for host in &connection_hosts {
            node.add_host(host, HostConfig::default());
        }

        let result = Self::assemble(&node, &config, &options).await;
        let (engine, gateway) = match result {
            Ok(parts) => parts,
            Err(error) => {
                node.shutdown();
                return Err(error);
            }
        };

        let stop = CancellationToken::new();
        let services = TaskTracker::new();
        for service in &config.process_services {
            if service.auto_start {
                services.spawn(supervisor::supervise(
                    node.clone(),
                    service.clone(),
                    stop.clone(),
                ));
            }
        }
        services.close();
        Ok(RunningApp {
            node,
            engine,
            gateway,
            connection_hosts,
            stop,
            services,
        })
    }

    async fn assemble(
        node: &Node,
        config: &AppConfig,
        options: &AppOptions,
    ) -> Result<(LuaEngine, RunningGateway), AppError> {
        let engine = LuaEngine::new(node.clone(), options.engine.clone())
            .map_err(|e| AppError::Engine(Box::new(e)))?;
        for entry in &config.processes {
            engine
                .register_process(&entry.id.to_string(), gateway::spec(entry))
                .map_err(|source| AppError::Lua {
                    entry: entry.id.clone(),
                    file: entry.file.clone(),
                    source: Box::new(source),
                })?;
        }
        let handlers = gateway::handlers(config, &engine)?;
        let registry = registry(&Relay::new(node.clone()));
        let gateway = gateway::build(config, &registry, &handlers, options.listen_override)?;
        let running = gateway
            .bind()
            .await
            .map_err(|e| AppError::Bind(Box::new(e)))?;
        Ok((engine, running))
    }
}

/// A started app. Dropping it does not stop it; call
/// [`shutdown`](RunningApp::shutdown).
#[derive(Debug)]
pub struct RunningApp {
    node: Node,
    engine: LuaEngine,
    gateway: RunningGateway,
    connection_hosts: HashSet<String>,
    stop: CancellationToken,
    services: TaskTracker,
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

    /// Shuts down gracefully (SPEC §8): stops accepting and supervising,
    /// terminates every WebSocket connection with the error `shutdown` (each
    /// client gets close `1001`, each target `ws.leave` with reason
    /// `shutdown`), waits up to `drain_timeout` for connections and
    /// in-flight requests, then stops every remaining process.
    pub async fn shutdown(self, drain_timeout: Duration) {
        let deadline = Instant::now() + drain_timeout;
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
