//! Origin patterns (SPEC §5): never panic, `*` allows everything, no `Origin` is always
//! allowed, and a pattern equal to a well-formed origin allows that origin.
//!
//! Input: lines `patterns`, `origin`, `host` (a missing line is a missing header).

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrelay_relay::OriginPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let patterns = lines.next().unwrap_or_default();
    let origin = lines.next();
    let host = lines.next();

    let policy = OriginPolicy::parse(patterns);
    let _ = policy.allows(origin, host);
    assert!(policy.allows(None, host), "no Origin is always allowed");
    let open = OriginPolicy::parse(&format!("{patterns}, *"));
    assert!(open.allows(origin, host), "`*` allows everything");

    if let Some(origin) = origin {
        let lower = origin.trim().to_ascii_lowercase();
        let well_formed = lower.split_once("://").is_some_and(|(scheme, authority)| {
            !scheme.is_empty()
                && !authority.is_empty()
                && !authority.contains(['/', '@', '?', '#', ' ', ',', '*'])
                && !scheme.contains([',', '*'])
        }) && !lower.contains(char::is_whitespace);
        if well_formed {
            let exact = OriginPolicy::parse(&lower);
            assert!(
                exact.allows(Some(origin), None),
                "{lower:?} must allow {origin:?}"
            );
        }
    }
});
