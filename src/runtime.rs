//! [`Runtime`]: the wsrelay node, its Lua engine and its relay, started inside a host app.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use wsrelay_app::{App, AppOptions, Handlers};
use wsrelay_config::{AppConfig, MemoryFiles};
use wsrelay_http::Shutdown;
use wsrelay_lua::EngineConfig;
use wsrelay_process::{Context, ExitResult, HostConfig, Node, Pid, SpawnError, SpawnOptions};
use wsrelay_relay::{Relay, RelayOptions};

use crate::layer::{LuaHandler, RelayLayer};
use crate::{Error, RelayConfig};

/// The process host of the WebSocket connections an embedding app relays, unless
/// [`RuntimeBuilder::connection_host`] names another.
pub const DEFAULT_CONNECTION_HOST: &str = "wsrelay:embedded";

/// How long shutdown waits for connections to drain, unless
/// [`RuntimeBuilder::drain_timeout`] says otherwise (the CLI's default too).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Runtime`]: see [`Runtime::builder`].
#[derive(Debug)]
#[must_use]
pub struct RuntimeBuilder {
    dir: Option<PathBuf>,
    files: Vec<(String, String)>,
    shutdown: Option<CancellationToken>,
    drain_timeout: Duration,
    connection_host: String,
    engine: EngineConfig,
    strict: bool,
}

impl RuntimeBuilder {
    /// Loads the Lua app in `dir` (YAML entries and Lua files, as `wsrelay run DIR` does).
    pub fn lua_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Adds a file of the Lua app from a string: `name` is its path inside the app (e.g.
    /// `app.yaml`, `lua/echo.lua`; YAML files are the entries, the others what `file://`
    /// sources name). Nothing is written to disk; errors name the file as
    /// `<memory>/NAME`. Static mounts (`http.static`) need a directory.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), wsrelay::Error> {
    /// let runtime = wsrelay::Runtime::builder()
    ///     .lua_file("app.yaml", "namespace: app\nentries:\n  - name: workers\n    kind: process.host\n")
    ///     .start()
    ///     .await?;
    /// # let _ = runtime; Ok(()) }
    /// ```
    pub fn lua_file(mut self, name: impl Into<String>, contents: impl Into<String>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Joins the host's graceful shutdown: when `token` is cancelled the runtime ends every
    /// relayed connection with close `1001` (their targets get `ws.leave` `shutdown`), waits
    /// for them within the drain timeout, then stops every process. Without a token the
    /// runtime makes its own ([`Runtime::shutdown_token`]).
    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    /// How long shutdown waits for connections to drain ([`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The process host of relayed connections ([`DEFAULT_CONNECTION_HOST`]): their PIDs
    /// read `{node@host|…}` and shutdown finds them by it.
    pub fn connection_host(mut self, host: impl Into<String>) -> Self {
        self.connection_host = host.into();
        self
    }

    /// Settings of the Lua engine (worker count, budgets).
    pub fn engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }

    /// Unknown entry fields are errors, not warnings (the CLI's `--strict`).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Loads and checks the Lua app, then starts the node, the Lua engine and the supervised
    /// `process.service` entries through the same assembly as `wsrelay run`
    /// ([`wsrelay_app::App::start`]). An `http.service` entry of the app still listens on its
    /// own address; an embedding app usually has none and serves the relay on its own server
    /// with [`Runtime::relay`].
    ///
    /// Must be called inside a Tokio runtime: the shutdown watcher is a task of it.
    ///
    /// # Errors
    ///
    /// [`Error::App`] naming the entry at fault (configuration) or the failure to start;
    /// [`Error::BadFileName`], [`Error::DirAndFiles`] for the app files.
    pub async fn start(self) -> Result<Runtime, Error> {
        let options = wsrelay_app::load_options().with_strict(self.strict);
        let config = match self.dir {
            Some(_) if !self.files.is_empty() => return Err(Error::DirAndFiles),
            Some(dir) => AppConfig::load(&dir, &options),
            None => {
                let (sources, files) = memory_app(&self.files)?;
                AppConfig::from_sources_with(sources, Path::new(MEMORY_APP), &files, &options)
            }
        }
        .map_err(wsrelay_app::AppError::from)?;
        wsrelay_app::check(&config)?;
        let mut app_options = AppOptions::default().with_connection_host(&self.connection_host);
        app_options.engine = self.engine;
        let app = App::start(config, app_options).await?;
        app.node()
            .add_host(&self.connection_host, HostConfig::default());

        let token = self.shutdown.unwrap_or_default();
        let gateway = Shutdown::new();
        let stopped = CancellationToken::new();
        let inner = Arc::new(Inner {
            node: app.node().clone(),
            relay: app.relay().clone(),
            handlers: app.handlers(),
            metrics: app.metrics(),
            connection_host: self.connection_host.into(),
            token: token.clone(),
            gateway: gateway.clone(),
            stopped: stopped.clone(),
        });
        let drain = self.drain_timeout;
        tokio::spawn(async move {
            token.cancelled().await;
            // New upgrades are refused from here (see `RelayService`); the app's shutdown
            // closes the connections (`1001`) and waits for them.
            gateway.trigger();
            app.shutdown(drain).await;
            gateway.tracker().close();
            // The relay tasks end with their connections; this bounds a straggler.
            let _ = tokio::time::timeout(Duration::from_secs(1), gateway.tracker().wait()).await;
            stopped.cancel();
        });
        Ok(Runtime { inner })
    }
}

/// The directory name errors show for an app given as strings.
const MEMORY_APP: &str = "<memory>";

/// The YAML sources and the file tree of an app given as strings.
fn memory_app(files: &[(String, String)]) -> Result<(Vec<(PathBuf, String)>, MemoryFiles), Error> {
    let base = Path::new(MEMORY_APP);
    let mut tree = MemoryFiles::new();
    let mut sources = Vec::new();
    for (name, contents) in files {
        let relative = Path::new(name);
        // Only plain relative names, as `file://` sources inside an app directory are.
        if name.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Error::BadFileName(name.clone()));
        }
        tree.insert(base.join(relative), contents.clone());
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            sources.push((relative.to_owned(), contents.clone()));
        }
    }
    Ok((sources, tree))
}

