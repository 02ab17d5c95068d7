//! The NATS transport: routing by node, the control loop and the per-peer writers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use wsrelay_process::{
    reason, Event, ExitResult, Message, NameError, Node, Pid, SendError, SpaceFuture, Transport,
    Value,
};

use crate::names::Names;
use crate::peer::{Out, Peer, Severed, Verdict};
use crate::stats::{ClusterStats, DropReason};
use crate::wire::{self, Envelope, Frame, Heartbeat};
use crate::ClusterOptions;

/// Commands to the control loop.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// A new peer: start heartbeating it.
    Reconnected,
    /// The writer could not publish: end the connection.
    PublishFailed(Arc<Peer>),
    /// A DISCONNECT advisory named this client.
    Suspect { node: String, inc: u32 },
}

/// State shared by the transport, the control loop and the writers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) me: String,
    pub(crate) inc: u32,
    pub(crate) client: async_nats::Client,
    pub(crate) opts: ClusterOptions,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) peers: RwLock<HashMap<String, Arc<Peer>>>,
    pub(crate) stats: Arc<ClusterStats>,
    pub(crate) disconnected_since: Mutex<Option<Instant>>,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) names: OnceLock<Names>,
    pub(crate) max_envelope: usize,
    pub(crate) runtime: crate::RuntimeGuard,
}

/// The [`Transport`] installed on the node.
#[derive(Debug, Clone)]
pub(crate) struct NatsTransport {
    pub(crate) shared: Arc<Shared>,
}

impl Shared {
    fn subject_to(&self, peer: &str) -> String {
        format!("wsr.{}.n.{}.{}", self.opts.cluster, peer, self.me)
    }

    /// The peer named `name`, created (with its writer) on first use.
    pub(crate) fn peer(self: &Arc<Self>, name: &str) -> Option<Arc<Peer>> {
        if let Some(p) = self.peers.read().get(name) {
            return Some(p.clone());
        }
        if name == self.me || !crate::valid_node_name(name) {
            return None;
        }
        let mut peers = self.peers.write();
        if let Some(p) = peers.get(name) {
            return Some(p.clone());
        }
        let (peer, rx) = Peer::new(name, self.subject_to(name), Instant::now());
        let peer = Arc::new(peer);
        peers.insert(name.to_owned(), peer.clone());
        drop(peers);
        self.stats.set_peer(name, false);
        self.rt.spawn(writer(self.clone(), peer.clone(), rx));
        Some(peer)
    }

    /// Whether sends to other nodes fail at once because NATS has been away too long.
    fn nats_unreachable(&self) -> bool {
        self.disconnected_since
            .lock()
            .is_some_and(|t| t.elapsed() >= self.opts.unreachable_grace)
    }

    fn usable_peer(self: &Arc<Self>, to: &Pid) -> Result<Arc<Peer>, SendError> {
        let unreachable = || SendError::NodeUnreachable(to.node().to_owned());
        let peer = self.peer(to.node()).ok_or_else(unreachable)?;
        if peer.is_down() || self.nats_unreachable() {
            self.stats.count_drop(DropReason::Unreachable, 1);
            return Err(unreachable());
        }
        Ok(peer)
    }

    /// Queues a signal that must not be lost: if the peer cannot take it, the connection is
    /// treated as lost by the caller's fallback.
    fn signal(self: &Arc<Self>, peer: &Peer, env: &Envelope) {
        let bytes = env.encode();
        let st = peer.state.lock();
        peer.push(&st, bytes);
    }

