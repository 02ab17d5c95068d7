//! Origin edge cases through a real server (docs/spec.md §5 and docs/decisions/relay.md): DNS
//! rebinding against a loopback listener, strict origin parsing, and several `Origin`
//! headers. Every refusal comes before the handler runs.

use std::sync::atomic::Ordering;

use crate::support::Harness;

/// A raw upgrade request with extra header lines (each ending in `\r\n`).
fn upgrade(headers: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\n{headers}Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

#[tokio::test]
async fn dns_rebinding_to_a_loopback_listener_is_refused_before_the_handler() {
    let h = Harness::start().await; // listens on 127.0.0.1, no allow-list: same origin
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let port = h.addr.port();

    // A page on evil.com, re-resolved to 127.0.0.1: its Host and Origin agree.
    let rebound = upgrade(&format!(
        "Host: evil.com:{port}\r\nOrigin: http://evil.com:{port}\r\n"
    ));
    let (status, body) = h.raw(&rebound).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loopback"), "{body}");
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 0, "the handler ran");

    // Loopback names are this machine's own pages.
    for name in ["localhost", "127.0.0.1"] {
        let own = upgrade(&format!(
            "Host: {name}:{port}\r\nOrigin: http://{name}:{port}\r\n"
        ));
        assert_eq!(h.raw(&own).await.0, 101, "{name}");
    }
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 2);
    h.stop().await;
}

#[tokio::test]
async fn several_origin_headers_are_refused() {
    let h = Harness::builder()
        .option("wsrelay.allowed.origins", "*")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let two = upgrade("Host: x\r\nOrigin: https://a.example\r\nOrigin: https://a.example\r\n");
    let (status, body) = h.raw(&two).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("several Origin"), "{body}");
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 0, "the handler ran");
    h.stop().await;
}

#[tokio::test]
async fn wildcards_do_not_reach_past_the_host() {
    let h = Harness::builder()
        .option(
            "wsrelay.allowed.origins",
            "https://*.example.com, localhost:*",
        )
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    // (Origin, upgraded?)
    let cases = [
        ("https://app.example.com", true),
        ("http://localhost:3000", true),
        ("https://evil.com\\.example.com", false),
        ("https://evil.com:443.example.com", false),
        ("http://localhost:3000.evil.com", false),
        ("https://evil.com/.example.com", false),
        ("ftp://localhost:3000", false),
    ];
    let mut runs = 0;
    for (origin, upgraded) in cases {
        let (status, body) = h
            .raw(&upgrade(&format!("Host: x\r\nOrigin: {origin}\r\n")))
            .await;
        let expected = if upgraded { 101 } else { 403 };
        assert_eq!(status, expected, "{origin}: {body}");
        runs += usize::from(upgraded);
        assert_eq!(h.handler_runs.load(Ordering::SeqCst), runs, "{origin}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_malformed_pattern_is_a_configuration_error() {
    let mut options = wsrelay_http::Options::new();
    options.insert(
        "wsrelay.allowed.origins".into(),
        "https://app.example.com/".into(),
    );
    let error = wsrelay_relay::RelayOptions::from_options(&options).unwrap_err();
    assert!(error.contains("wsrelay.allowed.origins"), "{error}");
    assert!(error.contains("https://app.example.com/"), "{error}");
}
