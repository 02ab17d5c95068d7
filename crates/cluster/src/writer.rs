//! The per-peer writer: the only task that publishes data frames to its peer, so sequence
//! numbers go out in order, and the only one that awaits `publish` (a NATS outage blocks
//! it, never the app). It drains the peer's queue into batches within the credit (window of
//! unacknowledged frames) the peer granted.
//!
//! It holds the peer weakly: a peer forgotten by the table (module `peers`) is dropped, its
//! queue closes and the writer ends.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::peer::{Out, Peer};
use crate::shared::{Ctl, Shared};
use crate::stats::DropReason;

/// Starts the writer of a new peer on the cluster runtime (a [`StartWriter`](crate::shared::StartWriter)).
pub(crate) fn start(sh: &Arc<Shared>, peer: &Arc<Peer>, rx: mpsc::UnboundedReceiver<Out>) {
    sh.rt.spawn(run(sh.clone(), Arc::downgrade(peer), rx));
}

async fn run(sh: Arc<Shared>, peer: Weak<Peer>, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut batch: Vec<Out> = Vec::with_capacity(sh.opts.batch_envelopes);
    while let Some(first) = rx.recv().await {
        let Some(peer) = peer.upgrade() else { return };
        batch.push(first);
        fill(&sh, &mut rx, &mut batch);
        release_queue(&sh, &peer, batch.len());
        wait_for_credit(&sh, &peer).await;
        let Some(sealed) = seal(&sh, &peer, &mut batch) else {
            continue;
        };
        match sh.client.publish(peer.subject.clone(), sealed.frame).await {
            Ok(()) => {
                sh.stats.count_sent(sealed.envelopes);
                let mut st = peer.state.lock();
                if st.out_session == sealed.session {
                    st.published_seq = sealed.seq;
                }
            }
            Err(error) => {
                tracing::warn!(peer = %peer.name, %error, "cluster publish failed");
                let _ = sh.ctl.send(Ctl::PublishFailed(peer.clone()));
            }
        }
    }
}

/// Adds what is queued already, up to the batch limits.
fn fill(sh: &Shared, rx: &mut mpsc::UnboundedReceiver<Out>, batch: &mut Vec<Out>) {
    let mut bytes: usize = batch.iter().map(|o| o.bytes.len()).sum();
    while batch.len() < sh.opts.batch_envelopes && bytes < sh.opts.batch_bytes {
        match rx.try_recv() {
            Ok(out) => {
                bytes += out.bytes.len();
                batch.push(out);
            }
            Err(_) => break,
        }
    }
}

/// Takes `n` envelopes off the queue count, waking senders held at the high-water mark.
fn release_queue(sh: &Shared, peer: &Peer, n: usize) {
    let before = peer
        .queued
        .fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    let high_water = sh.opts.queue_high_water;
    if before >= high_water && before - n < high_water {
        peer.space.notify_waiters();
    }
}

/// A batch numbered and encoded, ready to publish.
struct Sealed {
    session: u64,
    seq: u64,
    frame: Bytes,
    envelopes: usize,
}

/// Numbers the batch in the current session and encodes it; envelopes queued before the
/// connection last ended are dropped (fenced). `None` if nothing is left. Encoding (and
/// signing) runs after the peer's lock is released: senders queue under that lock.
fn seal(sh: &Shared, peer: &Peer, batch: &mut Vec<Out>) -> Option<Sealed> {
    let (session, seq, envs) = {
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
            return None;
        }
        st.next_seq += 1;
        (st.out_session, st.next_seq - 1, envs)
    };
    Some(Sealed {
        session,
        seq,
        frame: sh.codec.data(&peer.name, session, seq, &envs),
        envelopes: envs.len(),
    })
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
