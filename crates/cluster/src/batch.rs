//! What the writer sends a peer in one NATS message: envelopes stamped with their connection
//! epoch, taken from the peer's queue (its membership announcements, then its lanes) within
//! the batch's limits.

use bytes::Bytes;

/// An envelope waiting for the writer, stamped with the connection epoch it belongs to.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) epoch: u64,
    pub(crate) bytes: Bytes,
}

/// What a batch may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Envelopes at most.
    pub(crate) envelopes: usize,
    /// Bytes at most (envelopes and their 4-byte length prefixes), unless the batch holds
    /// only one envelope.
    pub(crate) bytes: usize,
}
