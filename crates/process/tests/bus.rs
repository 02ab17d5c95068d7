//! The node's event bus: matching, best effort, the subscription cap, closing.

use std::sync::Arc;
use std::time::Duration;

use wsrelay_process::{BusError, BusEvent, Fed, Node, Value, FEED_BUFFER, MAX_BUS_SUBSCRIPTIONS};

fn event(system: &str, kind: &str, data: Value) -> BusEvent {
    BusEvent {
        system: system.into(),
        kind: kind.into(),
        path: "p".into(),
        data,
    }
}

fn systems(events: impl Iterator<Item = Fed<Arc<BusEvent>>>) -> Vec<String> {
    events
        .map(|fed| match fed {
            Fed::Event(e) => format!("{}/{}", e.system, e.kind),
            Fed::Lost(n) => format!("lost {n}"),
        })
        .collect()
}

#[tokio::test]
async fn subscriptions_get_what_matches_and_a_waiting_reader_is_woken() {
    let node = Node::new();
    let orders = node.subscribe_events("orders.*", None).unwrap();
    let paid = node.subscribe_events("*", Some("paid")).unwrap();
    assert_eq!(
        node.send_event(event("orders.eu", "created", Value::Null)),
        Ok(1)
    );
    assert_eq!(node.send_event(event("orders.us", "paid", 7.into())), Ok(2));
    assert_eq!(node.send_event(event("users", "paid", Value::Null)), Ok(1));
    assert_eq!(
        node.send_event(event("order", "created", Value::Null)),
        Ok(0)
    );
    assert_eq!(
        systems(std::iter::from_fn(|| orders.try_next())),
        ["orders.eu/created", "orders.us/paid"]
    );
    assert_eq!(
        systems(std::iter::from_fn(|| paid.try_next())),
        ["orders.us/paid", "users/paid"]
    );
    // A reader waiting on `changed` is woken by the next matching send.
    let node2 = node.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        node2.send_event(event("orders.eu", "shipped", Value::Null))
    });
    tokio::time::timeout(Duration::from_secs(5), orders.changed())
        .await
        .expect("woken");
    assert_eq!(sender.await.unwrap(), Ok(1));
    assert_eq!(
        systems(orders.try_next().into_iter()),
        ["orders.eu/shipped"]
    );
}

#[tokio::test]
async fn a_slow_reader_loses_events_and_is_told_how_many() {
    let node = Node::new();
    let sub = node.subscribe_events("jobs", None).unwrap();
    for i in 0..FEED_BUFFER + 5 {
        node.send_event(event("jobs", "done", Value::Int(i as i64)))
            .unwrap();
    }
    let got = systems(std::iter::from_fn(|| sub.try_next()));
    assert_eq!(got.len(), FEED_BUFFER + 1);
    assert_eq!(got[FEED_BUFFER], "lost 5");
    // Reading caught up: the next one is buffered again.
    node.send_event(event("jobs", "done", Value::Null)).unwrap();
    assert_eq!(systems(sub.try_next().into_iter()), ["jobs/done"]);
}

#[test]
fn bad_events_are_refused_and_subscriptions_are_capped_and_released() {
    let node = Node::new();
    assert_eq!(
        node.subscribe_events("", None).unwrap_err(),
        BusError::EmptyPattern
    );
    assert_eq!(
        node.send_event(event("", "k", Value::Null)),
        Err(BusError::EmptyField("system"))
    );
    assert_eq!(
        node.send_event(event("s", "", Value::Null)),
        Err(BusError::EmptyField("kind"))
    );
    let mut subs: Vec<_> = (0..MAX_BUS_SUBSCRIPTIONS)
        .map(|_| node.subscribe_events("s", None).unwrap())
        .collect();
    assert!(matches!(
        node.subscribe_events("s", None),
        Err(BusError::TooManySubscriptions { .. })
    ));
    // Closing with flush keeps what is buffered readable; a dropped one frees its place.
    node.send_event(event("s", "k", Value::Null)).unwrap();
    let kept = subs.pop().unwrap();
    kept.close(true);
    kept.close(true);
    assert_eq!(systems(kept.try_next().into_iter()), ["s/k"]);
    assert!(kept.is_finished());
    subs.pop();
    let _again = node.subscribe_events("s", None).expect("a place was freed");
    assert_eq!(
        node.send_event(event("s", "k", Value::Null)),
        Ok(MAX_BUS_SUBSCRIPTIONS - 1)
    );
}
