//! Workers: one Lua state per shard, running many Lua processes as coroutines.
//!
//! The engine runs on [`Shards`] (one thread per core, each a current-thread Tokio runtime and
//! a `LocalSet`): the node's, so that a Lua process shares its thread with the connections
//! that talk to it, or shards of its own. Each shard holds the engine's Lua state in a
//! thread-local map. Jobs arrive as closures run on the shard: *spawn* (a detached process:
//! its `Context` and `ExitGuard`) and *call* (a function call with a reply channel). Each
//! becomes a local task that resumes the actor's coroutine; when the coroutine blocks
//! (`inbox:receive()`, `channel.select`, `time.sleep`) the task is pending and costs no
//! thread. The instruction hook ([`crate::preempt`]) yields long-running coroutines so that the
//! others get their turn.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue};
use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use wsrelay_process::{Context, ExitGuard, ExitResult, Node, Ready, Shards, Value};

use crate::actor::{Actor, CallState, ProcState};
use crate::config::EngineConfig;
use crate::convert::{to_lua, to_value, ConvertError, ValueLimit};
use crate::dispatch::Busy;
use crate::error::{method_not_found, LuaError};
use crate::http_types::{HttpRequest, HttpResponse};
use crate::modules::env::EnvStore;
use crate::modules::Shared;
use crate::resume::{Outcome, Resumes, Scoped};
use crate::sandbox::{new_env, wrap_source, Sandbox};

/// A registered entry: its source and how to start it.
#[derive(Debug)]
pub(crate) struct Proto {
    /// Unique per engine (entries can be registered again with new source).
    pub(crate) id: u64,
    pub(crate) entry: Arc<str>,
    pub(crate) source: String,
    pub(crate) method: String,
    pub(crate) modules: Vec<String>,
    /// The engine's failure counters.
    pub(crate) counters: Arc<crate::stats::Counters>,
}

/// What a function call produced.
#[derive(Debug)]
pub(crate) struct CallOutput {
    pub(crate) response: HttpResponse,
    pub(crate) value: Value,
}

/// Work for a worker.
pub(crate) enum Job {
    Spawn {
        proto: Arc<Proto>,
        ctx: Context,
        guard: ExitGuard,
        args: Vec<Value>,
        /// Set at the process's first wait (see `SpawnOptions::notify_ready`).
        ready: Ready,
    },
    Call {
        proto: Arc<Proto>,
        node: Node,
        request: Option<HttpRequest>,
        args: Vec<Value>,
        reply: oneshot::Sender<Result<CallOutput, LuaError>>,
    },
}

/// The engine's Lua states, one per shard: created on each shard's thread when the engine
/// starts, and found there again through a thread-local map keyed by engine.
pub(crate) struct Workers {
    engine: u64,
    shards: Shards,
    /// Whether the engine started these shards itself (they stop with it); otherwise they are
    /// the node's and the engine only removes what it put on them.
    owned: bool,
    config: EngineConfig,
    busy: Vec<Arc<Busy>>,
    /// What the modules share across the shards of the engine (`env`, `store`, `metrics`).
    pub(crate) shared: Shared,
}

