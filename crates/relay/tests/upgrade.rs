//! docs/spec.md §3: from handler to WebSocket.

use std::sync::atomic::Ordering;

use wsrelay_process::Value;

use crate::support::*;

#[tokio::test]
async fn without_the_header_the_response_passes_through() {
    let h = Harness::start().await;
    h.answer_with(Answer {
        relay_header: None,
        body: Some("plain".into()),
        ..Answer::default()
    });
    let (status, body) = h
        .raw("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!((status, body.as_str()), (200, "plain"));
    let (status, _) = h.raw(&format!("{UPGRADE}Connection: close\r\n\r\n")).await;
    assert_eq!(
        status, 200,
        "an upgrade request without X-WS-Relay is not upgraded"
    );
}

#[tokio::test]
async fn foreign_origin_is_refused_before_the_handler_runs() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let before = h.node.process_count();
    let err = h
        .connect_with_origin("https://evil.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(
        h.handler_runs.load(Ordering::SeqCst),
        0,
        "the handler must not run"
    );
    assert_eq!(h.node.process_count(), before, "nothing spawned");
    // Same origin passes.
    let origin = format!("http://{}", h.addr);
    h.connect_with_origin(&origin).await.unwrap();
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn allowed_origins_option_is_applied() {
    let h = Harness::builder()
        .option("wsrelay.allowed.origins", "https://*.example.com")
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    h.connect_with_origin("https://app.example.com")
        .await
        .unwrap();
    assert!(h
        .connect_with_origin(&format!("http://{}", h.addr))
        .await
        .is_err());
}

#[tokio::test]
async fn not_an_upgrade_request_gets_426() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let (status, body) = h
        .raw("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 426);
    assert!(body.contains("upgrade"), "{body}");
}

#[tokio::test]
async fn bad_version_or_key_gets_400() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let bad_version = UPGRADE.replace("Version: 13", "Version: 8");
    let (status, body) = h.raw(&format!("{bad_version}\r\n")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Version"), "{body}");
    let bad_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    let (status, body) = h.raw(&format!("{bad_key}\r\n")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    // Refused before the handler (docs/spec.md §3.1), so nothing was spawned for them.
    assert_eq!(h.handler_runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_handler_that_wrote_a_body_gets_500() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.answer_with(Answer {
        relay_header: Some(format!(r#"{{"target_pid":"{}"}}"#, target.pid())),
        body: Some("oops".into()),
        ..Answer::default()
    });
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 500);
    assert!(body.contains("body"), "{body}");
}

#[tokio::test]
async fn bad_header_values_get_500_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        ("not json", "JSON"),
        ("[1,2]", "object"),
        ("{}", "target_pid"),
        (r#"{"target_pid": 1}"#, "target_pid"),
        (r#"{"target_pid": "{bad"}"#, "target_pid"),
        (
            r#"{"target_pid": "x", "heartbeat_interval": "0s"}"#,
            "heartbeat_interval",
        ),
        (
            r#"{"target_pid": "x", "heartbeat_interval": "later"}"#,
            "heartbeat_interval",
        ),
        (r#"{"target_pid": "x", "metadata": 5}"#, "metadata"),
        (
            r#"{"target_pid": "x", "message_topic": "@x"}"#,
            "message_topic",
        ),
    ];
    for (header, field) in cases {
        h.answer_with(Answer {
            relay_header: Some(header.into()),
            body: None,
            ..Answer::default()
        });
        let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
        assert_eq!(status, 500, "{header}");
        assert!(body.contains(field), "{header}: {body}");
    }
}

#[tokio::test]
async fn a_dead_target_gets_503_naming_the_pid() {
    let h = Harness::start().await;
    let (target, guard) = h.probe();
    let pid = target.pid().clone();
    guard.exit(());
    h.relay_to(pid.as_str(), "");
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 503);
    assert!(body.contains(pid.as_str()), "{body}");
    h.relay_to("no-such-name", "");
    let (status, body) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 503);
    assert!(body.contains("no-such-name"), "{body}");
}

#[tokio::test]
async fn join_comes_first_with_metadata_and_a_pid_on_the_server_host() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), r#", "metadata": {"user_id": "u1"}"#);
    let mut client = h.connect().await;
    send_text(&mut client, "hello").await;
    let (topic, join) = recv(&target).await;
    assert_eq!(topic, "ws.join");
    let client_pid = join.get("client_pid").unwrap().as_str().unwrap().to_owned();
    assert!(client_pid.starts_with("{app:gateway|0x"), "{client_pid}");
    assert_eq!(
        join.get("metadata").unwrap().get("user_id"),
        Some(&Value::from("u1"))
    );
    let (topic, msg) = recv(&target).await;
    assert_eq!(topic, "ws.message");
    assert_eq!(msg.get("data"), Some(&Value::from("hello")));
}

#[tokio::test]
async fn a_registered_name_can_be_the_target() {
    let h = Harness::start().await;
    let (target, _g) = h.probe();
    target.register("hub").unwrap();
    h.relay_to("hub", "");
    let _client = h.connect().await;
    joined(&target).await;
}

/// The relay runs each request on a task of its own; a handler that panics there still
/// gets the gateway's `500`, as on any other route.
#[tokio::test]
async fn a_panicking_handler_still_gets_a_500() {
    let h = Harness::builder()
        .handler(|_node| {
            std::sync::Arc::new(wsrelay_http::handler_fn(
                |_req: wsrelay_http::Request| async move {
                    panic!("handler bug");
                    #[allow(unreachable_code)]
                    wsrelay_http::response::empty(http::StatusCode::OK)
                },
            ))
        })
        .start()
        .await;
    let (status, _) = h.raw(PLAIN).await;
    assert_eq!(status, 500);
    let (status, _) = h.raw(&format!("{UPGRADE}\r\n")).await;
    assert_eq!(status, 500);
    h.stop().await;
}
