use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderValue, HOST, ORIGIN};
use proptest::prelude::*;

use super::*;

fn policy(patterns: &str) -> OriginPolicy {
    OriginPolicy::parse(patterns).expect("valid patterns")
}

#[test]
fn table() {
    // (patterns, origin, host, allowed)
    let cases: &[(&str, Option<&str>, Option<&str>, bool)] = &[
        ("", None, Some("a.com"), true),
        ("", Some("http://a.com"), Some("a.com"), true),
        ("", Some("http://a.com"), Some("a.com:80"), true),
        ("", Some("https://a.com"), Some("a.com:443"), true),
        ("", Some("https://a.com"), Some("a.com:80"), false),
        ("", Some("http://a.com:8080"), Some("a.com:8080"), true),
        ("", Some("http://a.com:8080"), Some("a.com"), false),
        ("", Some("http://A.COM"), Some("a.com"), true),
        ("", Some("http://evil.com"), Some("a.com"), false),
        ("", Some("http://a.com"), None, false),
        ("", Some("null"), Some("a.com"), false),
        ("", Some("http://a.com/"), Some("a.com"), false),
        ("", Some("http://[::1]:8080"), Some("[::1]:8080"), true),
        ("*", Some("null"), Some("a.com"), true),
        ("*", Some("http://anything"), None, true),
        (
            "https://app.example.com",
            Some("https://app.example.com"),
            None,
            true,
        ),
        (
            "https://app.example.com",
            Some("http://app.example.com"),
            None,
            false,
        ),
        (
            "https://app.example.com",
            Some("https://app.example.com:8443"),
            None,
            false,
        ),
        (
            "https://app.example.com",
            Some("https://app.example.com:443"),
            None,
            true,
        ),
        (
            "https://*.example.com",
            Some("https://a.example.com"),
            None,
            true,
        ),
        (
            "https://*.example.com",
            Some("https://a.b.example.com"),
            None,
            true,
        ),
        (
            "https://*.example.com",
            Some("https://example.com"),
            None,
            false,
        ),
        (
            "https://*.example.com",
            Some("https://evil.com/.example.com"),
            None,
            false,
        ),
        (
            "https://*.example.com",
            Some("https://evil.com?.example.com"),
            None,
            false,
        ),
        // A wildcard stands for host characters only: no backslash, no port, no path.
        (
            "https://*.example.com",
            Some("https://evil.com\\.example.com"),
            None,
            false,
        ),
        (
            "https://*.example.com",
            Some("https://evil.com:443.example.com"),
            None,
            false,
        ),
        (
            "https://*.example.com",
            Some("https://evil.com#.example.com"),
            None,
            false,
        ),
        (
            "https://*.example.com",
            Some("https://a@evil.example.com"),
            None,
            false,
        ),
        (
            "app.example.com",
            Some("https://app.example.com"),
            None,
            true,
        ),
        (
            "app.example.com",
            Some("http://app.example.com"),
            None,
            true,
        ),
        (
            "app.example.com",
            Some("http://app.example.com:81"),
            None,
            false,
        ),
        // Scheme-less patterns are for web pages: http and https only.
        (
            "app.example.com",
            Some("ftp://app.example.com"),
            None,
            false,
        ),
        (
            "app.example.com",
            Some("chrome-extension://app.example.com"),
            None,
            false,
        ),
        ("localhost:*", Some("http://localhost:3000"), None, true),
        ("localhost:*", Some("http://localhost"), None, true),
        (
            "localhost:*",
            Some("http://localhost:3000.evil.com"),
            None,
            false,
        ),
        (
            "localhost:*",
            Some("http://localhost.evil.com:3000"),
            None,
            false,
        ),
        ("localhost:3000", Some("http://localhost:3000"), None, true),
        ("localhost:3000", Some("http://localhost:3001"), None, false),
        (" a.com , B.com ", Some("http://b.com"), None, true),
        ("a.com", Some("null"), None, false),
        ("a.com", Some("garbage"), None, false),
    ];
    for &(patterns, origin, host, allowed) in cases {
        assert_eq!(
            policy(patterns).allows(origin, host),
            allowed,
            "patterns {patterns:?} origin {origin:?} host {host:?}"
        );
    }
}

#[test]
fn bad_patterns_are_configuration_errors() {
    for bad in ["https://app.example.com/", "a.com:x", "https://", "a b.com"] {
        let err = OriginPolicy::parse(&format!("a.com, {bad}")).unwrap_err();
        assert!(err.contains(bad.trim()), "{bad}: {err}");
    }
}

fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:8080".parse().unwrap())
}