/// A started wsrelay runtime inside a host app: the process node, the Lua engine with the
/// app's entries, and the relay. Cheap to clone; every clone is the same runtime.
///
/// # Examples
///
/// ```no_run
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run() -> Result<(), wsrelay::Error> {
/// let token = CancellationToken::new();
/// let runtime = wsrelay::Runtime::builder()
///     .lua_dir("app")
///     .shutdown_token(token.clone())
///     .start()
///     .await?;
/// // ... serve routes built with `runtime.relay(..)` and `runtime.lua_handler(..)` ...
/// token.cancel();
/// runtime.stopped().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    relay: Relay,
    handlers: Arc<Handlers>,
    metrics: wsrelay_app::ops::Metrics,
    connection_host: Arc<str>,
    token: CancellationToken,
    /// The tracker of the relay's tasks and the signal it checks.
    gateway: Shutdown,
    stopped: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Handlers are trait objects without `Debug`: their ids say which they are.
        let mut handlers: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        handlers.sort_unstable();
        f.debug_struct("Runtime")
            .field("node", &self.node)
            .field("connection_host", &self.connection_host)
            .field("handlers", &handlers)
            .field("stopping", &self.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with no app, the defaults, and a shutdown token of its own.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            dir: None,
            files: Vec::new(),
            shutdown: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            connection_host: DEFAULT_CONNECTION_HOST.to_owned(),
            engine: EngineConfig::default(),
            strict: false,
        }
    }

    /// The process node: send messages, resolve names, monitor, spawn with options.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Spawns a Rust process on `host` (added if the node has no such host) running `body`,
    /// and returns its PID. The process ends when `body` returns; `()` is a normal exit.
    ///
    /// A relay target receives a [`ClientEvent`](crate::ClientEvent) per connection event
    /// (`msg.payload().downcast_ref::<ClientEvent>()`) and answers with `ws.send` carrying
    /// an [`Outgoing`](crate::Outgoing).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] when the host is full or the node is shutting down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(runtime: &wsrelay::Runtime) -> Result<(), wsrelay::SpawnError> {
    /// let pid = runtime.spawn("app:workers", |ctx| async move {
    ///     let msg = ctx.recv().await;
    ///     tracing::info!(topic = msg.topic(), "first message");
    /// })?;
    /// # let _ = pid; Ok(()) }
    /// ```
    pub fn spawn<F, Fut>(&self, host: &str, body: F) -> Result<Pid, SpawnError>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Into<ExitResult>,
    {
        let node = &self.inner.node;
        // A no-op for a host that exists (its limits stay those of its entry).
        node.add_host(host, HostConfig::default());
        node.spawn(host, SpawnOptions::new(), body)
    }

    /// A relay route with `config`: a tower [`Layer`](tower_layer::Layer) that wraps a
    /// handler service and relays the requests whose response names a target, exactly as
    /// the `websocket_relay` middleware of `wsrelay run` does (origin, admission limits,
    /// WebSocket version and key before the handler; `X-WS-Relay` after it). Clones share
    /// the route (one connection pool and per-IP buckets).
    ///
    /// # Errors
    ///
    /// [`Error::RelayOptions`] naming the bad option.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use wsrelay::{RelayConfig, Runtime};
    ///
    /// # fn f(runtime: &Runtime) -> Result<(), wsrelay::Error> {
    /// let relay = runtime
    ///     .relay(RelayConfig::new().option("wsrelay.max_message_size", "64KiB"))?
    ///     .listener("127.0.0.1:8080".parse().unwrap());
    /// # let _ = relay; Ok(()) }
    /// ```
    pub fn relay(&self, config: RelayConfig) -> Result<RelayLayer, Error> {
        let options = RelayOptions::from_options(&config.options).map_err(Error::RelayOptions)?;
        Ok(RelayLayer::new(
            self.inner.relay.middleware(options),
            self.inner.connection_host.clone(),
            self.inner.gateway.clone(),
        ))
    }

    /// The `function.lua` entry `id` (`namespace:name`) as a tower service, to route in the
    /// host app (wrap it in a [`relay`](Self::relay) layer when it answers with
    /// `X-WS-Relay`). Request bodies are read up to
    /// [`LuaHandler::DEFAULT_MAX_BODY_SIZE`] unless
    /// [`max_body_size`](LuaHandler::max_body_size) says otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::NoHandler`] when the app has no such entry.
    pub fn lua_handler(&self, id: &str) -> Result<LuaHandler, Error> {
        let handler = self
            .inner
            .handlers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NoHandler(id.to_owned()))?;
        Ok(LuaHandler::new(handler))
    }

    /// Registers the runtime's metrics (connections, upgrades by outcome, frames, bytes,
    /// closes by reason, processes by host, Lua engine counters: the series of
    /// docs/OPERATIONS.md) in the host's registry. They are read at scrape time.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// The token whose cancellation shuts the runtime down (the host's, when given to
    /// [`RuntimeBuilder::shutdown_token`]).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Waits until shutdown has finished: connections drained (or the drain timeout
    /// passed) and every process stopped. Cancel safe.
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await;
    }

    /// Starts shutdown (cancels the [`shutdown_token`](Self::shutdown_token)) and waits
    /// until it has finished. Cancel safe: shutdown goes on without the caller.
    pub async fn shutdown(&self) {
        self.inner.token.cancel();
        self.stopped().await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use bytes::Bytes;
    use http_body::Body as _;
    use tower_service::Service;

    use super::*;

    const APP: &str = "\
namespace: t
entries:
  - name: hello
    kind: function.lua
    source: file://lua/hello.lua
    method: handler
    modules: [http]
";

    const HELLO: &str = "\
local http = require('http')
local function handler()
    local res = http.response()
    local req = http.request()
    res:write('hello ' .. (req:query('name') or 'nobody'))
end
return { handler = handler }
";

    async fn body_text(res: crate::Response) -> String {
        let mut body = res.into_body();
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            if let Ok(data) = frame.expect("frame").into_data() {
                out.extend_from_slice(&data);
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_app_given_as_strings_serves_its_lua_handler() {
        let runtime = Runtime::builder()
            .lua_file("app.yaml", APP)
            .lua_file("lua/hello.lua", HELLO)
            .start()
            .await
            .expect("start");
        let mut handler = runtime.lua_handler("t:hello").expect("handler");
        let req = http::Request::get("/hello?name=ada")
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request");
        let res = handler.call(req).await.expect("infallible");
        assert_eq!(res.status(), 200);
        assert_eq!(body_text(res).await, "hello ada");
        assert!(matches!(
            runtime.lua_handler("t:nope"),
            Err(Error::NoHandler(id)) if id == "t:nope"
        ));
        runtime.shutdown().await;
        assert!(runtime.shutdown_token().is_cancelled());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_app_names_its_file_and_a_bad_name_is_refused() {
        let error = Runtime::builder()
            .lua_file(
                "app.yaml",
                "namespace: t\nentries:\n  - name: x\n    kind: no.such\n",
            )
            .start()
            .await
            .expect_err("unknown kind");
        assert!(error.to_string().contains("<memory>/app.yaml"), "{error}");
        for name in ["../escape.yaml", "/abs.yaml", ""] {
            let error = Runtime::builder()
                .lua_file(name, APP)
                .start()
                .await
                .expect_err("bad name");
            assert!(matches!(error, Error::BadFileName(_)), "{name}: {error}");
        }
        let error = Runtime::builder()
            .lua_dir("somewhere")
            .lua_file("app.yaml", APP)
            .start()
            .await
            .expect_err("both");
        assert!(matches!(error, Error::DirAndFiles));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_relay_option_is_named() {
        let runtime = Runtime::builder().start().await.expect("start");
        let error = runtime
            .relay(RelayConfig::new().option("wsrelay.max_message_size", "lots"))
            .expect_err("bad size");
        assert!(
            error.to_string().contains("wsrelay.max_message_size"),
            "{error}"
        );
        runtime.shutdown().await;
    }
}
