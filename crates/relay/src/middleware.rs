//! The `websocket_relay` middleware: docs/spec.md §3 from request to `101`.
//!
//! `RelayMiddleware::call` and `RelayMiddleware::relay` read as the steps of docs/spec.md §3; each step is a function that returns a
//! [`RelayRefusal`] when the request stops there, and the refusal is answered, counted and
//! logged in one place. A target the handler named but that will get no connection is told
//! so with `ws.leave` `not_upgraded` (docs/spec.md §3.3), so a target that exits on `ws.leave` never
//! lingers, whatever went wrong after the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{header, HeaderValue};
use tokio::task::JoinHandle;
use wsrelay_http::{
    BoxFuture, ConnectInfo, Middleware, Next, Request, Response, ResponseBody, Shutdown,
};
use wsrelay_process::{
    Context, ExitGuard, ExitResult, HostConfig, Map, Message, NewProcess, Node, Pid, SendError,
    SpawnError, SpawnOptions, Value,
};
use wsrelay_ws::{Handshake, PendingUpgrade};

use crate::connection::Connection;
use crate::events::{NotUpgraded, LEAVE};
use crate::header::{RelayTarget, SettingsError};
use crate::limits::{Admission, Permit};
use crate::negotiation;
use crate::options::RelayOptions;
use crate::refusal::RelayRefusal;
use crate::stats::RelayStats;
use crate::table::ConnectionInfo;
use crate::Relay;

/// The response header a handler sets to ask for a relay.
pub const RELAY_HEADER: &str = "x-ws-relay";

/// The middleware of one router, with that router's options.
#[derive(Debug, Clone)]
pub(crate) struct RelayMiddleware {
    pub(crate) relay: Relay,
    pub(crate) options: Arc<RelayOptions>,
    pub(crate) admission: Arc<Admission>,
}

impl Middleware for RelayMiddleware {
    /// Runs the request in the caller's task: no task of its own per request (a task is a
    /// cell the request's whole future is moved into, and a join handle to wait on). The
    /// guarantee such a task gave, that a handler which spawned a target has its answer seen
    /// even when hyper drops the request's future because the client went away, is kept by
    /// [`Unanswered`], which moves an unfinished handler onto a task only then.
    fn call(&self, mut req: Request, next: Next) -> BoxFuture<Response> {
        let asked_to_upgrade = wsrelay_ws::asks_for_websocket(&req);
        match self.before_handler(&mut req, asked_to_upgrade) {
            Ok((permit, upgrade)) => {
                let place = Place::of(&req);
                let handler = next.run(req);
                Box::pin(
                    self.clone()
                        .relay(handler, permit, upgrade, place, asked_to_upgrade),
                )
            }
            Err(refusal) => Box::pin(std::future::ready(
                refusal.answer(&self.relay, asked_to_upgrade),
            )),
        }
    }
}

/// The handler's answer, awaited in the request's task. Dropped before the answer came
/// (hyper drops a request's future when its client goes away), it finishes the handler on a
/// task of its own: a handler that has spawned a target by then must still have its answer
/// seen, so that the target gets its `ws.leave` (docs/spec.md §3.3). The request keeps its
/// pool slot until that answer, as a client that stayed would.
struct Unanswered<'a> {
    route: &'a RelayMiddleware,
    shutdown: Option<&'a Shutdown>,
    /// `None` once the handler answered, and while it is being polled: a handler that
    /// panics is not finished on a task.
    pending: Option<Pending>,
}

/// A handler that has not answered yet, and the request's pool slot.
struct Pending {
    handler: BoxFuture<Response>,
    permit: Permit,
}

impl<'a> Unanswered<'a> {
    fn new(
        route: &'a RelayMiddleware,
        shutdown: Option<&'a Shutdown>,
        handler: BoxFuture<Response>,
        permit: Permit,
    ) -> Unanswered<'a> {
        Unanswered {
            route,
            shutdown,
            pending: Some(Pending { handler, permit }),
        }
    }
}

