//! `ws.control`, `ws.send`, `ws.close` and pass-through payloads (docs/spec.md §7) built from
//! arbitrary process values: never panic, and every frame or close they produce is valid.
//!
//! Input: a JSON payload (the seeds), or bytes the value generator turns into any value.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use wsrelay_fuzz::{FuzzMap, FuzzValue};
use wsrelay_process::Value;
use wsrelay_relay::events::{close_from_payload, frame_from_send, passthrough_frame};
use wsrelay_relay::RelayTarget;
use wsrelay_ws::Message as Frame;

#[derive(Debug, Arbitrary)]
struct Input {
    payload: FuzzValue,
    control: FuzzMap,
    topic: String,
}

fuzz_target!(|data: &[u8]| {
    // A JSON input (the readable seeds) is the payload as Lua or a JSON peer would send it;
    // anything else drives the value generator, which also makes bytes and Rust values.
    let (payload, control, topic) = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(json) => {
            let value = Value::from_json(json);
            (value.clone(), value, "t".to_owned())
        }
        Err(_) => match Input::arbitrary(&mut Unstructured::new(data)) {
            Ok(Input {
                payload: FuzzValue(payload),
                control: FuzzMap(control),
                topic,
            }) => (payload, control, topic),
            Err(_) => return,
        },
    };

    let current = RelayTarget::from_header(br#"{"target_pid":"hub","heartbeat_interval":"5s"}"#)
        .expect("a valid header");
    for candidate in [&payload, &control] {
        if let Ok(next) = RelayTarget::from_control(candidate, &current) {
            assert!(!next.target.is_empty());
            assert!(!next.message_topic.is_empty() && !next.message_topic.starts_with('@'));
            assert!(
                next.heartbeat_interval.is_none_or(
                    |p| !p.is_zero() && std::time::Instant::now().checked_add(p).is_some()
                )
            );
        }

        if let Ok(frame) = frame_from_send(candidate) {
            if let Frame::Text(data) = &frame {
                assert!(std::str::from_utf8(data).is_ok(), "text frame is not UTF-8");
            }
        }

        let (code, reason) = close_from_payload(candidate);
        assert!(
            wsrelay_ws::is_sendable_close_code(code),
            "close code {code}"
        );
        assert!(
            reason.len() <= 123,
            "close reason of {} bytes",
            reason.len()
        );

        let frame = passthrough_frame(&topic, candidate);
        let Frame::Text(text) = &frame else {
            panic!("pass-through frame is not text")
        };
        let json: serde_json::Value =
            serde_json::from_slice(text).expect("pass-through frame is JSON");
        assert_eq!(json["topic"].as_str(), Some(topic.as_str()));
    }
});
