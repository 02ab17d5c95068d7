//! The public face of the crate: [`LuaEngine`], entry registration and [`LuaFunction`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use tokio::sync::oneshot;
use wsrelay_process::{NewProcess, Node, ProcessFactory, Shards, Value};

use crate::config::EngineConfig;
use crate::dispatch::Dispatch;
use crate::error::LuaError;
use crate::http_types::{HttpRequest, HttpResponse};
use crate::modules::env::{EnvError, EnvStorageSpec, EnvVariableSpec};
use crate::modules::http_client::{HttpClient, HttpClientPolicy};
use crate::modules::metrics::MetricFamily;
use crate::modules::store::StoreError;
use crate::stats::{Counters, LuaStats};
use crate::worker::{Job, Proto, Workers};

/// A Lua entry as the registry describes it (`function.lua` or `process.lua`).
#[derive(Debug, Clone, Default)]
pub struct EntrySpec {
    /// The Lua source of the chunk.
    pub source: String,
    /// The function to call in the table the chunk returns (ignored if it returns a function).
    pub method: String,
    /// The modules the entry may `require` (`json`, `time`, `http`, `pg`, `base64`, `hash`,
    /// `uuid`, `env`, `crypto`, `logger`, `store`, `metrics`, `http_client`; `process`,
    /// `channel` and `errors` are always available).
    pub modules: Vec<String>,
}

/// A `process.lua` entry.
pub type ProcessSpec = EntrySpec;

/// A `function.lua` entry.
pub type FunctionSpec = EntrySpec;

/// Runs Lua processes and functions on a pool of worker threads.
///
/// Cloning is cheap and clones share the workers. The workers stop when the last clone is
/// dropped; their processes then exit with the error `terminated`, and spawning a Lua entry
/// fails. Keep the engine alive as long as the node runs Lua.
///
/// # Examples
///
/// ```
/// use wsrelay_lua::{EngineConfig, LuaEngine, ProcessSpec};
/// use wsrelay_process::{HostConfig, Node, SpawnOptions, Value};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let node = Node::new();
/// node.add_host("app:processes", HostConfig::default());
/// let engine = LuaEngine::new(node.clone(), EngineConfig { workers: 1, ..Default::default() }).unwrap();
/// let source = r#"
///     local function run()
///         local msg = process.inbox():receive()
///         process.send(msg:from(), "pong", msg:payload():data() + 1)
///     end
///     return { run = run }
/// "#;
/// engine
///     .register_process("app:echo", ProcessSpec { source: source.into(), method: "run".into(), modules: vec![] })
///     .unwrap();
/// let pid = node.spawn_entry("app:echo", "app:processes", SpawnOptions::new(), vec![]).unwrap();
/// let (me, _exit) = node.attach("app:processes", SpawnOptions::new()).unwrap().detach();
/// me.send(&pid, "ping", 41).unwrap();
/// assert_eq!(me.recv().await.payload(), &Value::Int(42));
/// # }
/// ```
#[derive(Clone)]
pub struct LuaEngine {
    node: Node,
    pool: Arc<Pool>,
}

impl fmt::Debug for LuaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaEngine")
            .field("workers", &self.pool.workers.shards().len())
            .finish()
    }
}

/// The workers, and the choice of a worker for each job ([`Dispatch`]).
#[derive(Debug)]
struct Pool {
    workers: Workers,
    choice: Dispatch,
    next_proto: AtomicU64,
    counters: Arc<Counters>,
}

impl Pool {
    fn dispatch(&self, job: Job) -> Result<(), LuaError> {
        let i = self.choice.pick(self.workers.shards());
        self.workers.send(i, job)
    }
}

impl LuaEngine {
    /// Starts the worker threads (`config.workers`, or one per core).
    ///
    /// # Errors
    ///
    /// [`LuaError::Init`] if a thread or a Lua state cannot be created.
    pub fn new(node: Node, config: EngineConfig) -> Result<LuaEngine, LuaError> {
        let shards = node.shards().cloned();
        let count = shards.as_ref().map_or(config.worker_count(), Shards::len);
        let choice = Dispatch::new(count, config.stuck_after());
        let busy = (0..count).map(|i| choice.busy(i)).collect();
        let workers = Workers::start(config, shards, busy)?;
        Ok(LuaEngine {
            node,
            pool: Arc::new(Pool {
                workers,
                choice,
                next_proto: AtomicU64::new(1),
                counters: Arc::default(),
            }),
        })
    }

