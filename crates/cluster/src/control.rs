//! The control loop: one task per node that receives every frame for this node, sends
//! heartbeats, judges liveness (declares peers down) and forgets peers long down.
//!
//! Being the only task that judges sessions and ends connections after a frame, it never
//! applies a frame after its session ended, and it is the only one that revives a peer.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::advisory;
use crate::inbound;
use crate::peer::Peer;
use crate::shared::{Ctl, Shared};

/// Runs until the subscription or the command channel closes.
pub(crate) async fn run(
    sh: Arc<Shared>,
    mut sub: async_nats::Subscriber,
    mut advisories: Option<async_nats::Subscriber>,
    mut hellos: Option<async_nats::Subscriber>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut tick = tokio::time::interval(sh.opts.heartbeat / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = Instant::now();
    let prefix_len = format!("wsr.{}.n.{}.", sh.opts.cluster, sh.me).len();
    let hello_prefix_len = format!("wsr.{}.all.", sh.opts.cluster).len();
    hello(&sh);
    loop {
        // Biased: commands (a failed publish) before frames, frames before timers, so a
        // burst of frames is judged before the silence it ends is.
        tokio::select! {
            biased;
            cmd = ctl.recv() => match cmd {
                Some(cmd) => on_ctl(&sh, cmd),
                None => return,
            },
            msg = sub.next() => match msg {
                Some(msg) => inbound::on_message(&sh, &msg.subject, prefix_len, msg.payload),
                None => return,
            },
            msg = next_hello(&mut hellos) => {
                if let Some(msg) = msg {
                    inbound::on_hello(&sh, &msg.subject, hello_prefix_len, msg.payload);
                }
            }
            adv = advisory::next(&mut advisories) => {
                if let Some((node, inc)) = adv {
                    on_suspect(&sh, &node, inc);
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

fn on_ctl(sh: &Arc<Shared>, cmd: Ctl) {
    match cmd {
        Ctl::Reconnected => {
            beat_all(sh, true);
            hello(sh);
        }
        Ctl::SyncGroups(peer) => sh.push_group_snapshot(&peer),
        Ctl::PublishFailed(peer) => {
            // The peer sees the new session start and ends its side too.
            sh.end_connection(&peer, "publish failed");
        }
    }
}

/// Announces this node on `wsr.<cluster>.all.<me>` (only when groups span the cluster): the
/// other nodes learn of it and exchange group snapshots with it.
fn hello(sh: &Shared) {
    if !sh.opts.groups {
        return;
    }
    let client = sh.client.clone();
    let subject = format!("wsr.{}.all.{}", sh.opts.cluster, sh.me);
    let frame = sh.codec.hello();
    sh.rt.spawn(async move {
        let _ = client.publish(subject, frame).await;
    });
}

/// The next hello, or never if there is no hello subscription (or it ended).
async fn next_hello(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => match s.next().await {
            Some(msg) => Some(msg),
            None => {
                *sub = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// A DISCONNECT advisory named run `inc` of `node`: suspect it and probe it.
fn on_suspect(sh: &Shared, node: &str, inc: u32) {
    let Some(peer) = sh.peer(node) else {
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

fn beat_all(sh: &Shared, probe: bool) {
    for peer in sh.peers.all() {
        sh.publish_control(&peer, sh.heartbeat(&peer, probe));
    }
}

/// Declares silent peers down, fails what is held early towards a down peer's run not heard
/// from in time (and drops what waited for such a run of a peer up), and forgets peers down
/// for `forget_after`.
fn check_liveness(sh: &Arc<Shared>) {
    let now = Instant::now();
    for peer in sh.peers.all() {
        sh.expire_held(&peer, now);
        let st = peer.state.lock();
        if let Some(since) = st.down_since {
            drop(st);
            sh.expire_early(&peer, now);
            if now.duration_since(since) >= sh.opts.forget_after && sh.peers.forget(&peer) {
                tracing::info!(peer = %peer.name, "cluster peer forgotten (down too long)");
            }
            continue;
        }
        let dead = now.duration_since(st.last_heard) >= sh.opts.dead_after
            || st
                .suspect_since
                .is_some_and(|s| now.duration_since(s) >= sh.opts.suspect_window);
        drop(st);
        if dead {
            declare_down(sh, &peer);
        }
    }
}

/// Fails everything across the connection with `noconnection` and refuses new sends until
/// the peer speaks again.
fn declare_down(sh: &Shared, peer: &Arc<Peer>) {
    // `down` first: from here on, `routing` fails new monitors and links at once instead of
    // adding them to the relations that `end_connection` takes below.
    peer.down.store(true, std::sync::atomic::Ordering::Release);
    // The series before `down_since`: once that is set the table may remove the peer (and
    // its series) at any time, and a later update would bring the series back.
    if peer.state.lock().heard_ever {
        sh.stats.set_peer_up(&peer.name, false);
    }
    let inc = {
        let mut st = peer.state.lock();
        st.suspect_since = None;
        st.down_since = Some(Instant::now());
        st.peer_inc
    };
    sh.stats.count_peer_down();
    tracing::warn!(peer = %peer.name, "cluster peer declared down");
    sh.end_connection(peer, "peer down");
    peer.space.notify_waiters();
    // Its members leave every group here at once (one notification per scope).
    sh.inbound.group_node_down(&peer.name);
    if let Some(names) = &sh.names {
        names.release_node(&peer.name, inc);
    }
}
