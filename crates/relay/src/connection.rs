//! The connection process: one task per WebSocket that relays frames to and from its target.
//!
//! The task owns the socket and the process at once. It waits, in this order of priority, for
//! a stop request (terminate, a failed link, shutdown), for its mailbox (events, then
//! messages), for the next client frame, and for its timers. Everything that can block —
//! reading while the target is congested, writing to a client that does not read — is
//! bounded, so one bad client or slow target never holds anything but its own connection.

use std::future::Future;

use futures_util::FutureExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Interval, Sleep};
use wsrelay_process::{
    reason, Context, Event, ExitGuard, ExitResult, Map, Message, Pid, ProcessRef, Received, Value,
};
use wsrelay_ws::{CloseReason, Event as WsEvent, Message as Frame, WsConnection};

use crate::events::{self, ClientEvent, ClientEventKind};
use crate::settings::{RelayOptions, RelayTarget};
use crate::stats::RelayStats;

/// How many queued mailbox messages are written before one flush.
const WRITE_BATCH: usize = 64;

/// How a connection ends: what the target is told, how the socket closes, how the process
/// exits.
#[derive(Debug)]
struct Outcome {
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
    /// error exit (SPEC §8), so links fire for them.
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

/// The target of the moment.
struct Target {
    pid: Pid,
    /// Set for local targets: sends without a lookup, and the inbox mark for backpressure.
    local: Option<ProcessRef>,
    topic: Arc<str>,
    metadata: Arc<Map>,
    settings: RelayTarget,
}

impl Target {
    fn new(ctx: &Context, pid: Pid, settings: RelayTarget) -> Target {
        Target {
            local: ctx.node().process_ref(&pid),
            topic: settings.message_topic.as_str().into(),
            metadata: Arc::new(settings.metadata.clone()),
            pid,
            settings,
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
    ) -> Connection {
        Connection {
            target: Target::new(&ctx, target, settings),
            ctx,
            ws,
            options,
            stats,
            started: Instant::now(),
            message_count: 0,
            awaiting_pong: false,
        }
    }

    /// Runs the connection to its end and exits the process.
    pub(crate) async fn run(mut self, guard: ExitGuard) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.notify_target(ClientEventKind::Join);
        let outcome = self.serve().await;
        // The target learns first: a close handshake with a slow or silent client can take
        // up to the close timeout, and nothing reaches the target after this anyway.
        if let Some((reason, code)) = outcome.leave {
            self.notify_target(ClientEventKind::Leave { reason, code });
        }
        if let Some((code, text)) = &outcome.close {
            self.ws.close(*code, text).await;
        }
        self.stats.count_close(outcome.counted);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(pid = %self.ctx.pid(), reason = outcome.counted, "websocket connection ended");
        guard.exit(outcome.exit);
    }

    async fn serve(&mut self) -> Outcome {
        let mut heartbeat = self.heartbeat();
        let liveness = tokio::time::sleep(self.options.ping_interval);
        tokio::pin!(liveness);
        loop {
            // Backpressure: while the target's inbox is above its mark, leave the socket
            // unread so TCP pushes back on the client; never drop a frame.
            let congested = self
                .target
                .local
                .as_ref()
                .filter(|t| t.is_congested())
                .cloned();
            // The same for a remote target while the queue to its node is full (cluster flow
            // control, see `Node::is_congested`).
            let remote_congested =
                self.target.local.is_none() && self.ctx.node().is_congested(&self.target.pid);
            let readable = congested.is_none() && !remote_congested;
            tokio::select! {
                biased;
                mailbox = next_or_stop(&self.ctx) => {
                    let received = match mailbox {
                        Mailbox::Stop(stop) => return self.on_stop(stop),
                        Mailbox::Received(received) => received,
                    };
                    if let Some(outcome) = self.on_mailbox(received, &mut heartbeat).await {
                        return outcome;
                    }
                    // Fairness: a target that writes without pause must not keep the socket
                    // unread (client frames, and the pongs that prove the client alive).
                    // `next_event` is cancel safe, so one poll is harmless.
                    if readable {
                        if let Some(event) = self.ws.next_event().now_or_never() {
                            if let Some(outcome) = self.on_client(event, liveness.as_mut()) {
                                return outcome;
                            }
                        }
                    }
                }
                event = self.ws.next_event(), if readable => {
                    if let Some(outcome) = self.on_client(event, liveness.as_mut()) {
                        return outcome;
                    }
                }
                () = wait_for_space(congested.as_ref()), if congested.is_some() => {}
                () = self.ctx.node().wait_for_space(&self.target.pid), if remote_congested => {}
                _ = tick(&mut heartbeat) => self.send_heartbeat(),
                () = &mut liveness => {
                    if let Some(outcome) = self.on_liveness(liveness.as_mut()).await {
                        return outcome;
                    }
                }
            }
        }
    }