    /// Ends the connection with `peer`: fails what spans it, exactly once.
    pub(crate) fn end_connection(&self, peer: &Peer, why: &str) {
        let severed = peer.state.lock().end();
        self.stats.session_resets.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %peer.name, why, monitors = severed.monitors.len(), links = severed.links.len(), "cluster session ended");
        peer.credit.notify_waiters();
        self.fail(severed);
    }

    fn fail(&self, severed: Severed) {
        for (watcher, target) in severed.monitors {
            self.node.deliver_event(
                &watcher,
                Event::Exit {
                    from: target,
                    result: ExitResult::error(reason::NOCONNECTION),
                },
            );
        }
        for (watcher, target) in severed.watched {
            self.node.remove_remote_watcher(&watcher, &target);
        }
        for (local, remote) in severed.links {
            self.node.deliver_event(
                &local,
                Event::LinkDown {
                    from: remote,
                    result: ExitResult::error(reason::NOCONNECTION),
                },
            );
        }
    }

    fn heartbeat(&self, peer: &Peer, probe: bool) -> Bytes {
        let st = peer.state.lock();
        let (ack_session, ack_seq) = st.ack();
        wire::encode_heartbeat(&Heartbeat {
            inc: self.inc,
            session: st.out_session,
            published: st.published_seq,
            ack_session,
            ack_seq,
            probe,
        })
    }

    /// Publishes a control frame (heartbeat, reset) without waiting: it must never block the
    /// control loop when NATS is away.
    fn publish_control(&self, peer: &Peer, frame: Bytes) {
        let client = self.client.clone();
        let subject = peer.subject.clone();
        self.rt.spawn(async move {
            let _ = client.publish(subject, frame).await;
        });
    }
}

// ===== the Transport seam =====

impl NatsTransport {
    fn deliver_noconnection_exit(&self, watcher: &Pid, target: &Pid) {
        self.shared.node.deliver_event(
            watcher,
            Event::Exit {
                from: target.clone(),
                result: ExitResult::error(reason::NOCONNECTION),
            },
        );
    }
}