    /// Registers a `store.memory` store under `id`, holding at most `max_size` live keys
    /// ([`crate::DEFAULT_STORE_MAX_SIZE`] is Wippy's default); Lua code of this engine opens
    /// it with `require("store").get(id)`. A store cannot be removed: it lives as long as
    /// the engine, as a registry entry lives as long as the app.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the id is taken, `max_size` is 0, or the engine holds the most
    /// stores it allows.
    pub fn register_memory_store(&self, id: &str, max_size: usize) -> Result<(), StoreError> {
        self.pool.workers.shared.stores.register(id, max_size)
    }

    /// Registers an `env` storage under `id` (a router's storages must be registered
    /// before it). Storages live as long as the engine.
    ///
    /// # Errors
    ///
    /// [`EnvError`] if the id is taken, a router names an unknown storage, or the engine
    /// holds the most storages it takes.
    pub fn register_env_storage(&self, id: &str, spec: EnvStorageSpec) -> Result<(), EnvError> {
        self.pool.workers.shared.env.register_storage(id, spec)
    }

    /// Declares the `env` variable `name`, held by the storage `spec.storage`:
    /// `env.get(name)` reads it there (or `spec.default`), `env.set(name, v)` writes it
    /// there unless `spec.read_only` or the storage cannot be written.
    ///
    /// # Errors
    ///
    /// [`EnvError`] if the name is declared already, the storage is unknown, or the engine
    /// holds the most variables it takes.
    pub fn register_env_variable(&self, name: &str, spec: EnvVariableSpec) -> Result<(), EnvError> {
        self.pool.workers.shared.env.register_variable(name, spec)
    }

    /// Sets the transport of the `http_client` module (until then, a request returns
    /// INTERNAL "no HTTP client is configured"). The app passes `wsrelay-http`'s client.
    pub fn set_http_client(&self, client: std::sync::Arc<dyn HttpClient>) {
        self.pool.workers.shared.http.set_client(client);
    }

    /// Sets what the `http_client` requests of `entry` may do (an entry without a policy
    /// gets [`HttpClientPolicy::default`], which refuses non-public addresses).
    pub fn set_http_client_policy(&self, entry: &str, policy: HttpClientPolicy) {
        self.pool.workers.shared.http.set_policy(entry, policy);
    }

    /// A copy of the series the `metrics` module holds, sorted by metric name (what the
    /// operations listener exports on `/metrics`). O(series), at most
    /// [`crate::MAX_METRIC_SERIES`].
    pub fn metrics_snapshot(&self) -> Vec<MetricFamily> {
        self.pool.workers.shared.metrics.snapshot()
    }

    /// Checks that `source` compiles; the error names the chunk and the line
    /// (`app.ws:handler:3: unexpected symbol near 'x'`).
    ///
    /// # Errors
    ///
    /// The syntax error text.
    pub fn check_source(chunk_name: &str, source: &str) -> Result<(), String> {
        let lua = mlua::Lua::new();
        lua.load(source)
            .set_name(format!("={chunk_name}"))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map(drop)
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => message,
                other => other.to_string(),
            })
    }

    /// The node the engine spawns on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The number of workers (shards the engine runs on).
    pub fn workers(&self) -> usize {
        self.pool.workers.shards().len()
    }

    /// Lua failures and preemptions since the engine started, and the Lua heaps now (for
    /// metrics).
    pub fn stats(&self) -> LuaStats {
        let mut stats = self.pool.counters.snapshot();
        stats.preemptions = self.pool.choice.preemptions();
        stats.heap_bytes = self.pool.choice.heap_bytes();
        stats
    }

    fn proto(&self, entry_id: &str, spec: EntrySpec) -> Result<Arc<Proto>, LuaError> {
        LuaEngine::check_source(entry_id, &spec.source).map_err(|message| LuaError::Syntax {
            chunk: entry_id.to_owned(),
            message,
        })?;
        Ok(Arc::new(Proto {
            id: self.pool.next_proto.fetch_add(1, Ordering::Relaxed),
            entry: entry_id.into(),
            source: spec.source,
            method: spec.method,
            modules: spec.modules,
            counters: self.pool.counters.clone(),
        }))
    }

    /// Registers a `process.lua` entry: afterwards `spawn_entry(entry_id, ...)` (from Rust or
    /// `process.spawn` in Lua) starts a Lua process running `spec.method` with the spawn
    /// arguments. Registering the id again replaces the entry for new processes.
    ///
    /// # Errors
    ///
    /// [`LuaError::Syntax`] if the source does not compile.
    pub fn register_process(&self, entry_id: &str, spec: ProcessSpec) -> Result<(), LuaError> {
        let proto = self.proto(entry_id, spec)?;
        let factory = LuaProcessFactory {
            pool: Arc::downgrade(&self.pool),
            proto,
        };
        self.node.register_factory(entry_id, Arc::new(factory));
        Ok(())
    }

    /// Prepares a `function.lua` entry for calls.
    ///
    /// # Errors
    ///
    /// [`LuaError::Syntax`] if the source does not compile.
    pub fn function(&self, entry_id: &str, spec: FunctionSpec) -> Result<LuaFunction, LuaError> {
        let proto = self.proto(entry_id, spec)?;
        Ok(LuaFunction {
            node: self.node.clone(),
            pool: self.pool.clone(),
            entry: proto.entry.clone(),
            proto: Arc::new(RwLock::new(proto)),
        })
    }
}