static NEXT_ENGINE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The Lua states of the engines that run on this shard.
    static STATES: RefCell<HashMap<u64, Rc<WorkerState>, FxBuildHasher>> =
        RefCell::new(HashMap::default());
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("engine", &self.engine)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Workers {
    /// Creates a Lua state on every shard of `shards` (or of shards of its own, when `None`)
    /// and waits until they are ready; each shard marks its resumes on its entry of `busy`.
    pub(crate) fn start(
        config: EngineConfig,
        shards: Option<Shards>,
        busy: Vec<Arc<Busy>>,
    ) -> Result<Workers, LuaError> {
        let (shards, owned) = match shards {
            Some(shards) => (shards, false),
            None => (
                Shards::start(config.worker_count(), "wsrelay-lua")
                    .map_err(|e| LuaError::Init(e.to_string()))?,
                true,
            ),
        };
        let workers = Workers {
            engine: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
            shards,
            owned,
            shared: Shared {
                env: Arc::new(EnvStore::from_os(&config.env_readable)),
                stores: Arc::default(),
                metrics: Arc::default(),
                http: Arc::default(),
            },
            config,
            busy,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for index in 0..workers.shards.len() {
            let (engine, config, busy, shared) = (
                workers.engine,
                workers.config.clone(),
                workers.busy[index % workers.busy.len()].clone(),
                workers.shared.clone(),
            );
            let ready = ready_tx.clone();
            workers.shards.run_on(index, move || {
                let created = WorkerState::new(config, busy, shared).map_err(|e| e.to_string());
                let _ = ready.send(created.map(|state| {
                    let state = Rc::new(state);
                    tokio::task::spawn_local(collect_when_quiet(Rc::downgrade(&state)));
                    STATES.with(|states| states.borrow_mut().insert(engine, state));
                }));
            });
        }
        drop(ready_tx);
        for _ in 0..workers.shards.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(LuaError::Init(e)),
                Err(_) => return Err(LuaError::Init("a shard stopped".to_owned())),
            }
        }
        Ok(workers)
    }

    /// The shards the states live on.
    pub(crate) fn shards(&self) -> &Shards {
        &self.shards
    }

    /// Starts `job` on shard `index` as a local task of the engine's state there.
    pub(crate) fn send(&self, index: usize, job: Job) -> Result<(), LuaError> {
        let engine = self.engine;
        let sent = self.shards.run_on(index, move || {
            match STATES.with(|states| states.borrow().get(&engine).cloned()) {
                Some(state) => state.start_job(job),
                // The engine is going away on this shard: dropping the job ends its process
                // (the guard) or its call (the reply).
                None => drop(job),
            }
        });
        if sent {
            Ok(())
        } else {
            Err(LuaError::Stopped)
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if self.owned {
            // Dropping the shards stops their threads and every task on them.
            return;
        }
        let engine = self.engine;
        for index in 0..self.shards.len() {
            self.shards.run_on(index, move || {
                if let Some(state) = STATES.with(|states| states.borrow_mut().remove(&engine)) {
                    state.abort_all();
                }
            });
        }
    }
}

/// A started process's coroutine, run one slice per poll.
type ProcessScope = Scoped<mlua::thread::AsyncThread<MultiValue>>;

/// One compiled entry in this worker's state.
struct EntryCache {
    /// Alive while a caller can still start this code: a function or factory that has not
    /// been replaced, or a call or process that started with it.
    proto: std::sync::Weak<Proto>,
    factory: Function,
    meta: Table,
    /// The method name as a Lua string, made once (every start passes it).
    method: mlua::LuaString,
}

/// The maps below are keyed by counters of this process (engines, entries, tasks; no client
/// picks them) and looked up for every call and process: Fx hashing, not SipHash.
struct WorkerState {
    lua: Lua,
    resumes: Resumes,
    sandbox: Sandbox,
    entries: RefCell<HashMap<u64, Rc<EntryCache>, FxBuildHasher>>,
    config: EngineConfig,
    /// The engine's running tasks on this shard, to end them if the engine goes away while
    /// the shard lives on.
    tasks: RefCell<HashMap<u64, AbortHandle, FxBuildHasher>>,
    next_task: Cell<u64>,
    /// Signals this thread after each time slice of CPU it uses; deleted with the state.
    _slice_timer: crate::raw::SliceTimer,
}

/// The standard libraries a worker's Lua state opens (the sandbox then trims and hardens
/// them).
pub(crate) fn worker_libs() -> StdLib {
    StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::OS
}

impl WorkerState {
    fn new(config: EngineConfig, busy: Arc<Busy>, shared: Shared) -> mlua::Result<WorkerState> {
        let lua = Lua::new_with(worker_libs(), LuaOptions::new())?;
        let sandbox = Sandbox::new(&lua, &config, shared)?;
        crate::preempt::install(&lua, &config)?;
        // This thread's time slices of CPU, which arm the hook of a resume that runs through
        // one (`crate::raw`'s `preempt` module).
        let slice_timer = crate::raw::SliceTimer::start(config.time_slice)
            .map_err(|e| mlua::Error::runtime(format!("the time slice timer: {e}")))?;
        // Through mlua first, so that mlua treats allocations as fallible (see
        // `raw::install_allocator`), then counted by the state's own allocator.
        lua.set_memory_limit(config.worker_memory_limit)?;
        let memory = crate::raw::install_allocator(&lua, config.worker_memory_limit);
        // Generational collection: nearly everything a relayed message allocates (its table,
        // the payload the process builds to answer) dies young; the incremental collector
        // kept re-marking the long-lived processes and modules to free it.
        lua.gc_set_mode(mlua::state::GcMode::Generational(
            mlua::state::GcGenParams::default(),
        ));
        lua.set_app_data(ValueLimit(config.max_value_size));
        crate::modules::channel::set_max_values(config.max_channel_values);
        // Between resumes the state's own limit holds (see `raw::leave`).
        crate::raw::leave(config.worker_memory_limit);
        let resumes = Resumes {
            memory,
            process_memory_limit: config.process_memory_limit,
            worker_memory_limit: config.worker_memory_limit,
            value_limit: config.max_value_size,
            busy,
            hook_interval: config.hook_interval,
        };
        Ok(WorkerState {
            lua,
            resumes,
            sandbox,
            entries: RefCell::new(HashMap::default()),
            config,
            tasks: RefCell::new(HashMap::default()),
            next_task: Cell::new(0),
            _slice_timer: slice_timer,
        })
    }

