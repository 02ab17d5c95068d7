//! Integration tests for `wsrelay-config`, one module per area, built as one
//! binary (ripgrep's layout) to keep link time down.

mod fifo;
mod util;

mod duration;
mod embedded;
mod errors;
mod http_service;
mod limits;
mod load_good;
mod ops;
mod pg_scope;
mod placeholders;
