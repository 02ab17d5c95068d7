//! Frames from other nodes: checked, judged by the peer's session, then applied.
//!
//! Runs only on the control loop (module `control`), the one task that judges sessions and
//! ends connections after a frame, so a frame is never applied after its session ended.
//! Nothing about a peer is created or changed before its frame is accepted by the codec
//! (module `frame`): decoded completely, addressed consistently and, with a cluster secret,
//! authenticated.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wsrelay_process::{reason, Event, ExitResult};

use crate::envelope::Envelope;
use crate::frame::{Body, Frame, Heartbeat, Rejected};
use crate::peer::{Peer, Verdict};
use crate::shared::Shared;
use crate::stats::DropReason;

/// A NATS message on `wsr.<cluster>.n.<me>.<src>`; `prefix_len` is the length up to `<src>`.
pub(crate) fn on_message(sh: &Arc<Shared>, subject: &str, prefix_len: usize, payload: Bytes) {
    let src = subject.get(prefix_len..).unwrap_or_default();
    // Credit counts whole payloads, as the sender's writer counts what it publishes.
    let len = payload.len() as u64;
    let frame = match sh.codec.open(src, payload) {
        Ok(frame) => frame,
        Err(rejected) => return refuse(sh, src, rejected),
    };
    let peer = match (&frame.body, sh.peer(src)) {
        (_, Some(peer)) => peer,
        // A reset ends a session of ours; a peer not known has none.
        (Body::Reset { .. }, None) => return,
        (_, None) => match sh.open_peer(src) {
            Some(peer) => peer,
            None => return, // the table is full: counted and logged there
        },
    };
    sh.stats.count_received_batch();
    on_frame(sh, &peer, frame, len);
}

/// Counts a refused frame; logs at most one a second (anyone who can publish can send them).
fn refuse(sh: &Shared, src: &str, rejected: Rejected) {
    sh.stats.count_drop(rejected.reason(), 1);
    if sh.refused_frames.allow() {
        tracing::warn!(subject_source = %src, error = %rejected, "dropping frame (at most one such warning a second)");
    }
}

fn on_frame(sh: &Arc<Shared>, peer: &Arc<Peer>, frame: Frame, len: u64) {
    let acked = match &frame.body {
        Body::Data { ack_session, .. } => *ack_session,
        Body::Heartbeat(hb) => hb.ack_session,
        Body::Reset { .. } => 0,
    };
    check_incarnation(sh, peer, frame.inc, acked);
    match frame.body {
        Body::Data {
            session,
            seq,
            envelopes,
            ..
        } => on_data(sh, peer, (session, seq, len), acked, envelopes),
        Body::Heartbeat(hb) => on_heartbeat(sh, peer, &hb),
        Body::Reset { session, kept } => {
            let ours = peer.state.lock().out_session == session;
            match (ours, kept) {
                (true, true) => sh.end_outbound(peer),
                (true, false) => sh.end_connection(peer, "reset by peer"),
                (false, _) => {}
            }
        }
    }
}

/// Data frame `seq` of `session`, `len` bytes, which says the peer accepts this node's
/// session `ack_session`.
fn on_data(
    sh: &Arc<Shared>,
    peer: &Arc<Peer>,
    (session, seq, len): (u64, u64, u64),
    ack_session: u64,
    envelopes: Vec<Bytes>,
) {
    let verdict = peer.state.lock().judge_data(session, seq, len);
    match verdict {
        Verdict::Accept => {}
        Verdict::NewSession => {
            new_session(sh, peer);
            let v = peer.state.lock().judge_data(session, seq, len);
            debug_assert_eq!(v, Verdict::Accept);
        }
        Verdict::Stale => {
            sh.stats
                .count_drop(DropReason::Fenced, envelopes.len() as u64);
            return;
        }
        Verdict::Gap => {
            reset(sh, peer, session, ack_session, "sequence gap");
            sh.stats
                .count_drop(DropReason::Fenced, envelopes.len() as u64);
            return;
        }
    }
    if !heard(sh, peer) {
        sh.stats
            .count_drop(DropReason::Fenced, envelopes.len() as u64);
        return;
    }
    sh.stats.count_received_envelopes(envelopes.len());
    // One wake-up per shard for the whole frame, not one per envelope (most of a frame's
    // envelopes go to different connections of the same shard).
    let wakes = sh.node.wake_batch();
    for env in envelopes {
        match Envelope::decode(&env) {
            Ok(env) => apply(sh, peer, env),
            Err(_) => sh.stats.count_drop(DropReason::Malformed, 1),
        }
    }
    drop(wakes);
    let ack_due = peer.state.lock().ack_due(len, sh.opts.grant());
    if ack_due {
        sh.publish_control(peer, sh.heartbeat(peer, false));
    }
}

