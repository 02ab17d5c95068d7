//! Integration tests of `wsrelay-process` through its public API, one module per area, built
//! as one binary.

mod support;

mod bus;
mod exactly_once;
mod groups;
mod groups_across;
mod inbound;
mod process;
