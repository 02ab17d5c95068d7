//! Integration tests of `wsrelay-cluster` against a real 3-server NATS cluster
//! (`support::nats`, `scripts/nats-cluster.sh`), one module per area, built as one binary.
//! Tests that use the NATS cluster run one at a time (`support::nats` holds a lock), and the
//! benchmarks (`bench::`) are ignored unless run by name.

mod support;

mod bench;
mod chaos;
mod exactly_once_cluster;
mod flow_control;
mod groups;
mod partition;
mod remote;
mod restart;
mod soak;
mod soak_netem;
mod soak_node;
mod untrusted_frames;