impl Transport for NatsTransport {
    fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        let sh = &self.shared;
        let peer = sh.usable_peer(to)?;
        if peer.state.lock().is_past((to.id() >> 32) as u32) {
            sh.stats.count_drop(DropReason::NoProc, 1);
            return Err(SendError::NoProcess(to.to_string()));
        }
        if peer.queued.load(Ordering::Acquire) >= sh.opts.queue_max {
            sh.stats.count_drop(DropReason::QueueFull, 1);
            return Err(SendError::NodeUnreachable(to.node().to_owned()));
        }
        let bytes = Envelope::Message {
            to: to.clone(),
            msg,
        }
        .encode();
        if bytes.len() > sh.max_envelope {
            sh.stats.count_drop(DropReason::TooBig, 1);
            return Err(SendError::TooBig(bytes.len()));
        }
        let st = peer.state.lock();
        peer.push(&st, bytes);
        Ok(())
    }

    fn monitor(&self, watcher: &Pid, target: &Pid) {
        let sh = &self.shared;
        let Ok(peer) = sh.usable_peer(target) else {
            return self.deliver_noconnection_exit(watcher, target);
        };
        let bytes = Envelope::Monitor {
            watcher: watcher.clone(),
            target: target.clone(),
        }
        .encode();
        let mut st = peer.state.lock();
        st.monitors.insert((watcher.clone(), target.clone()));
        peer.push(&st, bytes);
    }

    fn demonitor(&self, watcher: &Pid, target: &Pid) {
        let Some(peer) = self.shared.peer(target.node()) else {
            return;
        };
        let bytes = Envelope::Demonitor {
            watcher: watcher.clone(),
            target: target.clone(),
        }
        .encode();
        let mut st = peer.state.lock();
        if st.monitors.remove(&(watcher.clone(), target.clone())) {
            peer.push(&st, bytes);
        }
    }

    fn link(&self, local: &Pid, remote: &Pid) {
        let sh = &self.shared;
        let Ok(peer) = sh.usable_peer(remote) else {
            sh.node.deliver_event(
                local,
                Event::LinkDown {
                    from: remote.clone(),
                    result: ExitResult::error(reason::NOCONNECTION),
                },
            );
            return;
        };
        let bytes = Envelope::Link {
            from: local.clone(),
            to: remote.clone(),
        }
        .encode();
        let mut st = peer.state.lock();
        st.links.insert((local.clone(), remote.clone()));
        peer.push(&st, bytes);
    }

    fn unlink(&self, local: &Pid, remote: &Pid) {
        let Some(peer) = self.shared.peer(remote.node()) else {
            return;
        };
        let bytes = Envelope::Unlink {
            from: local.clone(),
            to: remote.clone(),
        }
        .encode();
        let mut st = peer.state.lock();
        if st.links.remove(&(local.clone(), remote.clone())) {
            peer.push(&st, bytes);
        }
    }

    fn event(&self, to: &Pid, event: Event) {
        let Some(peer) = self.shared.peer(to.node()) else {
            return;
        };
        match event {
            Event::Exit { from, result } => {
                let bytes = Envelope::Exit {
                    watcher: to.clone(),
                    target: from.clone(),
                    result,
                }
                .encode();
                let mut st = peer.state.lock();
                if st.watched.remove(&(to.clone(), from)) {
                    peer.push(&st, bytes);
                }
            }
            Event::LinkDown { from, result } => {
                let bytes = Envelope::LinkDown {
                    from: from.clone(),
                    to: to.clone(),
                    result,
                }
                .encode();
                let mut st = peer.state.lock();
                if st.links.remove(&(from, to.clone())) {
                    peer.push(&st, bytes);
                }
            }
            Event::Cancel { from, reason } => self.cancel(from.as_ref(), to, reason),
        }
    }

    fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) {
        if let Ok(peer) = self.shared.usable_peer(to) {
            let env = Envelope::Cancel {
                from: from.cloned(),
                to: to.clone(),
                reason,
            };
            self.shared.signal(&peer, &env);
        }
    }

    fn terminate(&self, to: &Pid) {
        if let Ok(peer) = self.shared.usable_peer(to) {
            self.shared
                .signal(&peer, &Envelope::Terminate { to: to.clone() });
        }
    }

    fn is_congested(&self, to: &Pid) -> bool {
        self.shared.peers.read().get(to.node()).is_some_and(|p| {
            !p.is_down() && p.queued.load(Ordering::Acquire) >= self.shared.opts.queue_high_water
        })
    }

    fn wait_for_space(&self, to: &Pid) -> SpaceFuture {
        let peer = self.shared.peers.read().get(to.node()).cloned();
        let high_water = self.shared.opts.queue_high_water;
        Box::pin(async move {
            let Some(peer) = peer else { return };
            loop {
                let notified = peer.space.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if peer.is_down() || peer.queued.load(Ordering::Acquire) < high_water {
                    return;
                }
                notified.await;
            }
        })
    }

    fn owns_name(&self, name: &str) -> bool {
        self.shared.names.get().is_some() && name.starts_with(crate::CLUSTER_NAME_PREFIX)
    }

    fn register_name(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        match self.shared.names.get() {
            Some(names) => names.register(&self.shared, name, pid),
            None => Err(NameError::Invalid(name.to_owned())),
        }
    }

    fn unregister_name(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        match self.shared.names.get() {
            Some(names) => names.unregister(&self.shared, name, pid),
            None => Err(NameError::NotOwner(name.to_owned())),
        }
    }

    fn lookup_name(&self, name: &str) -> Option<Pid> {
        self.shared
            .names
            .get()
            .and_then(|names| names.lookup(&self.shared, name))
    }
}

// ===== the writer =====

