//! The chaos soak (`soak.rs`) with network delay, jitter and packet loss between the nodes
//! and the NATS servers (the network of `support/netem.rs`): inside the namespace, nodes D and
//! E and their own NATS cluster run the soak with its checks. Needs root, `ip` and
//! `iptables`; skipped with a printed reason otherwise.

use crate::support::netem;

/// The soak of `soak.rs`, inside the namespace: exactly one EXIT per monitor, every pair
/// echoes and nodes D and E serve after each fault and at the end.
#[test]
fn kill_storm_with_network_delay_and_loss_keeps_one_exit_per_monitor() {
    netem::soak_inside(
        "soak::kill_storm_under_server_node_and_route_faults_keeps_one_exit_per_monitor",
        "soak_netem::delay_proxy",
        "soak",
    );
}

/// The delaying proxy of the namespace (see `support/netem.rs`).
#[test]
#[ignore = "the soak's delaying proxy: runs only when the soak starts it"]
fn delay_proxy() {
    netem::delay_proxy();
}