    /// Runs `job` as a local task of this shard.
    ///
    /// Each kind of job gets a task of its own: one `async` block matching on the job would be
    /// as large as its largest branch, so every idle `process.lua` process (which may live as
    /// long as its client) would carry the room of an HTTP call's future (its request, reply
    /// channel and timeout) for nothing.
    fn start_job(self: Rc<Self>, job: Job) {
        let key = self.next_task.get();
        self.next_task.set(key + 1);
        let state = self.clone();
        let handle = match job {
            Job::Spawn {
                proto,
                ctx,
                guard,
                args,
                ready,
            } => {
                // Started here, not in the task: the context and the arguments are used up
                // now, so the task, which lives as long as the process, keeps only what runs
                // it. Borrowed by the task rather than moved into an inner future, which would
                // hold a second copy.
                let mut started = self.start_process(&proto, ctx, &args);
                drop(args);
                tokio::task::spawn_local(async move {
                    let result = match &mut started {
                        Ok((process, scoped)) => {
                            state.run_process(&proto, process, scoped, ready).await
                        }
                        Err(exit) => std::mem::take(exit),
                    };
                    // The coroutine and the process's state go before its exit is reported.
                    drop(started);
                    guard.exit(result);
                    state.tasks.borrow_mut().remove(&key);
                })
            }
            Job::Call {
                proto,
                node,
                request,
                args,
                reply,
            } => tokio::task::spawn_local(async move {
                state.run_call(proto, node, request, args, reply).await;
                state.tasks.borrow_mut().remove(&key);
            }),
        };
        if !handle.is_finished() {
            self.tasks.borrow_mut().insert(key, handle.abort_handle());
        }
    }

    /// Ends every task of the engine on this shard (their guards report the exits).
    fn abort_all(&self) {
        for (_, task) in self.tasks.borrow_mut().drain() {
            task.abort();
        }
    }

    fn entry(&self, proto: &Arc<Proto>) -> Result<Rc<EntryCache>, String> {
        if let Some(e) = self.entries.borrow().get(&proto.id) {
            return Ok(e.clone());
        }
        // A new version of an entry (hot reload) is the moment to forget the versions nobody
        // can start any more; the processes running them hold their own closures.
        self.entries
            .borrow_mut()
            .retain(|_, cached| cached.proto.strong_count() > 0);
        let chunk = self
            .lua
            .load(wrap_source(&proto.source))
            .set_name(format!("={}", proto.entry))
            .set_mode(mlua::chunk::ChunkMode::Text);
        let factory: Function = chunk.call(()).map_err(|e| e.to_string())?;
        let meta = self
            .sandbox
            .entry_meta(&self.lua, &proto.entry, &proto.modules)
            .map_err(|e| e.to_string())?;
        let Ok(method) = self.lua.create_string(&proto.method) else {
            return Err("out of memory preparing the entry".to_owned());
        };
        let cache = Rc::new(EntryCache {
            proto: Arc::downgrade(proto),
            factory,
            meta,
            method,
        });
        self.entries.borrow_mut().insert(proto.id, cache.clone());
        Ok(cache)
    }

