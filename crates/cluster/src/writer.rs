//! The per-peer writer: the only task that publishes data frames to its peer, so sequence
//! numbers go out in order, and the only one that awaits `publish` (a NATS outage blocks
//! it, never the app). It drains the peer's queue (per-sender lanes, module `lanes`) into
//! batches within the credit the peer granted: bytes and frames in flight, unacknowledged.
//!
//! It holds the peer weakly: a peer forgotten by the table (module `peers`) is dropped,
//! which wakes the writer, and the writer ends.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::batch::{BatchLimits, Out};
use crate::peer::Peer;
use crate::shared::{Ctl, Shared};
use crate::stats::DropReason;

/// Starts the writer of a new peer on the cluster runtime (a [`StartWriter`](crate::shared::StartWriter)).
pub(crate) fn start(sh: &Arc<Shared>, peer: &Arc<Peer>) {
    sh.rt
        .spawn(run(sh.clone(), Arc::downgrade(peer), peer.wake.clone()));
}

async fn run(sh: Arc<Shared>, peer: Weak<Peer>, wake: Arc<Notify>) {
    // A batch never outgrows a NATS payload (module `frame` adds less than the margin
    // `max_envelope` leaves), except for one envelope alone, which fits by itself.
    let limits = BatchLimits {
        envelopes: sh.opts.batch_envelopes.max(1),
        bytes: sh.opts.batch_bytes.min(sh.max_envelope),
    };
    let mut batch: Vec<Out> = Vec::with_capacity(limits.envelopes);
    loop {
        let Some(peer) = peer.upgrade() else { return };
        let taken = peer.state.lock().queue.take(&mut batch, limits);
        if batch.is_empty() {
            drop(peer);
            wake.notified().await;
            continue;
        }
        peer.release(taken.envelopes, taken.bytes, &sh.opts);
        sh.stats.count_group_sets_out(taken.group_sets);
        let bytes = batch.iter().map(|o| o.bytes.len()).sum();
        let len = sh.codec.data_len(&peer.name, batch.len(), bytes);
        wait_for_credit(&sh, &peer, len as u64).await;
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
    let (numbers, envs) = {
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
        let bytes = envs.iter().map(Bytes::len).sum();
        st.sent_bytes += sh.codec.data_len(&peer.name, envs.len(), bytes) as u64;
        st.next_seq += 1;
        // The peer's session accepted here goes with the frame: a restarted peer's first
        // frame tells whether it accepted ours from its start (`end_restarted_connection`).
        ((st.out_session, st.next_seq - 1, st.ack().0), envs)
    };
    let (session, seq, _) = numbers;
    Some(Sealed {
        session,
        seq,
        frame: sh.codec.data(&peer.name, numbers, &envs),
        envelopes: envs.len(),
    })
}

/// Waits until a frame of `len` bytes is within the credit (see `PeerState::has_credit`).
/// Acknowledgements, a new grant and the end of the connection wake it; it also looks
/// again every 100 ms, so a wake-up missed by a bug would cost a pause, not the peer.
async fn wait_for_credit(sh: &Shared, peer: &Peer, len: u64) {
    let own = sh.opts.grant();
    loop {
        let notified = peer.credit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if peer.state.lock().has_credit(len, own) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}