impl Future for Unanswered<'_> {
    type Output = (Response, Permit);

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // Polled again after its answer (a contract violation) it stays pending.
        let Some(Pending {
            mut handler,
            permit,
        }) = self.pending.take()
        else {
            return Poll::Pending;
        };
        match handler.as_mut().poll(cx) {
            Poll::Ready(res) => Poll::Ready((res, permit)),
            Poll::Pending => {
                self.pending = Some(Pending { handler, permit });
                Poll::Pending
            }
        }
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let Some(Pending { handler, permit }) = self.pending.take() else {
            return;
        };
        // Dropped outside a runtime (a runtime being torn down by its owner), there is no
        // task to finish the handler on, and spawning would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let route = self.route.clone();
        drop(spawn(self.shutdown.cloned(), async move {
            let res = handler.await;
            route.release(&res);
            drop(permit);
        }));
    }
}

/// What the connection needs from the request once the handler has taken it.
struct Place {
    /// The host of the connection's process: the server's id (docs/spec.md §2).
    host: String,
    /// The gateway's shutdown, which the connection joins.
    shutdown: Option<Shutdown>,
    /// The client's IP address as the gateway determined it (docs/spec.md §13).
    remote_addr: Option<Arc<str>>,
    /// The request path, shown to operators as the connection's route.
    route: String,
}

impl RelayMiddleware {
    /// docs/spec.md §3 from the handler on, for a request admitted by
    /// [`before_handler`](Self::before_handler); a refusal is answered here.
    ///
    /// Started with the handler's future rather than the request: every `async fn` keeps a
    /// copy of what it was called with, and the whole future is moved into its box.
    async fn relay(
        self,
        handler: BoxFuture<Response>,
        permit: Permit,
        upgrade: Option<Handshake>,
        place: Place,
        asked_to_upgrade: bool,
    ) -> Response {
        // 2. The handler; without `X-WS-Relay` its response passes through untouched.
        let (res, permit) = Unanswered::new(&self, place.shutdown.as_ref(), handler, permit).await;
        self.after_handler(res, upgrade, permit, place)
            .unwrap_or_else(|refusal| refusal.answer(&self.relay, asked_to_upgrade))
    }

    /// 1. Before the handler: whatever can be refused is refused while nothing exists.
    fn before_handler(
        &self,
        req: &mut Request,
        asked_to_upgrade: bool,
    ) -> Result<(Permit, Option<Handshake>), RelayRefusal> {
        self.check_origin(req)?;
        let permit = self.admit(req)?;
        let upgrade = self.take_upgrade(req, asked_to_upgrade)?;
        Ok((permit, upgrade))
    }

    /// 3.-6. After the handler: connect, or tell the target that no connection will come.
    fn after_handler(
        &self,
        mut res: Response,
        upgrade: Option<Handshake>,
        permit: Permit,
        place: Place,
    ) -> Result<Response, RelayRefusal> {
        let Some(header) = res.headers_mut().remove(RELAY_HEADER) else {
            return Ok(res);
        };
        let settings = self.parse_header(&header)?;
        self.connect(&settings, res.body(), upgrade, permit, place)
            .inspect_err(|refusal| {
                if refusal.leaves_a_target_waiting() {
                    self.turn_away(&settings.target, &settings.metadata);
                }
            })
    }

    /// docs/spec.md §3.1, §5: the origin of any request that carries `Origin`.
    fn check_origin(&self, req: &Request) -> Result<(), RelayRefusal> {
        let listener = connect_info(req).map(ConnectInfo::local_addr);
        Ok(self
            .options
            .origins
            .check_headers(req.headers(), listener)?)
    }

    /// docs/spec.md §3.1: the admission limits, for every request on the route. The permit is a
    /// slot of the route's pool: a connection keeps it, any other request frees it with its
    /// answer. The client is the one the gateway determined: behind a trusted proxy, the
    /// address it reports (docs/spec.md §13), so clients behind one balancer are counted
    /// apart.
    fn admit(&self, req: &Request) -> Result<Permit, RelayRefusal> {
        let client = connect_info(req).map(|info| info.remote_addr().ip());
        Ok(self.admission.admit(client)?)
    }

