//! Origin patterns (docs/spec.md §5): never panic, `*` allows everything, no `Origin` is always
//! allowed, a pattern equal to a well-formed origin allows that origin, a wildcard never
//! reaches past the host (or port) it stands in, and same-origin on a loopback listener
//! trusts loopback host names only (DNS rebinding).
//!
//! Input: lines `patterns`, `origin`, `host` (a missing line is a missing header).

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

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

    if let Ok(policy) = OriginPolicy::parse(patterns) {
        let _ = policy.allows(origin, host);
        assert!(policy.allows(None, host), "no Origin is always allowed");
        let open = OriginPolicy::parse(&format!("{patterns}, *")).expect("still valid");
        assert!(open.allows(origin, host), "`*` allows everything");
    }
    let Some(origin) = origin else {
        return;
    };
    let lower = origin.trim().to_ascii_lowercase();
    if !lower.contains([',', '*']) && lower.contains("://") {
        if let Ok(exact) = OriginPolicy::parse(&lower) {
            assert!(exact.allows(Some(origin), None), "{lower:?} must allow {origin:?}");
        }
    }
    wildcards_stay_in_their_part(origin, &lower);
    loopback_listener_trusts_loopback_names(origin, host);
});

fn wildcards_stay_in_their_part(origin: &str, lower: &str) {
    let wild = OriginPolicy::parse("https://*.example.com").expect("valid");
    if wild.allows(Some(origin), None) {
        let host = lower.strip_prefix("https://").expect("https only");
        assert!(host.ends_with(".example.com"), "{origin:?}");
        assert!(
            host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{origin:?}"
        );
    }
    let any_port = OriginPolicy::parse("localhost:*").expect("valid");
    if any_port.allows(Some(origin), None) {
        let authority = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
            .expect("http or https only");
        let (name, port) = authority.split_once(':').unwrap_or((authority, "80"));
        assert_eq!(name, "localhost", "{origin:?}");
        assert!(port.bytes().all(|b| b.is_ascii_digit()), "{origin:?}");
    }
}

fn loopback_listener_trusts_loopback_names(origin: &str, host: Option<&str>) {
    let listener: SocketAddr = "127.0.0.1:8080".parse().expect("valid");
    let same = OriginPolicy::default();
    if same.check(Some(origin), host, Some(listener)).is_ok() {
        let host = host.expect("same origin needs a Host").trim().to_ascii_lowercase();
        let loopback = match host.strip_prefix('[') {
            Some(v6) => v6
                .split(']')
                .next()
                .and_then(|ip| ip.parse::<Ipv6Addr>().ok())
                .is_some_and(|ip| ip.is_loopback()),
            None => {
                let name = host.split(':').next().unwrap_or_default();
                name == "localhost" || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            }
        };
        assert!(loopback, "Host {host:?} passed on a loopback listener");
    }
}