    /// Creates the coroutine of an actor running `proto` with `args`.
    fn start(
        &self,
        proto: &Arc<Proto>,
        actor: &Actor,
        args: &[Value],
    ) -> Result<mlua::thread::AsyncThread<MultiValue>, String> {
        let entry = self.entry(proto)?;
        let lua = &self.lua;
        let build = || -> mlua::Result<_> {
            let env = new_env(lua, &entry.meta)?;
            let sandbox = &self.sandbox;
            let thread = lua.create_thread(sandbox.xpcall.clone())?;
            actor.slice().main_thread.set(thread.to_pointer() as usize);
            let mut call_args = MultiValue::with_capacity(5 + args.len());
            call_args.push_back(LuaValue::Function(sandbox.start.clone()));
            call_args.push_back(LuaValue::Function(sandbox.traceback.clone()));
            call_args.push_back(LuaValue::Function(entry.factory.clone()));
            call_args.push_back(LuaValue::Table(env));
            call_args.push_back(LuaValue::String(entry.method.clone()));
            for arg in args {
                call_args.push_back(to_lua(lua, arg)?);
            }
            thread.into_async::<MultiValue>(call_args)
        };
        build().map_err(|e| e.to_string())
    }

    /// Creates the process's state and its coroutine, ready to run; the error exit if that
    /// fails.
    fn start_process(
        &self,
        proto: &Arc<Proto>,
        ctx: Context,
        args: &[Value],
    ) -> Result<(Rc<ProcState>, ProcessScope), ExitResult> {
        let state = Rc::new(ProcState::new(ctx));
        let actor = Actor::Process(state.clone());
        match self.start(proto, &actor, args) {
            Ok(thread) => Ok((state, Scoped::new(actor, self.resumes.clone(), thread))),
            Err(e) => {
                proto.counters.process_error();
                Err(ExitResult::error(format!("{}: {e}", proto.entry)))
            }
        }
    }

    /// Runs a started process until it returns, fails or is stopped.
    async fn run_process(
        &self,
        proto: &Proto,
        state: &ProcState,
        scoped: &mut ProcessScope,
        ready: Ready,
    ) -> ExitResult {
        let outcome = tokio::select! {
            // A stop request wins over everything: a terminated process runs no further step.
            biased;
            stop = state.ctx.stopped() => Outcome::Stopped(stop),
            outcome = first_wait(scoped, ready) => outcome,
        };
        let result = match outcome {
            Outcome::Done(Ok(results)) => {
                match interpret(&self.lua, &self.sandbox.missing, proto, results) {
                    Ok(value) => ExitResult::normal(value),
                    Err(e) => ExitResult::error(e.to_string()),
                }
            }
            Outcome::Done(Err(e)) => ExitResult::error(format!("{}: {e}", proto.entry)),
            Outcome::Failed(failure) => ExitResult::error(failure),
            Outcome::Stopped(stop) => return stop,
        };
        if result.is_error() {
            proto.counters.process_error();
        }
        result
    }

    async fn run_call(
        &self,
        proto: Arc<Proto>,
        node: Node,
        request: Option<HttpRequest>,
        args: Vec<Value>,
        mut reply: oneshot::Sender<Result<CallOutput, LuaError>>,
    ) {
        let state = Rc::new(CallState::new(node, request));
        let actor = Actor::Call(state.clone());
        let thread = match self.start(&proto, &actor, &args) {
            Ok(t) => t,
            Err(message) => {
                let result = Err(LuaError::Runtime {
                    entry: proto.entry.to_string(),
                    message,
                });
                proto.counters.call(&result);
                let _ = reply.send(result);
                return;
            }
        };
        let timeout: Duration = self.config.call_timeout;
        let scoped = Scoped::new(actor, self.resumes.clone(), thread);
        let outcome = tokio::select! {
            biased;
            // The caller gave up: stop the call.
            () = reply.closed() => return,
            outcome = tokio::time::timeout(timeout, scoped) => outcome,
        };
        let result = match outcome {
            Err(_) => Err(LuaError::Timeout {
                entry: proto.entry.to_string(),
                after: timeout,
            }),
            Ok(Outcome::Done(Ok(results))) => {
                interpret(&self.lua, &self.sandbox.missing, &proto, results).map(|value| {
                    CallOutput {
                        response: state.take_response(),
                        value,
                    }
                })
            }
            Ok(Outcome::Done(Err(e))) => Err(LuaError::Runtime {
                entry: proto.entry.to_string(),
                message: e.to_string(),
            }),
            Ok(Outcome::Failed(message)) => Err(LuaError::Runtime {
                entry: proto.entry.to_string(),
                message,
            }),
            Ok(Outcome::Stopped(stop)) => Err(LuaError::Runtime {
                entry: proto.entry.to_string(),
                message: stop.error_text().unwrap_or("stopped").to_owned(),
            }),
        };
        proto.counters.call(&result);
        let _ = reply.send(result);
    }
}

