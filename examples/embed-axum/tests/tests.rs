//! End-to-end tests of the embed-axum example: a real listener, the real runtime and Lua app,
//! real WebSocket clients (tokio-tungstenite) and raw HTTP.

mod support;

mod health;
mod lua;
mod rust;
mod shutdown;