    // ===== the client side =====

    fn on_client(
        &mut self,
        event: WsEvent,
        liveness: std::pin::Pin<&mut Sleep>,
    ) -> Option<Outcome> {
        match event {
            WsEvent::Message(frame) => {
                self.message_count += 1;
                let text = frame.is_text();
                let data = frame.into_data();
                self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.notify_target(ClientEventKind::Message { text, data });
                None
            }
            WsEvent::Pong(_) => {
                self.awaiting_pong = false;
                liveness.reset(Instant::now() + self.options.ping_interval);
                None
            }
            WsEvent::Closed(closed) => Some(Outcome::leave(closed.reason.as_str(), closed.code)),
        }
    }

    async fn on_liveness(&mut self, mut liveness: std::pin::Pin<&mut Sleep>) -> Option<Outcome> {
        if self.awaiting_pong {
            return Some(Outcome::closing("connection_lost", 1001, "pong timeout"));
        }
        self.awaiting_pong = true;
        liveness
            .as_mut()
            .reset(Instant::now() + self.options.pong_timeout);
        if self.ws.ping(bytes::Bytes::new()).await.is_err() {
            return Some(self.lost().await);
        }
        None
    }

    // ===== the process side =====

    async fn on_mailbox(
        &mut self,
        received: Received,
        heartbeat: &mut Option<Interval>,
    ) -> Option<Outcome> {
        match received {
            Received::Event(event) => self.on_event(event).await,
            Received::Message(msg) => {
                if let Some(outcome) = self.on_message(msg, heartbeat).await {
                    return Some(outcome);
                }
                // Write what else is queued before one flush.
                for _ in 1..WRITE_BATCH {
                    let Some(msg) = self.ctx.try_recv() else {
                        break;
                    };
                    if let Some(outcome) = self.on_message(msg, heartbeat).await {
                        return Some(outcome);
                    }
                }
                if self.ctx.inbox_bytes() > self.options.max_outbound_bytes {
                    return Some(Outcome::closing("slow_consumer", 1008, "slow consumer"));
                }
                self.flush().await.err()
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Exit { from, result } if from == self.target.pid => {
                // The target is gone: no ws.leave (SPEC §6).
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

    async fn on_message(
        &mut self,
        msg: Message,
        heartbeat: &mut Option<Interval>,
    ) -> Option<Outcome> {
        match msg.topic() {
            events::SEND => match events::frame_from_send(msg.payload()) {
                Ok(frame) => self.write(frame).await.err(),
                Err(problem) => {
                    tracing::warn!(pid = %self.ctx.pid(), from = ?msg.from(), "{problem}; ignored");
                    None
                }
            },
            events::CLOSE => {
                let (code, text) = events::close_from_payload(msg.payload());
                Some(Outcome::closing("server_closed", code, &text))
            }
            events::CONTROL => {
                self.transfer(msg.payload(), heartbeat);
                None
            }
            topic => {
                let frame = events::passthrough_frame(topic, msg.payload());
                self.write(frame).await.err()
            }
        }
    }

    /// `ws.control`: monitor the new target, leave the old one, join the new one, stop
    /// monitoring the old one (SPEC §7). Frames read after this go to the new target.
    fn transfer(&mut self, payload: &Value, heartbeat: &mut Option<Interval>) {
        let settings = match RelayTarget::from_control(payload, &self.target.settings) {
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
        if new_pid != old.pid {
            // A dead target delivers `noproc` at once and the connection closes as in §8.
            let _ = self.ctx.monitor(&new_pid);
        }
        let leave = ClientEventKind::Leave {
            reason: "transferred",
            code: None,
        };
        self.send_to(&old, leave);
        self.notify_target(ClientEventKind::Join);
        if new_pid != old.pid {
            self.ctx.unmonitor(&old.pid);
        }
        *heartbeat = self.heartbeat();
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

    async fn write(&mut self, frame: Frame) -> Result<(), Outcome> {
        let len = frame.data().len() as u64;
        let feed = self.ws.feed(frame);
        match bounded(&self.ctx, &self.options, feed).await {
            Ok(Ok(())) => {
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_out.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            // A text frame that is not UTF-8 was refused before anything was written.
            Ok(Err(wsrelay_ws::Error::InvalidText)) => {
                tracing::warn!(pid = %self.ctx.pid(), "ws.send: text is not UTF-8; ignored");
                Ok(())
            }
            Ok(Err(_)) => Err(self.lost().await),
            Err(interrupted) => Err(self.interrupted(interrupted)),
        }
    }

    fn interrupted(&mut self, interrupted: Interrupted) -> Outcome {
        match interrupted {
            Interrupted::SlowConsumer => Outcome::closing("slow_consumer", 1008, "slow consumer"),
            Interrupted::Stop(stop) => self.on_stop(stop),
        }
    }

    async fn flush(&mut self) -> Result<(), Outcome> {
        let flush = self.ws.flush();
        match bounded(&self.ctx, &self.options, flush).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.lost().await),
            Err(interrupted) => Err(self.interrupted(interrupted)),
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
            ClientEventKind::Join => events::JOIN.into(),
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

    fn heartbeat(&self) -> Option<Interval> {
        self.target.settings.heartbeat_interval.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        })
    }

    fn send_heartbeat(&self) {
        self.notify_target(ClientEventKind::Heartbeat {
            uptime: self.started.elapsed().as_secs_f64(),
            message_count: self.message_count,
        });
    }
}

/// Why a bounded write gave up.
enum Interrupted {
    /// It took longer than the write timeout, or the queue to the client (the connection's
    /// inbox) grew past its limit meanwhile.
    SlowConsumer,
    /// The process was asked to stop (terminate, a failed link, shutdown).
    Stop(ExitResult),
}

/// Runs a write, giving up when the client is a slow consumer or the process must stop: a
/// write to a client that does not read must hold neither the connection nor a `terminate`.
async fn bounded<T>(
    ctx: &Context,
    options: &RelayOptions,
    write: impl Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::pin!(write);
    // Fast path: a write that completes at once (the frame fits the buffer, the socket takes
    // the flush) needs no timer and no waiters; arming them cost more than the write.
    if let Some(done) = write.as_mut().now_or_never() {
        return Ok(done);
    }
    let deadline = sleep_until(Instant::now() + options.write_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            stop = ctx.stopped() => return Err(Interrupted::Stop(stop)),
            done = &mut write => return Ok(done),
            () = &mut deadline => return Err(Interrupted::SlowConsumer),
            () = ctx.changed() => {
                if ctx.inbox_bytes() > options.max_outbound_bytes {
                    return Err(Interrupted::SlowConsumer);
                }
            }
        }
    }
}

/// What woke the connection on the process side.
enum Mailbox {
    /// A stop request (terminate, a failed link, shutdown): it comes before anything queued.
    Stop(ExitResult),
    /// An event or a message, events first.
    Received(Received),
}

/// Waits for a stop request, an event or a message, in that order of priority.
///
/// One waiter instead of two (`Context::stopped` and `Context::next` in the select): a stop
/// request also wakes `changed`, so checking it here costs a lock where a second waiter cost
/// registering and polling a `Notified` on every frame.
///
/// # Cancel safety
///
/// Cancel safe: nothing is taken before it is returned.
async fn next_or_stop(ctx: &Context) -> Mailbox {
    loop {
        if let Some(stop) = ctx.stop_requested() {
            return Mailbox::Stop(stop);
        }
        if let Some(event) = ctx.try_next_event() {
            return Mailbox::Received(Received::Event(event));
        }
        if let Some(msg) = ctx.try_recv() {
            return Mailbox::Received(Received::Message(msg));
        }
        // A push or a kill between the checks and this wait leaves a permit: no lost wake-up.
        ctx.changed().await;
    }
}

async fn wait_for_space(target: Option<&ProcessRef>) {
    match target {
        Some(target) => target.wait_for_space().await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<Interval>) -> Instant {
    match interval {
        Some(interval) => interval.tick().await,
        None => std::future::pending().await,
    }
}

/// The longest a connection waits for its peer at each step of a close; see
/// [`RelayOptions::close_timeout`].
pub(crate) fn ws_config(options: &RelayOptions) -> wsrelay_ws::Config {
    wsrelay_ws::Config::default()
        .max_message_size(options.max_message_size)
        .close_timeout(options.close_timeout.min(Duration::from_secs(60)))
}