/// How often the idle collector looks at a state.
const QUIET_TICK: Duration = Duration::from_millis(250);
/// At most this many resumes in a tick (500 a second) count as quiet: a shard answering the
/// heartbeats of several thousand idle connections every 30 s is quiet.
const QUIET_RESUMES: u64 = 125;
/// The heap must have grown by this much since the last full collection (bytes, and
/// an eighth of what was live then) before a quiet tick collects it.
const QUIET_GROWTH: usize = 1 << 20;

/// Runs a full garbage collection of the state when its shard is quiet after the heap grew.
///
/// The state collects generationally: what a burst leaves behind once it is old — the
/// coroutines, environments and responses of the handler calls of a connect storm, which
/// lived through a minor collection during their call — is freed only by a major collection,
/// and Lua starts one only when the heap has doubled since the last. A server that takes a
/// storm of connections and then sits idle would keep that garbage (≈1 KiB per connection in
/// the seed pattern) for good. Collecting when the shard is quiet returns it without pausing
/// busy shards; the pause of a full collection (proportional to the live heap, bounded by
/// `worker_memory_limit`) falls where few resumes wait for it.
async fn collect_when_quiet(state: std::rc::Weak<WorkerState>) {
    let mut live_after_collect = 0usize;
    let mut resumes_then = 0u64;
    loop {
        tokio::time::sleep(QUIET_TICK).await;
        let Some(state) = state.upgrade() else { return };
        let resumes = state.resumes.busy.resumes();
        let quiet = resumes.wrapping_sub(resumes_then) <= QUIET_RESUMES;
        resumes_then = resumes;
        let used = state.resumes.memory.used();
        let grown = used > live_after_collect + live_after_collect / 8 + QUIET_GROWTH;
        if quiet && grown && state.lua.gc_collect().is_ok() {
            live_after_collect = state.resumes.memory.used();
            state.resumes.busy.record_heap(live_after_collect);
            tracing::debug!(
                before = used,
                after = live_after_collect,
                "lua: quiet collection"
            );
        }
    }
}

/// Reads what the coroutine returned (`Sandbox::xpcall`): `true, results...`, `true, missing`
/// (no function to run) or `false, err`.
fn interpret(
    lua: &Lua,
    missing: &Table,
    proto: &Proto,
    results: MultiValue,
) -> Result<Value, LuaError> {
    let mut results = results.into_iter();
    match results.next() {
        Some(LuaValue::Boolean(true)) => {
            let first = results.next().unwrap_or(LuaValue::Nil);
            if matches!(&first, LuaValue::Table(t) if t.to_pointer() == missing.to_pointer()) {
                return Err(LuaError::MethodNotFound {
                    entry: proto.entry.to_string(),
                    method: proto.method.clone(),
                });
            }
            // A value of a type with no payload form (a function) is returned as null; one too
            // big to convert fails the call, as it would fail a send.
            match to_value(lua, &first) {
                Ok(value) => Ok(value),
                Err(ConvertError::Unsupported(_)) => Ok(Value::Null),
                Err(e @ ConvertError::TooBig(_)) => Err(LuaError::Runtime {
                    entry: proto.entry.to_string(),
                    message: format!("return value: {e}"),
                }),
            }
        }
        _ => {
            let err = results.next().unwrap_or(LuaValue::Nil);
            let message = match err {
                LuaValue::String(s) => s.to_string_lossy(),
                LuaValue::Nil => method_not_found(&proto.entry, &proto.method),
                other => other
                    .to_string()
                    .unwrap_or_else(|_| other.type_name().to_owned()),
            };
            Err(LuaError::Runtime {
                entry: proto.entry.to_string(),
                message,
            })
        }
    }
}

/// Runs a process's resumes, setting `ready` when the first one ends in a wait, or the
/// process ends (see `SpawnOptions::notify_ready`): a preempted resume, or one that asks to
/// run again, has not set the process up yet.
async fn first_wait(scoped: &mut ProcessScope, ready: Ready) -> <ProcessScope as Future>::Output {
    let mut ready = Some(ready);
    std::future::poll_fn(|cx| {
        let poll = Pin::new(&mut *scoped).poll(cx);
        if poll.is_ready() || scoped.waiting() {
            if let Some(ready) = ready.take() {
                ready.set();
            }
        }
        poll
    })
    .await
}