/// Starts Lua processes of one entry on the engine's workers.
#[derive(Debug)]
struct LuaProcessFactory {
    pool: Weak<Pool>,
    proto: Arc<Proto>,
}

impl ProcessFactory for LuaProcessFactory {
    fn start(&self, mut process: NewProcess, args: Vec<Value>) -> Result<(), String> {
        let pool = self.pool.upgrade().ok_or("the Lua engine has stopped")?;
        let ready = process.take_ready();
        let (ctx, guard) = process.detach();
        pool.dispatch(Job::Spawn {
            proto: self.proto.clone(),
            ctx,
            guard,
            args,
            ready,
        })
        .map_err(|e| e.to_string())
    }
}

/// A callable `function.lua` entry (an HTTP handler or a plain function).
///
/// Each call runs in a fresh environment on one of the workers, concurrently with other calls
/// and processes, and is stopped after `call_timeout`. Clones share the entry's code:
/// [`replace`](LuaFunction::replace) on one changes what every clone's next call runs.
#[derive(Clone)]
pub struct LuaFunction {
    node: Node,
    pool: Arc<Pool>,
    entry: Arc<str>,
    /// The code calls run now. Read once when a call starts (the call then holds its own
    /// `Arc`), so a replacement never waits for calls in flight and never changes one.
    proto: Arc<RwLock<Arc<Proto>>>,
}

impl fmt::Debug for LuaFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LuaFunction").field(&self.entry).finish()
    }
}

impl LuaFunction {
    /// The entry id.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// Replaces the entry's code (hot reload): calls that start afterwards run `spec`, calls
    /// in flight finish with the code they started with.
    ///
    /// # Errors
    ///
    /// [`LuaError::Syntax`] if the source does not compile; the code in use stays.
    pub fn replace(&self, spec: FunctionSpec) -> Result<(), LuaError> {
        let engine = LuaEngine {
            node: self.node.clone(),
            pool: self.pool.clone(),
        };
        let proto = engine.proto(&self.entry, spec)?;
        *self.proto.write() = proto;
        Ok(())
    }

    /// Calls the function as an HTTP handler: `http.request()` is `req`, and what it sets on
    /// `http.response()` is returned.
    ///
    /// # Errors
    ///
    /// [`LuaError::Runtime`] (with the Lua traceback), [`LuaError::MethodNotFound`],
    /// [`LuaError::Timeout`], [`LuaError::Stopped`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the call.
    pub fn call_http(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, LuaError>> + Send + 'static {
        let call = self.start(Some(req), Vec::new());
        async move {
            call?
                .await
                .map_err(|_| LuaError::Stopped)?
                .map(|out| out.response)
        }
    }

    /// Calls the function with `args` and returns its first result.
    ///
    /// # Errors
    ///
    /// As [`call_http`](LuaFunction::call_http).
    pub fn call(
        &self,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<Value, LuaError>> + Send + 'static {
        let call = self.start(None, args);
        async move {
            call?
                .await
                .map_err(|_| LuaError::Stopped)?
                .map(|out| out.value)
        }
    }

    fn start(
        &self,
        request: Option<HttpRequest>,
        args: Vec<Value>,
    ) -> Result<oneshot::Receiver<Result<crate::worker::CallOutput, LuaError>>, LuaError> {
        let (reply, rx) = oneshot::channel();
        let proto = self.proto.read().clone();
        self.pool.dispatch(Job::Call {
            proto,
            node: self.node.clone(),
            request,
            args,
            reply,
        })?;
        Ok(rx)
    }
}