/// DNS rebinding: `evil.com` re-resolved to 127.0.0.1 sends its own name as `Host` and
/// `Origin`, which same-origin alone would accept.
#[test]
fn a_loopback_listener_accepts_only_loopback_host_names() {
    let same = OriginPolicy::default();
    let rebound = same.check(
        Some("http://evil.com:8080"),
        Some("evil.com:8080"),
        loopback(),
    );
    assert!(
        matches!(rebound, Err(OriginRefusal::NotLoopback { ref host }) if host == "evil.com"),
        "{rebound:?}"
    );
    for host in [
        "localhost:8080",
        "127.0.0.1:8080",
        "127.0.0.2:8080",
        "[::1]:8080",
    ] {
        let origin = format!("http://{host}");
        assert_eq!(
            same.check(Some(&origin), Some(host), loopback()),
            Ok(()),
            "{host}"
        );
    }
    let v6: SocketAddr = "[::1]:8080".parse().unwrap();
    assert!(same
        .check(
            Some("http://evil.com:8080"),
            Some("evil.com:8080"),
            Some(v6)
        )
        .is_err());
    // Not a loopback listener: Host is trusted as before.
    let public: SocketAddr = "10.1.2.3:8080".parse().unwrap();
    assert_eq!(
        same.check(
            Some("http://app.com:8080"),
            Some("app.com:8080"),
            Some(public)
        ),
        Ok(())
    );
    // An allow-list decides by itself, on any listener.
    assert_eq!(
        policy("app.com:8080").check(
            Some("http://app.com:8080"),
            Some("app.com:8080"),
            loopback()
        ),
        Ok(())
    );
    // No Origin: not a browser, allowed.
    assert_eq!(same.check(None, Some("evil.com"), loopback()), Ok(()));
}

#[test]
fn several_or_unreadable_origin_headers_are_refused() {
    let same = OriginPolicy::default();
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("a.com"));
    assert_eq!(same.check_headers(&headers, None), Ok(()));
    headers.insert(ORIGIN, HeaderValue::from_static("http://a.com"));
    assert_eq!(same.check_headers(&headers, None), Ok(()));
    headers.append(ORIGIN, HeaderValue::from_static("http://a.com"));
    assert_eq!(
        same.check_headers(&headers, None),
        Err(OriginRefusal::Several)
    );
    assert_eq!(
        policy("*").check_headers(&headers, None),
        Err(OriginRefusal::Several),
        "even `*` refuses an ambiguous request"
    );
    headers.insert(ORIGIN, HeaderValue::from_bytes(b"http://\xe9.com").unwrap());
    assert!(matches!(
        policy("*").check_headers(&headers, None),
        Err(OriginRefusal::Malformed { .. })
    ));
    headers.insert(ORIGIN, HeaderValue::from_static("http://a.com"));
    headers.append(HOST, HeaderValue::from_static("a.com"));
    assert!(
        same.check_headers(&headers, None).is_err(),
        "two Host headers: no single host to be the same origin as"
    );
}

/// Origins made of the characters that once slipped past the matcher.
fn tricky_origin() -> impl Strategy<Value = String> {
    "(https?|ftp)://[a-z0-9.:@/\\\\?#_*\\[\\]-]{0,30}"
}

proptest! {
    #[test]
    fn literal_patterns_match_themselves(host in "[a-z]{1,10}\\.[a-z]{2,3}") {
        let origin = format!("https://{host}");
        prop_assert!(policy(&host).allows(Some(&origin), None));
        prop_assert!(policy(&origin).allows(Some(&origin), None));
    }

    #[test]
    fn never_panics(patterns in ".{0,30}", origin in ".{0,30}", host in ".{0,30}") {
        if let Ok(policy) = OriginPolicy::parse(&patterns) {
            let _ = policy.check(Some(&origin), Some(&host), loopback());
        }
    }

    /// Whatever `https://*.example.com` lets in is an https origin whose host ends in
    /// `.example.com`, with no port: a wildcard never reaches past its host.
    #[test]
    fn a_wildcard_stays_inside_the_host(origin in tricky_origin(), sub in "[a-z.:\\\\]{0,12}") {
        let origin = format!("{origin}{sub}.example.com");
        if policy("https://*.example.com").allows(Some(&origin), None) {
            let parsed = Origin::parse(&origin).expect("only serialized origins pass");
            prop_assert_eq!(parsed.scheme.as_str(), "https");
            prop_assert!(parsed.authority.host.ends_with(".example.com"));
            prop_assert_eq!(parsed.authority.port, None);
        }
    }

    /// Whatever `localhost:*` lets in has exactly the host `localhost`.
    #[test]
    fn a_port_wildcard_stays_a_port(origin in tricky_origin()) {
        if policy("localhost:*").allows(Some(&origin), None) {
            let parsed = Origin::parse(&origin).expect("only serialized origins pass");
            prop_assert_eq!(parsed.authority.host.as_str(), "localhost");
            prop_assert!(matches!(parsed.scheme.as_str(), "http" | "https"));
        }
    }

    /// Same-origin on a loopback listener lets in loopback host names only.
    #[test]
    fn a_loopback_listener_never_trusts_a_foreign_host(host in "[a-z0-9.\\[\\]:]{1,20}") {
        let origin = format!("http://{host}");
        if OriginPolicy::default().check(Some(&origin), Some(&host), loopback()).is_ok() {
            prop_assert!(Authority::parse(&host).unwrap().is_loopback_name());
        }
    }
}
