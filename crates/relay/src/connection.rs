//! The connection process: one task per WebSocket that relays frames to and from its target.
//!
//! The task owns the socket and the process at once. It waits, in this order of priority, for
//! a stop request (terminate, a failed link, shutdown), for its mailbox (events, then
//! messages), for the next client frame, and for its timer (pings, heartbeats). Everything
//! that can block — reading while the target is congested, writing to a client that does not
//! read — is bounded, so one bad client or slow target never holds anything but its own
//! connection.
//!
//! **An idle connection is small.** The task waits in one `poll_fn` over those sources
//! ([`Connection::poll_wake`]) that keeps no futures of its own: the mailbox is a waker
//! registration, the socket is polled in place, and one timer serves pings and heartbeats.
//! The socket and the timer wake the task through wakers of their own ([`SourceWakers`]), so a
//! wake-up from the mailbox does not re-poll them.
//! What a connection needs only now and then — waiting for a congested target, a write to a
//! client that does not read, the close handshake — is boxed when it happens, so the task an
//! idle connection holds is the connection struct and little else (measured: see
//! docs/BENCHMARKS.md, idle connections).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use tokio::time::{sleep_until, Instant, Sleep};
use wsrelay_process::{
    reason, Context, Event, ExitGuard, ExitResult, Message, Pid, Unbuilt, Value,
};
use wsrelay_ws::{CloseReason, Event as WsEvent, SharedFrame, WsConnection};

use crate::backpressure::{bounded, Interrupted, Space};
use crate::events::{self, ClientEvent, ClientEventKind, Outgoing, ToSend};
use crate::header::RelayTarget;
use crate::limits::Permit;
use crate::options::RelayOptions;
use crate::parked::{Parkable, Parked, Unpark};
use crate::stats::RelayStats;
use crate::table::ConnectionInfo;
use crate::target::Target;
use crate::wake::SourceWakers;

/// How many queued mailbox messages are written before one flush.
const WRITE_BATCH: usize = 64;

/// What woke the connection.
pub(crate) enum Wake {
    /// A stop request (terminate, a failed link, shutdown).
    Stop(ExitResult),
    /// A system event (the target's exit, a cancel).
    Event(Event),
    /// Messages are queued in the mailbox.
    Messages,
    /// The client sent a message or a pong.
    Client(WsEvent),
    /// The WebSocket is closing or has ended: `next_event` reports how.
    Closing,
    /// The timer fired: a ping or a heartbeat is due.
    Timer,
    /// A sender's write ([`Connection::take_message`]) left a step for the task.
    Deferred(Box<Flow>),
}

/// What one step of the loop leads to.
pub(crate) enum Flow {
    /// Go on serving.
    Continue,
    /// The connection ends.
    End(Outcome),
    /// The step must wait for the client: run boxed, see [`Connection::wait`].
    Wait(Wait),
}

impl From<Option<Outcome>> for Flow {
    fn from(outcome: Option<Outcome>) -> Flow {
        outcome.map_or(Flow::Continue, Flow::End)
    }
}

/// A step that waits for the client. Rare on a healthy connection, so it lives in a box
/// for as long as it takes instead of in every connection's task.
pub(crate) enum Wait {
    /// A write found the write queue full.
    Write(Outgoing),
    /// A flush found the socket full.
    Flush,
    /// The socket failed: find out how the connection ended.
    Lost,
}

/// How a connection ends: what the target is told, how the socket closes, how the process
/// exits.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `ws.leave` reason and code; `None` when the target is gone.
    leave: Option<(&'static str, Option<u16>)>,
    /// The close frame still to send; `None` when the WebSocket has already ended.
    close: Option<(u16, String)>,
    /// The reason counted in the stats.
    counted: &'static str,
    exit: ExitResult,
}

impl Outcome {
    /// An end the target hears about as `ws.leave` with `reason`; abnormal reasons make an
    /// error exit (docs/spec.md §8), so links fire for them.
    fn leave(reason: &'static str, code: Option<u16>) -> Outcome {
        let abnormal = matches!(
            reason,
            "connection_lost" | "protocol_error" | "message_too_big" | "slow_consumer"
        );
        Outcome {
            leave: Some((reason, code)),
            close: None,
            counted: reason,
            exit: if abnormal {
                ExitResult::error_with_value(reason, reason)
            } else {
                ExitResult::normal(reason)
            },
        }
    }