fn on_heartbeat(sh: &Arc<Shared>, peer: &Arc<Peer>, hb: &Heartbeat) {
    let verdict = peer.state.lock().judge_heartbeat(hb.session, hb.published);
    match verdict {
        Verdict::Accept => {}
        Verdict::NewSession => new_session(sh, peer),
        Verdict::Stale => return,
        Verdict::Gap => {
            reset(
                sh,
                peer,
                hb.session,
                hb.ack_session,
                "heartbeat shows lost frames",
            );
            return;
        }
    }
    let more_credit = peer.state.lock().on_ack(hb);
    if more_credit {
        peer.credit.notify_waiters();
    }
    if heard(sh, peer) && hb.probe {
        sh.publish_control(peer, sh.heartbeat(peer, false));
    }
}

/// The peer spoke in its current session: it is alive (again). False if the table removed
/// this peer meanwhile (a frame that raced its removal): it stays down, and the frame is
/// dropped; the sender notices the gap and starts over with the table's new peer.
fn heard(sh: &Shared, peer: &Peer) -> bool {
    let first = {
        let mut st = peer.state.lock();
        if st.retired {
            return false;
        }
        st.last_heard = Instant::now();
        st.suspect_since = None;
        if st.down_since.take().is_some() {
            // Up again: what was held early is an ordinary relation of the live connection.
            st.early = std::collections::HashMap::new();
        }
        !std::mem::replace(&mut st.heard_ever, true)
    };
    let revived = peer.down.swap(false, std::sync::atomic::Ordering::AcqRel);
    if revived || first {
        tracing::info!(peer = %peer.name, "cluster peer up");
        // Not evictable from here on (not down), so the series cannot outlive the peer.
        sh.stats.set_peer_up(&peer.name, true);
    }
    if revived {
        // Declaring it down dropped our memberships there too (if it noticed): send them.
        sh.push_group_snapshot(peer);
    }
    if revived || first {
        // Its names were released if it was declared down (also if the table forgot it
        // since): what it registers from now on is not a late entry of a lost run.
        let inc = peer.state.lock().peer_inc;
        if let (Some(names), Some(inc)) = (&sh.names, inc) {
            names.node_back(&peer.name, inc);
        }
    }
    true
}

/// The peer started a new session: the old one ends here (no RESET). A peer does that after
/// it declared this node down, which released this node's names there: check them.
fn new_session(sh: &Shared, peer: &Peer) {
    sh.end_connection(peer, "peer started a new session");
    if let Some(names) = &sh.names {
        names.check_own();
    }
}

/// Ends the connection because of lost frames in `session` (whose frame acknowledged this
/// node's session `ack`) and tells the peer.
///
/// Unless the frame was meant for another run of this node (`sealed_for_another_run`):
/// frames of the peer's session that went to this node's earlier run, before the peer heard
/// this run, or in flight when it did. Nothing of the peer's was accepted here, so nothing is
/// lost on this side: only the peer's session ends (a reset with `kept`), and this side goes
/// on. Ending it too would end what the peer already accepted of this run (its first frames,
/// crossing that stale one), and the peer would end its side again, failing what it made
/// towards this run (`tests/restart.rs`, `an_early_monitor_with_a_frame_of_the_old_session_in_flight_gets_the_real_exit`).
fn reset(sh: &Shared, peer: &Peer, session: u64, ack: u64, why: &str) {
    let kept = {
        let mut st = peer.state.lock();
        st.fence(session);
        st.sealed_for_another_run(ack)
    };
    if !kept {
        sh.end_connection(peer, why);
    }
    sh.publish_control(peer, sh.codec.reset(&peer.name, session, kept));
}

