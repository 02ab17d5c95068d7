//! A partition between NATS servers: the routes of one server cut with iptables, its clients
//! untouched (docs/cluster-design.md §3). Needs root and `iptables`; [`RouteCut::new`] says
//! `None` otherwise, and the tests that use it skip the partition.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// The chain holding the cut's rules, jumped to from `OUTPUT` (loopback packets pass there
/// in both directions).
const CHAIN: &str = "WSR_ROUTE_CUT";

/// Route ports of servers 1..3 (`scripts/nats-cluster.sh`).
const ROUTE_PORTS: [u16; 3] = [6311, 6312, 6313];

/// The iptables chain of route cuts; removed on drop.
pub struct RouteCut(());

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl RouteCut {
    /// Sets up the (empty) chain; `None` without root or `iptables`.
    pub fn new() -> Option<RouteCut> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root || !iptables(&["-L", "-n"]) {
            eprintln!("\n!!!!! route partition SKIPPED: needs root and iptables !!!!!\n");
            return None;
        }
        // A chain left over by a crashed run is reused, emptied.
        iptables(&["-N", CHAIN]);
        iptables(&["-F", CHAIN]);
        if !iptables(&["-C", "OUTPUT", "-j", CHAIN]) && !iptables(&["-I", "OUTPUT", "-j", CHAIN]) {
            return None;
        }
        Some(RouteCut(()))
    }

    /// Cuts every route of server `n` (1..3) whose process is `pid`: packets to and from its
    /// route port, packets of the routes it dialed, and new route connections anywhere (the
    /// other servers' route between themselves is up and is not dialed again). Returns the
    /// routes it dialed that were cut.
    pub fn cut(&self, n: usize, pid: u32) -> usize {
        let own = ROUTE_PORTS[n - 1].to_string();
        let mut ok = iptables(&["-A", CHAIN, "-p", "tcp", "--dport", &own, "-j", "DROP"])
            && iptables(&["-A", CHAIN, "-p", "tcp", "--sport", &own, "-j", "DROP"]);
        for port in ROUTE_PORTS {
            let port = port.to_string();
            ok &= iptables(&[
                "-A", CHAIN, "-p", "tcp", "--syn", "--dport", &port, "-j", "DROP",
            ]);
        }
        let dialed = dialed_routes(pid);
        for (local, remote) in &dialed {
            let (l, r) = (local.to_string(), remote.to_string());
            ok &= iptables(&[
                "-A", CHAIN, "-p", "tcp", "--sport", &l, "--dport", &r, "-j", "DROP",
            ]) && iptables(&[
                "-A", CHAIN, "-p", "tcp", "--sport", &r, "--dport", &l, "-j", "DROP",
            ]);
        }
        assert!(ok, "iptables rules of the route cut");
        dialed.len()
    }

    /// Removes the cut: the routes resume (or are dialed again).
    pub fn heal(&self) {
        assert!(iptables(&["-F", CHAIN]), "iptables -F {CHAIN}");
    }
}

impl Drop for RouteCut {
    fn drop(&mut self) {
        iptables(&["-F", CHAIN]);
        iptables(&["-D", "OUTPUT", "-j", CHAIN]);
        iptables(&["-X", CHAIN]);
    }
}

/// The (local port, remote port) of the established route connections `pid` dialed.
fn dialed_routes(pid: u32) -> Vec<(u16, u16)> {
    let Ok(out) = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .output()
    else {
        return Vec::new();
    };
    let owner = format!("pid={pid},");
    let port = |addr: &str| addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&owner))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = port(fields.get(2)?)?;
            let remote = port(fields.get(3)?)?;
            ROUTE_PORTS.contains(&remote).then_some((local, remote))
        })
        .collect()
}