    /// An end decided here: the target hears `ws.leave` with `reason` and `code` at once, and
    /// then the client gets a close frame with `code` and `text`.
    fn closing(reason: &'static str, code: u16, text: &str) -> Outcome {
        Outcome {
            close: Some((code, text.to_owned())),
            ..Outcome::leave(reason, Some(code))
        }
    }
}

/// A relay connection between its upgrade and its exit.
pub(crate) struct Connection {
    ctx: Context,
    ws: WsConnection,
    options: Arc<RelayOptions>,
    stats: Arc<RelayStats>,
    target: Target,
    started: Instant,
    message_count: u64,
    awaiting_pong: bool,
    /// The client's address (for `ws.join`), route, target and byte counts, shared with
    /// the relay's connection table.
    info: Arc<ConnectionInfo>,
    /// When the next ping is due (or, while `awaiting_pong`, when the pong is late).
    next_ping: Instant,
    /// When the next `ws.heartbeat` is due, if the target asked for them.
    next_heartbeat: Option<Instant>,
    /// While the target is congested: the wait for room in its inbox (or its node's queue).
    space: Space,
    /// After a batch of mailbox messages, the client is looked at first (fairness: a target
    /// that writes without pause must not keep the socket unread).
    client_first: bool,
    /// The router's pool slot (`max_connections`), freed when the connection ends.
    permit: Option<Permit>,
    /// Taken by the exit; held here, not in the task, to keep the task small.
    guard: Option<ExitGuard>,
    /// Whether the socket or the timer woke the task since they were last polled.
    wakers: SourceWakers,
    /// What a sender's write left for the task to finish (a flush the socket did not take).
    deferred: Option<Box<Flow>>,
}

impl Drop for Connection {
    /// A connection whose task is dropped (its runtime stopped) leaves the table too.
    fn drop(&mut self) {
        self.stats.table.remove(self.ctx.pid());
    }
}

impl Connection {
    /// `ctx` must already monitor `target` (the middleware does it before answering 101).
    pub(crate) fn new(
        ctx: Context,
        ws: WsConnection,
        target: Pid,
        settings: RelayTarget,
        options: Arc<RelayOptions>,
        stats: Arc<RelayStats>,
        info: Arc<ConnectionInfo>,
    ) -> Connection {
        let now = Instant::now();
        let mut connection = Connection {
            info,
            target: Target::new(&ctx, target, settings),
            next_ping: now + options.ping_interval,
            ctx,
            ws,
            options,
            stats,
            started: now,
            message_count: 0,
            awaiting_pong: false,
            next_heartbeat: None,
            space: Space::default(),
            client_first: false,
            permit: None,
            guard: None,
            wakers: SourceWakers::new(),
            deferred: None,
        };
        connection.next_heartbeat = connection.first_heartbeat();
        connection
    }

    /// The connection, holding `permit` until it ends and exiting through `guard`.
    pub(crate) fn holding(mut self, permit: Permit, guard: ExitGuard) -> Connection {
        (self.permit, self.guard) = (Some(permit), Some(guard));
        self
    }