/// A new incarnation of the peer: its processes of the old one are gone. `acked` is this
/// node's session that the frame says the sender accepted (0: none, or a hello).
fn check_incarnation(sh: &Shared, peer: &Peer, inc: u32, acked: u64) {
    let restarted = peer.state.lock().new_incarnation(inc);
    if let Some(old) = restarted {
        // The old run's members are gone with it; the new run announces its own.
        sh.inbound.group_node_down(&peer.name);
        sh.end_restarted_connection(peer, inc, acked);
        peer.state.lock().fenced.clear();
        if let Some(names) = &sh.names {
            names.release_node(&peer.name, Some(old));
        }
    }
}

/// Applies one envelope from `peer` to the local node.
fn apply(sh: &Shared, peer: &Peer, env: Envelope) {
    let from_ok = env.sender().is_none_or(|p| p.node() == peer.name);
    let members_ok = match &env {
        Envelope::GroupSet { members, .. } => members.iter().all(|(p, _)| p.node() == peer.name),
        _ => true,
    };
    if !from_ok || !members_ok || env.receiver().is_some_and(|to| to.node() != sh.me) {
        sh.stats.count_drop(DropReason::Forged, 1);
        return;
    }
    let inbound = &sh.inbound;
    match env {
        Envelope::Message { to, msg } => {
            if inbound.send(&to, msg).is_err() {
                sh.stats.count_drop(DropReason::NoProc, 1);
            }
        }
        Envelope::Monitor { watcher, target } => {
            peer.state
                .lock()
                .watched
                .insert((watcher.clone(), target.clone()));
            inbound.monitor(&watcher, &target);
        }
        Envelope::Demonitor { watcher, target } => {
            peer.state
                .lock()
                .watched
                .remove(&(watcher.clone(), target.clone()));
            inbound.demonitor(&watcher, &target);
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
                inbound.event(
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
            if !inbound.link(&from, &to) {
                let env = Envelope::LinkDown {
                    from: to.clone(),
                    to: from.clone(),
                    result: ExitResult::error(reason::NOPROC),
                };
                let bytes = env.encode();
                let mut st = peer.state.lock();
                if st.links.remove(&(to, from)) {
                    peer.push(&mut st, env.lane(), bytes);
                }
            }
        }
        Envelope::Unlink { from, to } => {
            peer.state.lock().links.remove(&(to.clone(), from.clone()));
            inbound.unlink(&from, &to);
        }
        Envelope::LinkDown { from, to, result } => {
            let held = peer.state.lock().links.remove(&(to.clone(), from.clone()));
            if held {
                inbound.event(&to, Event::LinkDown { from, result });
            }
        }
        Envelope::Cancel { from, to, reason } => {
            let _ = inbound.cancel(from.as_ref(), &to, reason);
        }
        Envelope::Terminate { to } => {
            let _ = inbound.terminate(&to);
        }
        Envelope::GroupSend { scope, group, msg } => {
            inbound.group_send(&scope, &group, msg);
        }
        Envelope::GroupSync { end: false } => inbound.group_sync_begin(&peer.name),
        Envelope::GroupSync { end: true } => inbound.group_sync_end(&peer.name),
        Envelope::GroupSet {
            scope,
            group,
            members,
        } => {
            sh.stats.count_group_set_in();
            let refused = inbound.group_set(&peer.name, &scope, &group, &members);
            if refused > 0 && sh.group_cap.allow() {
                tracing::warn!(peer = %peer.name, scope = %scope, refused, "remote group members over the cap for one node ignored (at most one such warning a second)");
            }
        }
    }
}

/// A hello on `wsr.<cluster>.all.<src>`: a node started (or reconnected). Knowing it (and
/// answering with a probe, so it knows this node) starts the exchange of group snapshots.
pub(crate) fn on_hello(sh: &Arc<Shared>, subject: &str, prefix_len: usize, payload: Bytes) {
    let src = subject.get(prefix_len..).unwrap_or_default();
    if src == sh.me {
        return;
    }
    let inc = match sh.codec.open_hello(src, payload) {
        Ok(inc) => inc,
        Err(rejected) => return refuse(sh, src, rejected),
    };
    let Some(peer) = sh.peer(src).or_else(|| sh.open_peer(src)) else {
        return;
    };
    check_incarnation(sh, &peer, inc, 0);
    sh.publish_control(&peer, sh.heartbeat(&peer, true));
}