    /// docs/spec.md §3.1: a request that asks to upgrade must be a valid upgrade (`400`/`405`/`426`).
    fn take_upgrade(
        &self,
        req: &mut Request,
        asked_to_upgrade: bool,
    ) -> Result<Option<Handshake>, RelayRefusal> {
        if !asked_to_upgrade {
            return Ok(None);
        }
        let config = self.options.ws_config();
        Ok(Some(wsrelay_ws::handshake(req, config)?))
    }

    /// docs/spec.md §3.4. A target named by a header that is invalid otherwise still gets
    /// `ws.leave` `not_upgraded`: the handler may have spawned it for this request.
    fn parse_header(&self, header: &HeaderValue) -> Result<RelayTarget, RelayRefusal> {
        RelayTarget::from_header(header.as_bytes()).map_err(|error| {
            if let Some((target, metadata)) = RelayTarget::named_in(header.as_bytes()) {
                self.turn_away(&target, &metadata);
            }
            RelayRefusal::BadHeader(error)
        })
    }

    /// docs/spec.md §3.3, §3.5, §3.6, §13: a relay needs an empty body, an upgrade request,
    /// a subprotocol the client offered (if one is named), a live target and a process for
    /// the connection.
    fn connect(
        &self,
        settings: &RelayTarget,
        body: &ResponseBody,
        upgrade: Option<Handshake>,
        permit: Permit,
        place: Place,
    ) -> Result<Response, RelayRefusal> {
        if !body.is_known_empty() {
            return Err(RelayRefusal::BodyWithRelay);
        }
        let handshake = upgrade.ok_or(RelayRefusal::NotUpgraded)?;
        let protocol = negotiation::choose_protocol(
            handshake.request(),
            settings.protocol.as_deref(),
            &self.options.subprotocols,
        )
        .map(str::to_owned);
        let (switching, pending) = handshake.accept::<ResponseBody>(protocol.as_deref())?;
        let settings = &RelayTarget {
            protocol,
            ..settings.clone()
        };
        let node = self.relay.node();
        let target = resolve_alive(node, &settings.target)?;
        let (ctx, guard) = attach(node, &place.host)
            .map_err(RelayRefusal::NoProcess)?
            .detach();
        if ctx.monitor(&target).is_err() {
            return Err(RelayRefusal::TargetDown(target.to_string()));
        }
        let info = Arc::new(ConnectionInfo::new(
            place.remote_addr,
            &place.route,
            target.clone(),
        ));
        // Listed from the 101 on: a client that has its answer is in the operators' table.
        let listed = Listed::new(self.relay.stats(), ctx.pid(), &info);
        let joining = Box::new(Joining {
            ctx,
            info,
            listed,
            target,
            settings: settings.clone(),
            options: self.options.clone(),
            stats: self.relay.stats().clone(),
            pending: Some(pending),
            guard,
            permit,
        });
        drop(spawn(place.shutdown, joining.run()));
        self.relay
            .stats()
            .upgrades_ok
            .fetch_add(1, Ordering::Relaxed);
        Ok(with_server_header(switching))
    }

    /// The answer of a handler whose client left before it came: a target it names will get
    /// no connection (docs/spec.md §3.3).
    fn release(&self, res: &Response) {
        let Some(header) = res.headers().get(RELAY_HEADER) else {
            return;
        };
        // An invalid header's target was told by `parse_header` already.
        if let Ok(settings) = self.parse_header(header) {
            self.turn_away(&settings.target, &settings.metadata);
        }
    }

    /// Tells the target `target` (PID or name) that the request that named it will not
    /// become a connection.
    fn turn_away(&self, target: &str, metadata: &Map) {
        if let Ok(pid) = self.relay.node().resolve(target) {
            not_upgraded(self.relay.node(), self.relay.stats(), &pid, metadata);
        }
    }
}

