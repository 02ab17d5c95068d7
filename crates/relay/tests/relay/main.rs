//! The relay contract end to end (docs/spec.md §3–§9): one test per row of its tables, a real server,
//! a real client (tokio-tungstenite) and real processes as targets.
//!
//! One test binary, a module per section of the contract.

#[path = "../support/mod.rs"]
mod support;

/// The payload of the next `ws.leave` the target gets, skipping other messages.
async fn leave_of(target: &wsrelay_process::Context) -> wsrelay_process::Value {
    loop {
        let (topic, payload) = support::recv(target).await;
        if topic == "ws.leave" {
            return payload;
        }
    }
}

mod commands;
mod extensions;
mod lifetime;
mod to_target;
mod transports;
mod upgrade;