    /// Runs the connection to its end and exits the process.
    ///
    /// Boxed `self`: an `async fn` keeps its by-value arguments twice in its state (once as
    /// captured, once as the local they move into), which would double the connection in
    /// every idle task; a box is held twice as a pointer. The end is boxed too: what it holds
    /// (the outcome, the close handshake) is no part of an idle connection.
    ///
    /// Between wake-ups the connection waits in a [`Parked`] slot, the process's shortcut,
    /// where a sender can write a `ws.send` to the client itself (module docs of `parked`).
    pub(crate) async fn run(self: Box<Self>) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.notify_target(self.join());
        let parked = Arc::new(Parked::default());
        self.ctx.set_shortcut(parked.clone());
        let _unpark = Unpark(&parked);
        // `None`: the connection was dropped while parked, which only `Unpark` does. A `let`
        // of its own: an `if let`'s scrutinee (connection and outcome) would stay in the
        // future for as long as the end runs.
        let Some((connection, outcome)) = self.serve(&parked).await else {
            return;
        };
        Box::pin(connection.end(outcome)).await;
    }

    /// Tells the target, closes the socket, counts, exits.
    async fn end(mut self: Box<Self>, outcome: Outcome) {
        // The target learns first: a close handshake with a slow or silent client can take
        // up to the close timeout, and nothing reaches the target after this anyway.
        if let Some((reason, code)) = outcome.leave {
            self.notify_target(ClientEventKind::Leave { reason, code });
        }
        if let Some((code, text)) = &outcome.close {
            self.ws.close(*code, text).await;
        } else if !self.ws.is_open() {
            // The client closed (or broke the protocol): echo, shut TCP down, bounded.
            self.ws.next_event().await;
        }
        self.stats.count_close(outcome.counted);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.stats.table.remove(self.ctx.pid());
        tracing::debug!(pid = %self.ctx.pid(), reason = outcome.counted, "websocket connection ended");
        if let Some(guard) = self.guard.take() {
            guard.exit(outcome.exit);
        }
    }

    /// Serves until the connection ends; parks the connection in `parked` while it waits.
    async fn serve(mut self: Box<Self>, parked: &Parked<Self>) -> Option<(Box<Self>, Outcome)> {
        let mut timer = std::pin::pin!(sleep_until(self.next_deadline()));
        loop {
            parked.park(self);
            let (connection, wake) = poll_fn(|cx| parked.poll_wake(cx, timer.as_mut())).await?;
            self = connection;
            // A fired timer must be re-armed even if its deadline were unchanged.
            let fired = matches!(wake, Wake::Timer);
            // Moved whole into calls, so neither the wake nor the flow stays in the task
            // while a wait runs (the task's size is its largest state).
            let flow = self.on_wake(wake);
            let flow = if let Flow::Wait(_) = flow {
                let flow = Box::pin(self.wait_flow(flow)).await;
                // The wait polled the socket with the task's own waker.
                self.wakers.all_due();
                flow
            } else {
                flow
            };
            if let Flow::End(outcome) = flow {
                return Some((self, outcome));
            }
            let deadline = self.next_deadline();
            if fired || timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
                self.wakers.timer_due();
            }
        }
    }

    fn on_wake(&mut self, wake: Wake) -> Flow {
        match wake {
            Wake::Stop(stop) => Flow::End(self.on_stop(stop)),
            Wake::Event(event) => self.on_event(event).into(),
            Wake::Messages => {
                self.client_first = true;
                self.on_messages()
            }
            Wake::Client(event) => {
                self.client_first = false;
                self.on_client(event).into()
            }
            Wake::Closing => Flow::End(self.closed_by_client()),
            Wake::Timer => self.on_timer(),
            Wake::Deferred(flow) => *flow,
        }
    }

    /// The WebSocket is no longer open (the client's close frame arrived, or the protocol
    /// broke): the target hears it now, not when the close handshake ends — a client that
    /// keeps TCP open after its close frame would hold that back for the close timeout.
    /// `run` finishes the handshake after telling the target.
    fn closed_by_client(&self) -> Outcome {
        match self.ws.closing() {
            Some(closed) => Outcome::leave(closed.reason.as_str(), closed.code),
            // Not reached: `poll_event` says the connection is no longer open.
            None => Outcome::leave("connection_lost", None),
        }
    }

    // ===== the client side =====

    fn on_client(&mut self, event: WsEvent) -> Option<Outcome> {
        match event {
            WsEvent::Message(frame) => {
                self.message_count += 1;
                let text = frame.is_text();
                let data = frame.into_data();
                self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                let len = data.len() as u64;
                self.stats.bytes_in.fetch_add(len, Ordering::Relaxed);
                self.info.bytes_in.fetch_add(len, Ordering::Relaxed);
                self.notify_target(ClientEventKind::Message { text, data });
                None
            }
            WsEvent::Pong(_) => {
                self.awaiting_pong = false;
                self.next_ping = Instant::now() + self.options.ping_interval;
                None
            }
            WsEvent::Closed(closed) => Some(Outcome::leave(closed.reason.as_str(), closed.code)),
        }
    }

    /// The timer fired: a ping is due (or its pong is late), or a heartbeat.
    fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if let Some(due) = self.next_heartbeat.filter(|due| *due <= now) {
            self.send_heartbeat();
            // Missed ticks are not made up (tokio's `MissedTickBehavior::Delay`).
            let period = self.target.heartbeat_interval.unwrap_or_default();
            self.next_heartbeat = Some((due + period).max(now + period / 2));
        }
        if self.next_ping > now {
            return Flow::Continue;
        }
        if self.awaiting_pong {
            return Flow::End(Outcome::closing("connection_lost", 1001, "pong timeout"));
        }
        self.awaiting_pong = true;
        self.next_ping = now + self.options.pong_timeout;
        if self.ws.ping_now(bytes::Bytes::new()).is_err() {
            return Flow::Wait(Wait::Lost);
        }
        self.flush()
    }

    /// When the timer must fire next.
    fn next_deadline(&self) -> Instant {
        match self.next_heartbeat {
            Some(heartbeat) => heartbeat.min(self.next_ping),
            None => self.next_ping,
        }
    }

    // ===== the process side =====

    /// Writes what the mailbox holds (a batch), then flushes once.
    /// A write that must wait ends the batch; the rest of the mailbox waits for the next one.
    fn on_messages(&mut self) -> Flow {
        for _ in 0..WRITE_BATCH {
            let Some(msg) = self.ctx.try_recv() else {
                break;
            };
            match self.on_message(msg) {
                Flow::Continue => {}
                flow => return flow,
            }
        }
        if self.ctx.inbox_bytes() > self.options.max_outbound_bytes {
            return Flow::End(Outcome::closing("slow_consumer", 1008, "slow consumer"));
        }
        self.flush()
    }

    fn on_event(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Exit { from, result } if from == self.target.pid => {
                // The target is gone: no ws.leave (docs/spec.md §6).
                let (code, text, exit) = match &result.error {
                    None => (
                        1000,
                        "target process exited",
                        ExitResult::normal("server_closed"),
                    ),
                    Some(error) => (
                        1011,
                        "target process failed",
                        ExitResult::error_with_value(
                            "server_closed",
                            format!("target process failed: {error}"),
                        ),
                    ),
                };
                Some(Outcome {
                    leave: None,
                    close: Some((code, text.to_owned())),
                    counted: "target_exited",
                    exit,
                })
            }
            Event::Cancel { .. } => Some(Outcome::closing("server_closed", 1001, "cancelled")),
            // Exits of earlier targets (after a transfer) and anything else: not ours.
            _ => None,
        }
    }

    fn on_message(&mut self, msg: Message) -> Flow {
        match msg.topic() {
            events::SEND => match msg.payload().downcast_ref::<Outgoing>() {
                // A group send's frame, shared by every member: written from the message
                // itself, not from a clone of it (a clone and a drop per recipient).
                Some(Outgoing::Shared(shared)) => self.write_shared(shared),
                _ => self.send_payload(msg),
            },
            events::CLOSE => {
                let (code, text) = events::close_from_payload(msg.payload());
                Flow::End(Outcome::closing("server_closed", code, &text))
            }
            events::CONTROL => {
                self.transfer(msg.payload());
                Flow::Continue
            }
            topic => {
                let frame = events::passthrough_frame(topic, msg.payload());
                self.write(ToSend::Out(Outgoing::Frame(frame)))
            }
        }
    }

    /// `ws.send` with any other payload: a map from Lua, a frame from a Rust sender.
    fn send_payload(&mut self, msg: Message) -> Flow {
        let (from, _, payload, _) = msg.into_parts();
        match events::read_send(payload) {
            Ok(out) => self.write(out),
            Err(problem) => {
                tracing::warn!(pid = %self.ctx.pid(), ?from, "{problem}; ignored");
                Flow::Continue
            }
        }
    }

    /// `ws.control`: monitor the new target, leave the old one, join the new one, stop
    /// monitoring the old one (docs/spec.md §7). Frames read after this go to the new target.
    fn transfer(&mut self, payload: &Value) {
        let settings = match RelayTarget::from_control(payload, &self.target.settings()) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(pid = %self.ctx.pid(), "invalid ws.control payload: {e}; ignored");
                return;
            }
        };
        let new_pid = match self.ctx.node().resolve(&settings.target) {
            Ok(pid) => pid,
            Err(wsrelay_process::SendError::BadDestination(..)) => {
                tracing::warn!(pid = %self.ctx.pid(), target = %settings.target, "ws.control: invalid target_pid; ignored");
                return;
            }
            // An unknown name is a dead target: the noproc EXIT below closes the connection.
            Err(_) => Pid::new(self.ctx.node().name(), "unknown", 0),
        };
        let old = std::mem::replace(
            &mut self.target,
            Target::new(&self.ctx, new_pid.clone(), settings),
        );
        self.info.set_target(new_pid.clone());
        // A wait for room in the old target's inbox must not hold the client back: whether
        // to read is decided again, for the new target.
        self.space.forget();
        self.wakers.socket_due();
        if new_pid != old.pid {
            // A dead target delivers `noproc` at once and the connection closes as in §8.
            let _ = self.ctx.monitor(&new_pid);
        }
        let leave = ClientEventKind::Leave {
            reason: "transferred",
            code: None,
        };
        self.send_to(&old, leave);
        self.notify_target(self.join());
        if new_pid != old.pid {
            self.ctx.unmonitor(&old.pid);
        }
        self.next_heartbeat = self.first_heartbeat();
        tracing::debug!(pid = %self.ctx.pid(), from = %old.pid, to = %new_pid, "connection transferred");
    }

    fn on_stop(&mut self, stop: ExitResult) -> Outcome {
        if stop.error_text() == Some(reason::SHUTDOWN) {
            return Outcome {
                exit: ExitResult::normal("shutdown"),
                ..Outcome::closing("shutdown", 1001, "server shutting down")
            };
        }
        Outcome {
            exit: ExitResult {
                value: Value::from("server_closed"),
                ..stop
            },
            ..Outcome::closing("server_closed", 1011, "terminated")
        }
    }

    // ===== writing =====

    /// Queues `out` for the client when the write queue has room; a write that must wait
    /// for the client becomes a [`Wait`].
    fn write(&mut self, out: ToSend) -> Flow {
        if !self.ws.can_feed() {
            return Flow::Wait(Wait::Write(out.into_outgoing()));
        }
        let len = out.len() as u64;
        let queued = match out {
            ToSend::Text(text) => self.ws.feed_text_now(text),
            ToSend::Out(Outgoing::Frame(frame)) => self.ws.feed_now(frame),
            ToSend::Out(Outgoing::Shared(shared)) => self.ws.feed_shared_now(&shared),
        };
        self.wrote(queued, len)
    }

    /// [`write`](Self::write) for a shared frame that stays in its message: cloned only when
    /// the write must wait for the client.
    fn write_shared(&mut self, shared: &SharedFrame) -> Flow {
        if !self.ws.can_feed() {
            return Flow::Wait(Wait::Write(Outgoing::Shared(shared.clone())));
        }
        let len = shared.data().len() as u64;
        let queued = self.ws.feed_shared_now(shared);
        self.wrote(queued, len)
    }

    /// Counts a queued write, or says why it was not.
    fn wrote(&mut self, queued: Result<(), wsrelay_ws::Error>, len: u64) -> Flow {
        match queued {
            Ok(()) => {
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_out.fetch_add(len, Ordering::Relaxed);
                self.info.bytes_out.fetch_add(len, Ordering::Relaxed);
                Flow::Continue
            }
            // A text frame that is not UTF-8 was refused before anything was written.
            Err(wsrelay_ws::Error::InvalidText) => {
                tracing::warn!(pid = %self.ctx.pid(), "ws.send: text is not UTF-8; ignored");
                Flow::Continue
            }
            Err(_) => Flow::Wait(Wait::Lost),
        }
    }

    /// Writes what is queued, if the socket takes it now; otherwise the flush becomes a
    /// [`Wait`].
    fn flush(&mut self) -> Flow {
        let noop = &mut TaskContext::from_waker(futures_util::task::noop_waker_ref());
        match self.ws.poll_flush(noop) {
            Poll::Ready(Ok(())) => Flow::Continue,
            Poll::Ready(Err(_)) => Flow::Wait(Wait::Lost),
            Poll::Pending => Flow::Wait(Wait::Flush),
        }
    }

    async fn wait_flow(&mut self, flow: Flow) -> Flow {
        match flow {
            Flow::Wait(wait) => self.wait(wait).await,
            flow => flow,
        }
    }

    /// Runs a step that waits for the client, to its end: a write or a flush is bounded by
    /// the write timeout and the outbound limit, and gives way to a stop request.
    async fn wait(&mut self, mut wait: Wait) -> Flow {
        loop {
            let flow = match wait {
                Wait::Write(out) => {
                    let len = out.data().len() as u64;
                    let (ctx, options, ws) = (&self.ctx, &self.options, &mut self.ws);
                    let fed = match out {
                        Outgoing::Frame(frame) => bounded(ctx, options, ws.feed(frame)).await,
                        Outgoing::Shared(shared) => {
                            bounded(ctx, options, ws.feed_shared(&shared)).await
                        }
                    };
                    match fed {
                        // What was queued must reach the client even if the mailbox is
                        // now empty and nothing else would flush it.
                        Ok(queued) => match self.wrote(queued, len) {
                            Flow::Continue => self.flush(),
                            flow => flow,
                        },
                        Err(interrupted) => Flow::End(self.interrupted(interrupted)),
                    }
                }
                Wait::Flush => {
                    let (ctx, options, ws) = (&self.ctx, &self.options, &mut self.ws);
                    match bounded(ctx, options, ws.flush()).await {
                        Ok(Ok(())) => Flow::Continue,
                        Ok(Err(_)) => Flow::Wait(Wait::Lost),
                        Err(interrupted) => Flow::End(self.interrupted(interrupted)),
                    }
                }
                Wait::Lost => Flow::End(self.lost().await),
            };
            match flow {
                Flow::Wait(next) => wait = next,
                flow => return flow,
            }
        }
    }

    fn interrupted(&mut self, interrupted: Interrupted) -> Outcome {
        match interrupted {
            Interrupted::SlowConsumer => Outcome::closing("slow_consumer", 1008, "slow consumer"),
            Interrupted::Stop(stop) => self.on_stop(stop),
        }
    }

    async fn lost(&mut self) -> Outcome {
        // The socket failed: `next_event` reports how the connection ended.
        let closed = match self.ws.next_event().await {
            WsEvent::Closed(closed) => closed,
            _ => self.ws.close(1011, "").await,
        };
        let reason = match closed.reason {
            CloseReason::ServerClosed => "connection_lost",
            other => other.as_str(),
        };
        Outcome::leave(reason, closed.code)
    }

    // ===== to the target =====

    fn notify_target(&self, kind: ClientEventKind) {
        self.send_to(&self.target, kind);
    }

    fn send_to(&self, target: &Target, kind: ClientEventKind) {
        let topic: Arc<str> = match kind {
            ClientEventKind::Join { .. } => events::JOIN.into(),
            ClientEventKind::Message { .. } => target.topic.clone(),
            ClientEventKind::Heartbeat { .. } => events::HEARTBEAT.into(),
            ClientEventKind::Leave { .. } => events::LEAVE.into(),
        };
        let event = ClientEvent {
            client_pid: self.ctx.pid().clone(),
            kind,
            metadata: target.metadata.clone(),
        };
        let msg = Message::new(
            Some(self.ctx.pid().clone()),
            topic,
            Value::Opaque(Arc::new(event)),
        );
        // A dead target is noticed through its EXIT; the frame has nowhere to go.
        let _ = match &target.local {
            Some(local) => local.send(msg),
            None => self.ctx.node().send(&target.pid, msg),
        };
    }

    /// `ws.join`, with the subprotocol of the handshake and the client's address (a
    /// transfer keeps both).
    fn join(&self) -> ClientEventKind {
        ClientEventKind::Join {
            protocol: self.target.protocol.clone(),
            remote_addr: self.info.remote_addr.clone(),
        }
    }

    /// When the first heartbeat of the current target is due, if it asked for them.
    fn first_heartbeat(&self) -> Option<Instant> {
        self.target
            .heartbeat_interval
            .map(|period| Instant::now() + period)
    }

    fn send_heartbeat(&self) {
        self.notify_target(ClientEventKind::Heartbeat {
            uptime: self.started.elapsed().as_secs_f64(),
            message_count: self.message_count,
        });
    }
}