impl Place {
    fn of(req: &Request) -> Place {
        Place {
            host: connect_info(req)
                .map_or("wsrelay:gateway", ConnectInfo::server_id)
                .to_owned(),
            shutdown: req.extensions().get::<Shutdown>().cloned(),
            remote_addr: connect_info(req).map(|info| info.remote_addr().ip().to_string().into()),
            route: req.uri().path().to_owned(),
        }
    }
}

fn connect_info(req: &Request) -> Option<&ConnectInfo> {
    req.extensions().get::<ConnectInfo>()
}

/// docs/spec.md §3.5: the target named must be alive now (`503`); malformed PID text is a bad
/// header (`500`).
fn resolve_alive(node: &Node, target: &str) -> Result<Pid, RelayRefusal> {
    match node.resolve(target) {
        // The target's own PID rather than the one just parsed from the header: every
        // connection to a shared target then holds one more reference to it, not a copy.
        Ok(pid) if node.is_alive(&pid) => {
            Ok(node.process_ref(&pid).map_or(pid, |r| r.pid().clone()))
        }
        Ok(pid) => Err(RelayRefusal::TargetDown(pid.to_string())),
        Err(SendError::BadDestination(text, problem)) => {
            Err(RelayRefusal::BadHeader(SettingsError::Field {
                field: "target_pid",
                problem: format!("{text:?}: {problem}"),
            }))
        }
        Err(_) => Err(RelayRefusal::TargetDown(target.to_owned())),
    }
}

/// The connection's process, on the server's host (created on first use).
fn attach(node: &Node, host: &str) -> Result<NewProcess, SpawnError> {
    match node.attach(host, SpawnOptions::new()) {
        Err(SpawnError::UnknownHost(_)) => {
            node.add_host(host, HostConfig::default());
            node.attach(host, SpawnOptions::new())
        }
        other => other,
    }
}

/// A connection between its `101` and the moment hyper hands the socket over.
struct Joining {
    ctx: Context,
    info: Arc<ConnectionInfo>,
    listed: Listed,
    target: Pid,
    settings: RelayTarget,
    options: Arc<RelayOptions>,
    stats: Arc<RelayStats>,
    /// Taken when the wait for the socket starts.
    pending: Option<PendingUpgrade>,
    guard: ExitGuard,
    /// The pool slot, freed when the connection ends.
    permit: Permit,
}

impl Joining {
    /// Runs the connection once the socket is there. A client that leaves before that
    /// never joined: its target gets `ws.leave` `not_upgraded` (docs/spec.md §3.3), not the leave
    /// of a connection it never heard of.
    ///
    /// Two steps, each its own future: every idle connection's task holds this future, and
    /// an `async fn` keeps what it moved out of for as long as the scope that holds it. The
    /// join's future ends before the connection's starts, and neither keeps more than a box
    /// and what it awaits, so the task's cell stays small (docs/OPERATIONS.md, "Memory per
    /// connection").
    async fn run(self: Box<Self>) {
        if let Some(connection) = self.join().await {
            connection.run().await;
        }
    }

    /// Waits for the socket and makes the connection; `None` when the client left first.
    /// The joining state stays in its box until the socket is there (then it is freed), so
    /// the wait holds a pointer and the upgrade's future.
    async fn join(mut self: Box<Self>) -> Option<Box<Connection>> {
        // A statement of its own: a temporary of the `await`'s statement would stay in the
        // future.
        let pending = self.pending.take()?;
        let upgraded = pending.into_connection().await;
        let Joining {
            ctx,
            info,
            listed,
            target,
            settings,
            options,
            stats,
            pending: _,
            guard,
            permit,
        } = *self;
        match upgraded {
            Ok(ws) => {
                // The connection removes itself from the table when it ends.
                listed.disarm();
                let connection = Connection::new(ctx, ws, target, settings, options, stats, info);
                Some(Box::new(connection.holding(permit, guard)))
            }
            Err(e) => {
                not_upgraded(ctx.node(), &stats, &target, &settings.metadata);
                guard.exit(ExitResult::error_with_value("connection_lost", e));
                None
            }
        }
    }
}

