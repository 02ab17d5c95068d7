//! A partition between NATS servers: the routes of one server cut with iptables, its clients
//! untouched (docs/cluster-design.md §3). Needs root and `iptables`; [`RouteCut::new`] says
//! `None` otherwise, and the tests that use it skip the partition.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// The chain holding the cut's rules, jumped to from `OUTPUT` (loopback packets pass there
/// in both directions); one per test process, so that two soaks side by side (another
/// checkout) don't flush or delete each other's cuts.
fn chain() -> String {
    format!("WSR_ROUTE_CUT_{}", std::process::id())
}

/// Route ports of servers 1..3 (`scripts/nats-cluster.sh`, this binary's [`super::ports`]).
fn route_ports() -> [u16; 3] {
    super::ports().route
}

/// The iptables chain of route cuts; removed on drop.
pub struct RouteCut(String);

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
        let chain = chain();
        // A chain left over by a crashed run (of the same process id) is reused, emptied.
        iptables(&["-N", &chain]);
        iptables(&["-F", &chain]);
        if !iptables(&["-C", "OUTPUT", "-j", &chain]) && !iptables(&["-I", "OUTPUT", "-j", &chain])
        {
            return None;
        }
        Some(RouteCut(chain))
    }

    /// Cuts every route of server `n` (1..3) whose process is `pid`: packets to and from its
    /// route port, packets of the routes it dialed, and new route connections anywhere (the
    /// other servers' route between themselves is up and is not dialed again). Returns the
    /// routes it dialed that were cut.
    pub fn cut(&self, n: usize, pid: u32) -> usize {
        let chain = self.0.as_str();
        let route_ports = route_ports();
        let own = route_ports[n - 1].to_string();
        let mut ok = iptables(&["-A", chain, "-p", "tcp", "--dport", &own, "-j", "DROP"])
            && iptables(&["-A", chain, "-p", "tcp", "--sport", &own, "-j", "DROP"]);
        for port in route_ports {
            let port = port.to_string();
            ok &= iptables(&[
                "-A", chain, "-p", "tcp", "--syn", "--dport", &port, "-j", "DROP",
            ]);
        }
        let dialed = dialed_routes(pid);
        for (local, remote) in &dialed {
            let (l, r) = (local.to_string(), remote.to_string());
            ok &= iptables(&[
                "-A", chain, "-p", "tcp", "--sport", &l, "--dport", &r, "-j", "DROP",
            ]) && iptables(&[
                "-A", chain, "-p", "tcp", "--sport", &r, "--dport", &l, "-j", "DROP",
            ]);
        }
        assert!(ok, "iptables rules of the route cut");
        dialed.len()
    }

    /// Removes the cut: the routes resume (or are dialed again).
    pub fn heal(&self) {
        assert!(iptables(&["-F", &self.0]), "iptables -F {}", self.0);
    }
}

impl Drop for RouteCut {
    fn drop(&mut self) {
        iptables(&["-F", &self.0]);
        iptables(&["-D", "OUTPUT", "-j", &self.0]);
        iptables(&["-X", &self.0]);
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
            route_ports().contains(&remote).then_some((local, remote))
        })
        .collect()
}