impl Parkable for Connection {
    type Wake = Wake;

    /// What to do next, in order of priority: a stop request, an event, queued messages,
    /// the client (unless the target is congested), the timer. Registers for all of them
    /// before looking, so nothing that arrives after the look is missed; the socket and the
    /// timer are looked at only when they woke the task (or were never registered).
    fn poll_wake(&mut self, cx: &mut TaskContext<'_>, timer: Pin<&mut Sleep>) -> Poll<Wake> {
        self.wakers.begin(cx.waker());
        if let Some(flow) = self.deferred.take() {
            return Poll::Ready(Wake::Deferred(flow));
        }
        self.ctx.wake_on_change(cx.waker());
        if let Some(stop) = self.ctx.stop_requested() {
            return Poll::Ready(Wake::Stop(stop));
        }
        if let Some(event) = self.ctx.try_next_event() {
            return Poll::Ready(Wake::Event(event));
        }
        let messages = self.ctx.inbox_len() > 0;
        if messages && !self.client_first {
            return Poll::Ready(Wake::Messages);
        }
        if let Some(waker) = self.wakers.socket() {
            let cx = &mut TaskContext::from_waker(waker);
            let readable = self.space.poll_readable(&self.target, &self.ctx, cx);
            let event = if readable {
                self.ws.poll_event(cx)
            } else {
                Poll::Pending
            };
            match event {
                Poll::Ready(Some(event)) => return Poll::Ready(Wake::Client(event)),
                Poll::Ready(None) => return Poll::Ready(Wake::Closing),
                Poll::Pending => self.wakers.socket_idle(),
            }
        }
        if messages {
            return Poll::Ready(Wake::Messages);
        }
        self.client_first = false;
        if let Some(waker) = self.wakers.timer() {
            match timer.poll(&mut TaskContext::from_waker(waker)) {
                Poll::Ready(()) => return Poll::Ready(Wake::Timer),
                Poll::Pending => self.wakers.timer_idle(),
            }
        }
        Poll::Pending
    }