/// Drains one peer's queue into batches, within the credit the peer granted. The only task
/// that publishes data to the peer, so sequence numbers go out in order.
async fn writer(sh: Arc<Shared>, peer: Arc<Peer>, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut batch: Vec<Out> = Vec::with_capacity(sh.opts.batch_envelopes);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let mut bytes = batch[0].bytes.len();
        while batch.len() < sh.opts.batch_envelopes && bytes < sh.opts.batch_bytes {
            match rx.try_recv() {
                Ok(out) => {
                    bytes += out.bytes.len();
                    batch.push(out);
                }
                Err(_) => break,
            }
        }
        let before = peer.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        if before >= sh.opts.queue_high_water && before - batch.len() < sh.opts.queue_high_water {
            peer.space.notify_waiters();
        }
        wait_for_credit(&sh, &peer).await;
        let frame = {
            let mut st = peer.state.lock();
            let stale = batch.iter().filter(|o| o.epoch != st.epoch).count();
            if stale > 0 {
                sh.stats.count_drop(DropReason::Fenced, stale as u64);
            }
            let envs: Vec<Bytes> = batch
                .drain(..)
                .filter(|o| o.epoch == st.epoch)
                .map(|o| o.bytes)
                .collect();
            if envs.is_empty() {
                continue;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            sh.stats
                .sent_envelopes
                .fetch_add(envs.len() as u64, Ordering::Relaxed);
            (
                st.out_session,
                seq,
                wire::encode_data(sh.inc, st.out_session, seq, &envs),
            )
        };
        let (session, seq, frame) = frame;
        match sh.client.publish(peer.subject.clone(), frame).await {
            Ok(()) => {
                sh.stats.sent_batches.fetch_add(1, Ordering::Relaxed);
                let mut st = peer.state.lock();
                if st.out_session == session {
                    st.published_seq = seq;
                }
            }
            Err(error) => {
                tracing::warn!(peer = %peer.name, %error, "cluster publish failed");
                let _ = sh.ctl.send(Ctl::PublishFailed(peer.clone()));
            }
        }
    }
}

