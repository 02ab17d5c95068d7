//! Worker threads: each owns one Lua state and runs many Lua processes as coroutines.
//!
//! A worker is an OS thread with a current-thread Tokio runtime and a `LocalSet`. Jobs arrive
//! on a channel: *spawn* (a detached process: its `Context` and `ExitGuard`) and *call* (a
//! function call with a reply channel). Each becomes a local task that resumes the actor's
//! coroutine; when the coroutine blocks (`inbox:receive()`, `channel.select`, `time.sleep`)
//! the task is pending and costs no thread. The instruction hook ([`crate::preempt`]) yields
//! long-running coroutines so that the others get their turn.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue};
use tokio::sync::{mpsc, oneshot};
use wsrelay_process::{Context, ExitGuard, ExitResult, Node, Value};

use crate::actor::{Actor, CallState, Outcome, ProcState, Scoped};
use crate::config::EngineConfig;
use crate::convert::{to_lua, to_value};
use crate::error::{method_not_found, LuaError};
use crate::http_types::{HttpRequest, HttpResponse};
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
    },
    Call {
        proto: Arc<Proto>,
        node: Node,
        request: Option<HttpRequest>,
        args: Vec<Value>,
        reply: oneshot::Sender<Result<CallOutput, LuaError>>,
    },
}

/// The handle of a worker thread.
#[derive(Debug)]
pub(crate) struct Worker {
    tx: mpsc::UnboundedSender<Job>,
}

impl Worker {
    /// Starts a worker thread and waits until its Lua state is ready.
    pub(crate) fn start(index: usize, config: EngineConfig) -> Result<Worker, LuaError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("wsrelay-lua-{index}"))
            .spawn(move || run(config, rx, ready_tx))
            .map_err(|e| LuaError::Init(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Worker { tx }),
            Ok(Err(e)) => Err(LuaError::Init(e)),
            Err(_) => Err(LuaError::Init("worker thread exited".to_owned())),
        }
    }

    /// Hands `job` to the worker; gives it back if the worker has stopped.
    pub(crate) fn send(&self, job: Job) -> Result<(), Box<Job>> {
        self.tx.send(job).map_err(|e| Box::new(e.0))
    }
}

fn run(
    config: EngineConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let state = match WorkerState::new(config) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        while let Some(job) = rx.recv().await {
            let state = state.clone();
            match job {
                Job::Spawn {
                    proto,
                    ctx,
                    guard,
                    args,
                } => {
                    tokio::task::spawn_local(async move {
                        let result = state.run_process(&proto, ctx, args).await;
                        guard.exit(result);
                    });
                }
                Job::Call {
                    proto,
                    node,
                    request,
                    args,
                    reply,
                } => {
                    tokio::task::spawn_local(async move {
                        state.run_call(proto, node, request, args, reply).await;
                    });
                }
            }
        }
    });
    // Dropping the LocalSet drops the remaining processes: their guards end them.
    drop(local);
}

/// One compiled entry in this worker's state.
struct EntryCache {
    factory: Function,
    meta: Table,
}

struct WorkerState {
    lua: Lua,
    sandbox: Sandbox,
    entries: RefCell<HashMap<u64, Rc<EntryCache>>>,
    config: EngineConfig,
}

impl WorkerState {
    fn new(config: EngineConfig) -> mlua::Result<WorkerState> {
        let libs = StdLib::TABLE
            | StdLib::STRING
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::new())?;
        let sandbox = Sandbox::new(&lua)?;
        crate::preempt::install(&lua, &config)?;
        lua.set_memory_limit(config.worker_memory_limit)?;
        Ok(WorkerState {
            lua,
            sandbox,
            entries: RefCell::new(HashMap::new()),
            config,
        })
    }

    fn entry(&self, proto: &Proto) -> Result<Rc<EntryCache>, String> {
        if let Some(e) = self.entries.borrow().get(&proto.id) {
            return Ok(e.clone());
        }
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
        let cache = Rc::new(EntryCache { factory, meta });
        self.entries.borrow_mut().insert(proto.id, cache.clone());
        Ok(cache)
    }

    /// Creates the coroutine of an actor running `proto` with `args`.
    fn start(
        &self,
        proto: &Proto,
        actor: &Actor,
        args: &[Value],
    ) -> Result<mlua::thread::AsyncThread<MultiValue>, String> {
        let entry = self.entry(proto)?;
        let lua = &self.lua;
        let build = || -> mlua::Result<_> {
            let env = new_env(lua, &entry.meta)?;
            let thread = lua.create_thread(self.sandbox.bootstrap.clone())?;
            actor.slice().main_thread.set(thread.to_pointer() as usize);
            let mut call_args = MultiValue::with_capacity(4 + args.len());
            call_args.push_back(LuaValue::Function(entry.factory.clone()));
            call_args.push_back(LuaValue::Table(env));
            call_args.push_back(LuaValue::String(lua.create_string(&proto.method)?));
            call_args.push_back(LuaValue::String(lua.create_string(&*proto.entry)?));
            for arg in args {
                call_args.push_back(to_lua(lua, arg)?);
            }
            thread.into_async::<MultiValue>(call_args)
        };
        build().map_err(|e| e.to_string())
    }

    async fn run_process(&self, proto: &Proto, ctx: Context, args: Vec<Value>) -> ExitResult {
        let state = Rc::new(ProcState::new(ctx));
        let actor = Actor::Process(state.clone());
        let thread = match self.start(proto, &actor, &args) {
            Ok(t) => t,
            Err(e) => {
                proto.counters.process_error();
                return ExitResult::error(format!("{}: {e}", proto.entry));
            }
        };
        drop(args);
        let scoped = Scoped::new(actor, self.lua.clone(), thread);
        let outcome = tokio::select! {
            // A stop request wins over everything: a terminated process runs no further step.
            biased;
            stop = state.ctx.stopped() => Outcome::Stopped(stop),
            outcome = scoped => outcome,
        };
        let result = match outcome {
            Outcome::Done(Ok(results)) => match interpret(proto, results) {
                Ok(value) => ExitResult::normal(value),
                Err(e) => ExitResult::error(e.to_string()),
            },
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
        let state = Rc::new(CallState {
            node,
            request,
            response: RefCell::new(HttpResponse::default()),
            slice: Default::default(),
        });
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
        let scoped = Scoped::new(actor, self.lua.clone(), thread);
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
            Ok(Outcome::Done(Ok(results))) => interpret(&proto, results).map(|value| CallOutput {
                response: state.response.borrow().clone(),
                value,
            }),
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

/// Reads what the bootstrap returned: `true, results...` or `false, err[, "method"]`.
fn interpret(proto: &Proto, results: MultiValue) -> Result<Value, LuaError> {
    let mut results = results.into_iter();
    match results.next() {
        Some(LuaValue::Boolean(true)) => {
            let first = results.next().unwrap_or(LuaValue::Nil);
            Ok(to_value(&first).unwrap_or(Value::Null))
        }
        _ => {
            let err = results.next().unwrap_or(LuaValue::Nil);
            let kind = results.next();
            if matches!(&kind, Some(LuaValue::String(s)) if s == "method") {
                return Err(LuaError::MethodNotFound {
                    entry: proto.entry.to_string(),
                    method: proto.method.clone(),
                });
            }
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
