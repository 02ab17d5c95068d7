//! End-to-end tests of the `wsrelay` binary and of whole apps, one module per area, built as
//! one binary: the CLI (`cli`), the chat demo (`chat`), examples/echo (`echo`), `run --watch` hot reload (`hot_reload`),
//! examples/wippy-chat (`wippy_chat`: JWT auth, pg rooms, pg.monitor presence), the operations
//! promises (`ops_metrics`, `ops_security`, `ops_dashboard`), the Lua `http_client` module
//! against local servers (`lua_http_client`), `env` entries read from Lua (`lua_env`), services set up before the
//! listeners open (`services`) and
//! `wsrelay run` nodes in a NATS cluster
//! (`cluster_relay`, `cluster_broadcast`, and the relay chaos soak `cluster_soak_relay`). The binary under test is the one cargo built for the run
//! (`CARGO_BIN_EXE_wsrelay`); shared helpers are in `support`.

mod support;

mod chat;
mod cli;
mod cluster_broadcast;
mod cluster_relay;
mod cluster_soak_relay;
mod echo;
mod hot_reload;
mod lua_env;
mod lua_http_client;
mod ops_dashboard;
mod ops_metrics;
mod ops_security;
mod services;
mod wippy_chat;
