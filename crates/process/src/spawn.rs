//! Spawning: making a process routable and monitorable, applying the spawn options, and
//! starting its body (a Rust future, a registry entry's factory, or a driver of its own).
//!
//! The order is the guarantee of `docs/spec.md §2`: the process is in the table before
//! anything else, its name, monitor and link are in place before its body runs, and a spawn
//! that fails half-way ends the half-made process through the normal exit protocol.

use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::watch;

use crate::cell::Cell;
use crate::{Context, ExitGuard, ExitResult, Node, Pid, SpawnError, Value};

/// Starts processes for a registry entry (a `process.lua` entry, a Rust process).
///
/// The node has already made the process routable and applied the spawn options (name,
/// monitor, link) when [`start`](ProcessFactory::start) runs, so nothing can be missed.
pub trait ProcessFactory: Send + Sync + fmt::Debug + 'static {
    /// Starts the body of `process` with `args`.
    ///
    /// # Errors
    ///
    /// A message saying why it cannot start; the process then exits with that error.
    fn start(&self, process: NewProcess, args: Vec<Value>) -> Result<(), String>;
}

/// How to spawn a process.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    parent: Option<Pid>,
    monitor: bool,
    link: bool,
    name: Option<String>,
    ready: Option<watch::Sender<bool>>,
}

impl SpawnOptions {
    /// Default options: no parent relation, no name.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// The parent monitors the new process (`spawn_monitored`).
    pub fn monitored_by(mut self, parent: Pid) -> SpawnOptions {
        self.parent = Some(parent);
        self.monitor = true;
        self
    }

    /// The parent is linked to the new process (`spawn_linked`).
    pub fn linked_to(mut self, parent: Pid) -> SpawnOptions {
        self.parent = Some(parent);
        self.link = true;
        self
    }

    /// Registers the new process under `name` before it runs.
    pub fn named(mut self, name: impl Into<String>) -> SpawnOptions {
        self.name = Some(name.into());
        self
    }

    /// Sets `ready` to `true` once the new process is ready: its body has come to its first
    /// wait (for a message, a timer, anything) or has ended. What the body does before it
    /// first waits (registering a name, joining groups) is done by then, so a supervisor can
    /// wait for it before it lets clients in. The sender is dropped unset when the process
    /// ends before its body runs, or when its host cannot tell (a host that drives the body
    /// itself and does not use [`NewProcess::take_ready`]); receivers see it closed.
    pub fn notify_ready(mut self, ready: watch::Sender<bool>) -> SpawnOptions {
        self.ready = Some(ready);
        self
    }
}

/// A process's [`SpawnOptions::notify_ready`] signal (or none), for a host that drives the
/// process's body itself ([`NewProcess::take_ready`]).
#[derive(Debug, Default)]
pub struct Ready(Option<watch::Sender<bool>>);

impl Ready {
    /// Sets the signal: the body has come to its first wait, or ended.
    pub fn set(self) {
        if let Some(ready) = self.0 {
            ready.send_replace(true);
        }
    }

    /// Whether a spawner waits for the signal (a host can skip its own bookkeeping if not).
    pub fn is_wanted(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `body`, setting the signal when its first poll returns: a Rust body has then run
    /// to its first `.await` that waits (or to its end).
    pub async fn after_first_poll<F: Future>(self, body: F) -> F::Output {
        let mut body = pin!(body);
        let mut ready = Some(self);
        poll_fn(move |cx| {
            let poll = body.as_mut().poll(cx);
            if let Some(ready) = ready.take() {
                ready.set();
            }
            poll
        })
        .await
    }
}

impl Node {
    /// Registers the factory that [`spawn_entry`](Node::spawn_entry) uses for `entry`.
    pub fn register_factory(&self, entry: &str, factory: Arc<dyn ProcessFactory>) {
        self.inner
            .factories
            .write()
            .insert(entry.to_owned(), factory);
    }

    /// Removes the factory of `entry` (its entry left the app on a reload): spawning it fails
    /// afterwards, as for an unknown entry; processes it started run on. Returns whether one
    /// was registered.
    pub fn unregister_factory(&self, entry: &str) -> bool {
        self.inner.factories.write().remove(entry).is_some()
    }

    /// Whether a factory is registered for `entry`.
    pub fn has_factory(&self, entry: &str) -> bool {
        self.inner.factories.read().contains_key(entry)
    }

    /// Creates a process on `host` without running anything yet: the PID is routable and
    /// monitorable when this returns, and the options are applied.
    ///
    /// # Errors
    ///
    /// Unknown or full host, name taken, parent gone, node shutting down.
    pub fn attach(&self, host: &str, mut options: SpawnOptions) -> Result<NewProcess, SpawnError> {
        if self.is_stopping() {
            return Err(SpawnError::ShuttingDown);
        }
        let host = self.inner.hosts.get(host)?;
        host.reserve()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let pid = Pid::new(self.inner.name.clone(), host.id.clone(), id);
        let cell = Arc::new(Cell::new(pid, host));
        self.inner.table.insert(cell.clone());
        let process = NewProcess {
            ctx: Context::new(self.clone(), cell),
            ready: Ready(options.ready.take()),
        };
        // `shutdown` may have walked the table between the first check and the insert.
        if self.is_stopping() {
            return Err(process.abort(SpawnError::ShuttingDown));
        }
        process.apply(options)?;
        Ok(process)
    }

