//! Integration tests of `wsrelay-ws`, one module per area, built as one binary: a real echo
//! server on 127.0.0.1:0 (`support`), tokio-tungstenite and a raw client over real TCP.

mod support;

mod compression;
mod connection;
mod handshake_http;
mod memory;