async fn wait_for_credit(sh: &Shared, peer: &Peer) {
    loop {
        let notified = peer.credit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = peer.state.lock();
            if st.next_seq - 1 - st.acked_seq < sh.opts.window {
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

// ===== the control loop =====

/// Receives every frame for this node, runs heartbeats and failure detection. The only task
/// that judges sessions and ends connections after a frame, so a frame is never applied
/// after its session ended.
pub(crate) async fn control_loop(
    sh: Arc<Shared>,
    mut sub: async_nats::Subscriber,
    mut advisories: Option<async_nats::Subscriber>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut tick = tokio::time::interval(sh.opts.heartbeat / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = Instant::now();
    let prefix_len = format!("wsr.{}.n.{}.", sh.opts.cluster, sh.me).len();
    loop {
        tokio::select! {
            biased;
            cmd = ctl.recv() => match cmd {
                Some(cmd) => on_ctl(&sh, cmd),
                None => return,
            },
            msg = sub.next() => match msg {
                Some(msg) => {
                    let src = msg.subject.get(prefix_len..).unwrap_or_default().to_owned();
                    on_frame(&sh, &src, msg.payload);
                }
                None => return,
            },
            adv = next_advisory(&mut advisories) => {
                if let Some((node, inc)) = adv {
                    on_ctl(&sh, Ctl::Suspect { node, inc });
                }
            }
            _ = tick.tick() => {
                if last_beat.elapsed() >= sh.opts.heartbeat {
                    last_beat = Instant::now();
                    beat_all(&sh, false);
                }
                check_liveness(&sh);
            }
        }
    }
}

async fn next_advisory(sub: &mut Option<async_nats::Subscriber>) -> Option<(String, u32)> {
    let Some(s) = sub.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        let msg = match s.next().await {
            Some(msg) => msg,
            None => return std::future::pending().await,
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else {
            continue;
        };
        let name = json
            .pointer("/client/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        if let Some(parsed) = crate::parse_client_name(name) {
            return Some(parsed);
        }
    }
}

fn on_ctl(sh: &Arc<Shared>, cmd: Ctl) {
    match cmd {
        Ctl::Reconnected => beat_all(sh, true),
        Ctl::PublishFailed(peer) => {
            // The peer sees the new session start and ends its side too.
            sh.end_connection(&peer, "publish failed");
        }
        Ctl::Suspect { node, inc } => {
            let Some(peer) = sh.peers.read().get(&node).cloned() else {
                return;
            };
            let mut st = peer.state.lock();
            if st.peer_inc == Some(inc) && st.suspect_since.is_none() {
                tracing::debug!(peer = %node, "disconnect advisory: peer suspected");
                st.suspect_since = Some(Instant::now());
            }
            drop(st);
            sh.publish_control(&peer, sh.heartbeat(&peer, true));
        }
    }
}

fn beat_all(sh: &Arc<Shared>, probe: bool) {
    let peers: Vec<_> = sh.peers.read().values().cloned().collect();
    for peer in peers {
        sh.publish_control(&peer, sh.heartbeat(&peer, probe));
    }
}

fn check_liveness(sh: &Arc<Shared>) {
    let now = Instant::now();
    let peers: Vec<_> = sh.peers.read().values().cloned().collect();
    for peer in peers {
        if peer.is_down() {
            continue;
        }
        let dead = {
            let st = peer.state.lock();
            let silent = now.duration_since(st.last_heard);
            silent >= sh.opts.dead_after
                || st
                    .suspect_since
                    .is_some_and(|s| now.duration_since(s) >= sh.opts.suspect_window)
        };
        if dead {
            declare_down(sh, &peer);
        }
    }
}

fn declare_down(sh: &Arc<Shared>, peer: &Arc<Peer>) {
    peer.down.store(true, Ordering::Release);
    peer.state.lock().suspect_since = None;
    sh.stats.peer_downs.fetch_add(1, Ordering::Relaxed);
    sh.stats.set_peer(&peer.name, false);
    tracing::warn!(peer = %peer.name, "cluster peer declared down");
    sh.end_connection(peer, "peer down");
    peer.space.notify_waiters();
    let inc = peer.state.lock().peer_inc;
    if let Some(names) = sh.names.get() {
        names.release_node(sh, &peer.name, inc);
    }
}

fn heard(sh: &Arc<Shared>, peer: &Arc<Peer>) {
    let first = {
        let mut st = peer.state.lock();
        st.last_heard = Instant::now();
        st.suspect_since = None;
        !std::mem::replace(&mut st.heard_ever, true)
    };
    if peer.down.swap(false, Ordering::AcqRel) || first {
        tracing::info!(peer = %peer.name, "cluster peer up");
        sh.stats.set_peer(&peer.name, true);
    }
}

/// A frame from `src`.
fn on_frame(sh: &Arc<Shared>, src: &str, payload: Bytes) {
    let Some(peer) = sh.peer(src) else {
        sh.stats.count_drop(DropReason::Malformed, 1);
        return;
    };
    let frame = match wire::decode(payload) {
        Ok(frame) => frame,
        Err(error) => {
            tracing::warn!(peer = %src, %error, "dropping frame");
            sh.stats.count_drop(DropReason::Malformed, 1);
            return;
        }
    };
    sh.stats.received_batches.fetch_add(1, Ordering::Relaxed);
    let inc = match &frame {
        Frame::Data { inc, .. } | Frame::Reset { inc, .. } => *inc,
        Frame::Heartbeat(hb) => hb.inc,
    };
    check_incarnation(sh, &peer, inc);
    match frame {
        Frame::Data {
            session,
            seq,
            envelopes,
            ..
        } => {
            let verdict = peer.state.lock().judge_data(session, seq);
            match verdict {
                Verdict::Accept => {}
                Verdict::NewSession => {
                    sh.end_connection(&peer, "peer started a new session");
                    let v = peer.state.lock().judge_data(session, seq);
                    debug_assert_eq!(v, Verdict::Accept);
                }
                Verdict::Stale => {
                    sh.stats
                        .count_drop(DropReason::Fenced, envelopes.len() as u64);
                    return;
                }
                Verdict::Gap => {
                    reset(sh, &peer, session, "sequence gap");
                    sh.stats
                        .count_drop(DropReason::Fenced, envelopes.len() as u64);
                    return;
                }
            }
            heard(sh, &peer);
            sh.stats
                .received_envelopes
                .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
            for env in envelopes {
                match Envelope::decode(&env) {
                    Ok(env) => apply(sh, &peer, env),
                    Err(_) => sh.stats.count_drop(DropReason::Malformed, 1),
                }
            }
            let ack_due = {
                let mut st = peer.state.lock();
                st.received_since_ack += 1;
                st.received_since_ack >= sh.opts.window / 4
            };
            if ack_due {
                peer.state.lock().received_since_ack = 0;
                sh.publish_control(&peer, sh.heartbeat(&peer, false));
            }
        }
        Frame::Heartbeat(hb) => {
            let verdict = peer.state.lock().judge_heartbeat(hb.session, hb.published);
            match verdict {
                Verdict::Accept => {}
                Verdict::NewSession => sh.end_connection(&peer, "peer started a new session"),
                Verdict::Stale => return,
                Verdict::Gap => {
                    reset(sh, &peer, hb.session, "heartbeat shows lost frames");
                    return;
                }
            }
            {
                let mut st = peer.state.lock();
                if hb.ack_session == st.out_session && hb.ack_seq > st.acked_seq {
                    st.acked_seq = hb.ack_seq;
                    drop(st);
                    peer.credit.notify_waiters();
                }
            }
            heard(sh, &peer);
            if hb.probe {
                sh.publish_control(&peer, sh.heartbeat(&peer, false));
            }
        }
        Frame::Reset { session, .. } => {
            let ours = peer.state.lock().out_session == session;
            if ours {
                sh.end_connection(&peer, "reset by peer");
            }
        }
    }
}

/// Ends the connection because of lost frames in `session` and tells the peer.
fn reset(sh: &Arc<Shared>, peer: &Arc<Peer>, session: u64, why: &str) {
    peer.state.lock().fence(session);
    sh.end_connection(peer, why);
    sh.publish_control(peer, wire::encode_reset(sh.inc, session));
}

/// A new incarnation of the peer: its processes of the old one are gone.
fn check_incarnation(sh: &Arc<Shared>, peer: &Arc<Peer>, inc: u32) {
    let restarted = peer.state.lock().new_incarnation(inc);
    if let Some(old) = restarted {
        sh.end_connection(peer, "peer restarted");
        peer.state.lock().fenced.clear();
        if let Some(names) = sh.names.get() {
            names.release_node(sh, &peer.name, Some(old));
        }
    }
}

/// Applies one envelope from `peer` to the local node.
fn apply(sh: &Arc<Shared>, peer: &Arc<Peer>, env: Envelope) {
    let from_ok = env.sender().is_none_or(|p| p.node() == peer.name);
    if !from_ok || env.receiver().node() != sh.me {
        sh.stats.count_drop(DropReason::Forged, 1);
        return;
    }
    let node = &sh.node;
    match env {
        Envelope::Message { to, msg } => {
            if node.send(&to, msg).is_err() {
                sh.stats.count_drop(DropReason::NoProc, 1);
            }
        }
        Envelope::Monitor { watcher, target } => {
            peer.state
                .lock()
                .watched
                .insert((watcher.clone(), target.clone()));
            node.add_remote_watcher(watcher, &target);
        }
        Envelope::Demonitor { watcher, target } => {
            peer.state
                .lock()
                .watched
                .remove(&(watcher.clone(), target.clone()));
            node.remove_remote_watcher(&watcher, &target);
        }
        Envelope::Exit {
            watcher,
            target,
            result,
        } => {
            let held = peer
                .state
                .lock()
                .monitors
                .remove(&(watcher.clone(), target.clone()));
            if held {
                node.deliver_event(
                    &watcher,
                    Event::Exit {
                        from: target,
                        result,
                    },
                );
            }
        }
        Envelope::Link { from, to } => {
            peer.state.lock().links.insert((to.clone(), from.clone()));
            if !node.add_remote_link(from.clone(), &to) {
                let bytes = Envelope::LinkDown {
                    from: to.clone(),
                    to: from.clone(),
                    result: ExitResult::error(reason::NOPROC),
                }
                .encode();
                let mut st = peer.state.lock();
                if st.links.remove(&(to, from)) {
                    peer.push(&st, bytes);
                }
            }
        }
        Envelope::Unlink { from, to } => {
            peer.state.lock().links.remove(&(to.clone(), from.clone()));
            node.remove_remote_link(&from, &to);
        }
        Envelope::LinkDown { from, to, result } => {
            let held = peer.state.lock().links.remove(&(to.clone(), from.clone()));
            if held {
                node.deliver_event(&to, Event::LinkDown { from, result });
            }
        }
        Envelope::Cancel { from, to, reason } => {
            let _ = node.cancel(from.as_ref(), &to, reason);
        }
        Envelope::Terminate { to } => {
            let _ = node.terminate(&to);
        }
    }
}
