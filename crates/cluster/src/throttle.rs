//! At most one log line per second for events that anyone able to publish can cause.
//!
//! Garbage frames and refused peers are counted in the metrics; logging each one would let
//! a flood of them fill the logs, so their warnings pass through a [`Throttle`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a throttled event is logged at most.
const EVERY: Duration = Duration::from_secs(1);

/// Lets one event through per second.
#[derive(Debug)]
pub(crate) struct Throttle {
    start: Instant,
    /// Milliseconds after `start` of the last event let through, plus one (0: none yet).
    last: AtomicU64,
}

impl Throttle {
    /// A throttle that lets the first event through.
    pub(crate) fn new() -> Throttle {
        Throttle {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Whether this event may be logged.
    pub(crate) fn allow(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= EVERY.as_millis() as u64;
        due && self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_second_passes() {
        let t = Throttle::new();
        assert!(t.allow());
        assert!(!t.allow());
        assert!(!t.allow());
    }
}