    /// A message offered by a sender while the connection is parked (`parked.rs`): a
    /// `ws.send` is written to the client now, as the task would write it, and flushed if
    /// the socket takes it; what must wait (a full socket, a failed one) is left for the
    /// task, which is woken for it. Anything else, or a connection with a write or a step
    /// pending, gives the message back to be queued.
    fn take_message(&mut self, msg: Message) -> Result<(), Message> {
        if msg.topic() != events::SEND || !self.can_take() {
            return Err(msg);
        }
        let flow = self.on_message(msg);
        self.taken(flow);
        Ok(())
    }

    /// As [`take_message`](Parkable::take_message), from the sender's own form of the
    /// payload: only a `ws.send` of the common shapes (`events::read_unbuilt_send`) is taken.
    fn take_unbuilt(&mut self, topic: &str, payload: &dyn Unbuilt) -> bool {
        if topic != events::SEND || !self.can_take() {
            return false;
        }
        let Some(out) = events::read_unbuilt_send(payload) else {
            return false;
        };
        let flow = self.write(out);
        self.taken(flow);
        true
    }
}

impl Connection {
    /// Whether a sender may write to the client now: nothing is left from a write that had
    /// to wait, and the write queue has room.
    fn can_take(&self) -> bool {
        self.deferred.is_none() && self.ws.can_feed()
    }

    /// Finishes a message a sender took ([`Parkable`]): flushes it, or leaves what is left to
    /// the connection's task.
    fn taken(&mut self, flow: Flow) {
        let flow = match flow {
            // Outside the sender's cooperative budget: a broadcast makes thousands of writes
            // in one poll of its sender, and tokio would refuse them (as not ready) after the
            // first 128, leaving each to its connection's task.
            Flow::Continue => {
                tokio::task::coop::unconstrained(poll_fn(|_| Poll::Ready(self.flush())))
                    .now_or_never()
                    .unwrap_or_else(|| Flow::Wait(Wait::Flush))
            }
            flow => flow,
        };
        match flow {
            Flow::Continue => {}
            flow => {
                self.deferred = Some(Box::new(flow));
                self.wakers.wake_task();
            }
        }
        self.stats.sends_taken.fetch_add(1, Ordering::Relaxed);
    }
}
