//! The relay contract end to end (docs/spec.md §3–§9): one test per row of its tables, a real
//! server, a real client (tokio-tungstenite) and real processes as targets. One binary, a
//! module per section of the contract (commands, extensions, lifetime, to_target,
//! transports, upgrade) and per concern (backpressure, chaos, limits, not_upgraded, origin).

mod support;

mod backpressure;
mod chaos;
mod commands;
mod extensions;
mod lifetime;
mod limits;
mod not_upgraded;
mod origin;
mod to_target;
mod transports;
mod upgrade;
