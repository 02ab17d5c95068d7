//! End-to-end tests of the `wsrelay` binary and of whole apps, one module per area, built as
//! one binary: the CLI (`cli`), the chat demo (`chat`), examples/echo (`echo`), the operations
//! promises (`ops_metrics`, `ops_security`) and `wsrelay run` nodes in a NATS cluster
//! (`cluster_relay`, `cluster_broadcast`). The binary under test is the one cargo built for the run
//! (`CARGO_BIN_EXE_wsrelay`); shared helpers are in `support`.

mod support;

mod chat;
mod cli;
mod cluster_broadcast;
mod cluster_relay;
mod echo;
mod ops_metrics;
mod ops_security;