/// A connection's entry in the relay's table until the connection itself takes it over;
/// dropped before that (the client left before the upgrade, the task was dropped), it
/// removes the entry.
struct Listed {
    stats: Arc<RelayStats>,
    pid: Option<Pid>,
}

impl Listed {
    fn new(stats: &Arc<RelayStats>, pid: &Pid, info: &Arc<ConnectionInfo>) -> Listed {
        stats.table.insert(pid, info.clone());
        Listed {
            stats: stats.clone(),
            pid: Some(pid.clone()),
        }
    }

    fn disarm(mut self) {
        self.pid = None;
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(pid) = &self.pid {
            self.stats.table.remove(pid);
        }
    }
}

/// Spawns on the gateway's tracker, so that shutdown waits for the task. The task stays in
/// the caller's span, so an embedding app's request span is the parent of the connection's
/// events.
fn spawn<T: Send + 'static>(
    shutdown: Option<Shutdown>,
    task: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    let task = tracing::Instrument::in_current_span(task);
    match shutdown {
        Some(shutdown) => shutdown.tracker().spawn(task),
        None => tokio::spawn(task),
    }
}

/// Sends `target` the `ws.leave` of a request that never became a connection.
fn not_upgraded(node: &Node, stats: &RelayStats, target: &Pid, metadata: &Map) {
    let leave = NotUpgraded {
        metadata: Arc::new(metadata.clone()),
    };
    let msg = Message::new(None, LEAVE, Value::Opaque(Arc::new(leave)));
    // A target that is gone needs no notice.
    if node.send(target, msg).is_ok() {
        stats.not_upgraded.fetch_add(1, Ordering::Relaxed);
    }
}

fn with_server_header(mut switching: Response) -> Response {
    switching
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("wsrelay"));
    switching
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, R, F: FnOnce(A) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every request through the relay holds this future, boxed: it is moved into the box
    /// and each copy of the request in it is moved on (1,512 B when it was three nested
    /// `async fn`s).
    #[test]
    fn a_request_future_is_at_most_640_bytes() {
        fn future_size<A, B, C, D, E, G, R, F: FnOnce(A, B, C, D, E, G) -> R>(_: &F) -> usize {
            std::mem::size_of::<R>()
        }
        let size = future_size(&super::RelayMiddleware::relay);
        assert!(size <= 640, "the request's future is {size} B");
    }

    /// A handler dropped unanswered outside any runtime (one being torn down) cannot be
    /// finished on a task: it is dropped with its pool slot, and nothing panics.
    #[test]
    fn an_unanswered_handler_dropped_outside_a_runtime_is_dropped() {
        use std::sync::Arc;

        let options = crate::RelayOptions::default();
        let route = super::RelayMiddleware {
            relay: crate::Relay::new(wsrelay_process::Node::new()),
            admission: Arc::new(crate::limits::Admission::new(options.limits)),
            options: Arc::new(options),
        };
        let permit = route.admission.admit(None).expect("no limits");
        let handler: wsrelay_http::BoxFuture<wsrelay_http::Response> =
            Box::pin(std::future::pending());
        drop(super::Unanswered::new(&route, None, handler, permit));
    }

    /// Every idle connection holds this future in a `tokio` task cell, aligned to 128 B:
    /// header 32 + scheduler and id 16 + span 40 + tracker 8 + the future + trailer 48. Up to
    /// 240 B the cell is 384 B; a future that grows past it costs every connection 128 B more
    /// (docs/OPERATIONS.md, "Memory per connection").
    #[test]
    fn an_idle_connection_task_fits_a_384_byte_cell() {
        let size = future_size(&super::Joining::run);
        assert!(size <= 240, "the connection's future is {size} B");
    }
}