    /// Spawns a Rust process running `body` on `host` and returns its PID once it is routable
    /// and monitorable.
    ///
    /// The body's output becomes the exit result (`()`, a [`Value`] or a `Result`). A panic in
    /// the body ends only this process, with an error exit.
    ///
    /// # Errors
    ///
    /// As [`attach`](Node::attach).
    ///
    /// # Panics
    ///
    /// If the host has no runtime of its own and this is called outside a Tokio runtime.
    pub fn spawn<F, Fut>(
        &self,
        host: &str,
        options: SpawnOptions,
        body: F,
    ) -> Result<Pid, SpawnError>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Into<ExitResult>,
    {
        Ok(self.attach(host, options)?.run(body))
    }

    /// Spawns a process of the registry entry `entry` through its factory.
    ///
    /// # Errors
    ///
    /// [`SpawnError::UnknownEntry`] when no factory is registered, or as [`attach`](Node::attach).
    pub fn spawn_entry(
        &self,
        entry: &str,
        host: &str,
        options: SpawnOptions,
        args: Vec<Value>,
    ) -> Result<Pid, SpawnError> {
        let factory = self
            .inner
            .factories
            .read()
            .get(entry)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownEntry(entry.to_owned()))?;
        let process = self.attach(host, options)?;
        let pid = process.pid().clone();
        factory
            .start(process, args)
            .map_err(|message| SpawnError::Factory {
                entry: entry.to_owned(),
                message,
            })?;
        Ok(pid)
    }
}

/// A process that exists (routable, monitorable) but whose body has not started.
///
/// Either [`run`](NewProcess::run) a future as its body, or [`detach`](NewProcess::detach) it
/// to drive it yourself (the Lua engine does, to run many processes in one Lua state).
#[derive(Debug)]
#[must_use = "a new process exits with an error if it is dropped without running"]
pub struct NewProcess {
    ctx: Context,
    ready: Ready,
}

impl NewProcess {
    /// The PID of the new process.
    pub fn pid(&self) -> &Pid {
        self.ctx.pid()
    }

    /// The spawner's [`SpawnOptions::notify_ready`] signal, for a host that drives the
    /// process itself ([`detach`](NewProcess::detach)): it sets it when the body first waits
    /// ([`Ready::set`], or [`Ready::after_first_poll`] for a future). [`run`](NewProcess::run)
    /// does that itself.
    pub fn take_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    /// Applies the spawn options; on failure the process has exited.
    fn apply(&self, options: SpawnOptions) -> Result<(), SpawnError> {
        let node = self.ctx.node();
        if let Some(name) = &options.name {
            if let Err(e) = node.register(name, self.pid()) {
                return Err(self.abort(e.into()));
            }
        }
        let Some(parent) = &options.parent else {
            return Ok(());
        };
        let parent_gone = || SpawnError::ParentGone(parent.to_string());
        if options.monitor {
            let monitored = node
                .cell(parent)
                .is_some_and(|p| node.monitor(&p, self.pid()).is_ok());
            if !monitored {
                return Err(self.abort(parent_gone()));
            }
        }
        if options.link && node.link(&self.ctx.cell, parent).is_err() {
            return Err(self.abort(parent_gone()));
        }
        Ok(())
    }

    /// Ends the half-made process with `error` as its exit, and returns `error`.
    fn abort(&self, error: SpawnError) -> SpawnError {
        self.ctx
            .node()
            .finish(&self.ctx.cell, ExitResult::error(&error));
        error
    }

    /// Runs `body` as the process and returns the PID: on its host's runtime if it has one,
    /// else on a shard of the node if it has shards (see [`Node::set_shards`]), else on the
    /// caller's runtime.
    ///
    /// # Panics
    ///
    /// If neither the host nor the node has a runtime and this is called outside a Tokio
    /// runtime.
    pub fn run<F, Fut>(mut self, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Into<ExitResult>,
    {
        let pid = self.pid().clone();
        let ready = std::mem::take(&mut self.ready);
        let (ctx, guard) = self.detach();
        let cell = ctx.cell.clone();
        let runtime = cell.host.runtime.clone().or_else(|| {
            let shards = ctx.node().shards()?;
            Some(shards.handle(shards.place()).clone())
        });
        let fut = ready.after_first_poll(AssertUnwindSafe(body(ctx)).catch_unwind());
        let task = async move {
            let result = tokio::select! {
                // Kill first: a terminated process must not run another step.
                biased;
                killed = cell.wait_killed() => killed,
                done = fut => match done {
                    Ok(output) => output.into(),
                    Err(panic) => ExitResult::error(format!("panic: {}", panic_message(&*panic))),
                },
            };
            guard.exit(result);
        };
        match runtime {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        pid
    }

    /// Hands the process to its caller: a [`Context`] to act as it, and an [`ExitGuard`]
    /// that ends it (on [`ExitGuard::exit`], or with an error when dropped).
    pub fn detach(self) -> (Context, ExitGuard) {
        let guard = ExitGuard::new(self.ctx.clone());
        (self.ctx, guard)
    }
}

/// The text of a panic payload (a `&str` or a `String`, as `panic!` makes them).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
