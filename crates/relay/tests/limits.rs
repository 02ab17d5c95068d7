//! Admission limits through a real server: `wsrelay.max_connections` answers `503`
//! and `wsrelay.upgrade_rate` answers `429`, both with `Retry-After`, both before the handler
//! runs, so a refused request spawns nothing. Plain requests count too: see
//! `not_upgraded.rs`.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{joined, Harness};
use tokio_tungstenite::tungstenite::Error as WsError;

/// The status and `Retry-After` of a refused upgrade.
fn refusal(result: Result<support::Client, WsError>) -> (u16, Option<String>) {
    match result {
        Err(WsError::Http(res)) => (
            res.status().as_u16(),
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got 101"),
    }
}

async fn try_connect(h: &Harness) -> Result<support::Client, WsError> {
    tokio_tungstenite::connect_async(h.url())
        .await
        .map(|(c, _)| c)
}

#[tokio::test]
async fn max_connections_refuses_with_503_and_frees_slots_on_close() {
    let h = Harness::builder()
        .option("wsrelay.max_connections", "2")
        .option("wsrelay.upgrade_rate", "off")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(&target.pid().to_string(), "");
    let mut a = h.connect().await;
    joined(&target).await;
    let _b = h.connect().await;
    joined(&target).await;
    let runs = h.handler_runs.load(Ordering::SeqCst);
    let processes = h.node.process_count();

    let (status, retry) = refusal(try_connect(&h).await);
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), runs, "handler ran");
    assert_eq!(h.node.process_count(), processes, "something was spawned");
    assert_eq!(h.relay.limit_stats().over_capacity(), 1);

    // Closing one connection frees its slot.
    a.close(None).await.unwrap();
    support::drain(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let _c = loop {
        match try_connect(&h).await {
            Ok(c) => break c,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    };
    // A plain request counts too (docs/spec.md §3.1: admission for every request on the route):
    // with the pool full again, it is refused before the handler.
    let runs = h.handler_runs.load(Ordering::SeqCst);
    let (status, _) = h
        .raw("GET /ws/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 503);
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), runs, "handler ran");
    h.stop().await;
}

#[tokio::test]
async fn upgrade_rate_refuses_with_429_and_retry_after() {
    let h = Harness::builder().two_upgrades_per_ip().start().await;
    let (target, _g) = h.probe();
    h.relay_to(&target.pid().to_string(), "");
    let _a = h.connect().await;
    let _b = h.connect().await;
    let runs = h.handler_runs.load(Ordering::SeqCst);
    let processes = h.node.process_count();

    let (status, retry) = refusal(try_connect(&h).await);
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), runs, "handler ran");
    assert_eq!(h.node.process_count(), processes, "something was spawned");
    assert_eq!(h.relay.limit_stats().rate_limited(), 1);
    h.stop().await;
}

#[tokio::test]
async fn defaults_are_finite_and_let_ordinary_clients_through() {
    let options = wsrelay_relay::RelayOptions::default();
    assert_eq!(options.limits.max_connections, Some(10_000));
    assert_eq!(options.limits.upgrade_rate, Some(100.0));
    assert_eq!(options.limits.upgrade_burst, 200);
    // Fifty upgrades in a row from one address are well inside the default burst.
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(&target.pid().to_string(), "");
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(h.connect().await);
    }
    assert_eq!(h.relay.limit_stats().rate_limited(), 0);
    h.stop().await;
}

#[test]
fn bad_limit_options_name_the_option() {
    for (key, value) in [
        ("wsrelay.max_connections", "0"),
        ("wsrelay.max_connections", "lots"),
        ("wsrelay.upgrade_rate", "fast"),
        ("wsrelay.upgrade_rate", "0/s"),
        ("wsrelay.upgrade_burst", "-1"),
    ] {
        let mut options = wsrelay_http::Options::new();
        options.insert(key.into(), value.into());
        let error = wsrelay_relay::RelayOptions::from_options(&options).unwrap_err();
        assert!(error.contains(key), "{key}={value}: {error}");
    }
}
