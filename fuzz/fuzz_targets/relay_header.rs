//! `X-WS-Relay` header parsing (docs/spec.md §4): never panics, and what it accepts is valid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrelay_relay::RelayTarget;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = RelayTarget::from_header(data) else {
        return;
    };
    assert!(!target.target.is_empty());
    assert_eq!(target.target, target.target.trim());
    assert!(!target.message_topic.is_empty());
    assert!(!target.message_topic.starts_with('@'));
    if let Some(period) = target.heartbeat_interval {
        assert!(!period.is_zero());
        // The connection schedules the heartbeat at `now + period`: what the parser accepts
        // must be a time the clock can reach.
        assert!(
            std::time::Instant::now().checked_add(period).is_some(),
            "heartbeat_interval {period:?} overflows the clock"
        );
    }
    // A header that parsed is a JSON object, so the same text parses the same way again.
    assert_eq!(RelayTarget::from_header(data).ok(), Some(target));
});
