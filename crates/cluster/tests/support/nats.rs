//! The 3-server NATS cluster a test runs against (`scripts/nats-cluster.sh`).
//!
//! Plain `std`, so that the root package's end-to-end tests can include this file too
//! (`#[path]`): the cluster tests and the `wsrelay run` cluster tests share one harness.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

static SERIAL: Mutex<()> = Mutex::new(());

/// The environment variable that hands a binary's ports to the processes it starts (nodes D
/// and E of the soak run the same test binary again and must join the same cluster).
pub const PORTS_VAR: &str = "WSR_NATS_PORTS";

/// The environment variable naming the address nodes reach the servers' client ports on
/// (default 127.0.0.1; `soak_netem.rs`).
pub const CLIENT_HOST_VAR: &str = "WSR_NATS_CLIENT_HOST";

/// The ports of the three servers (`scripts/nats-cluster.sh`, its `PORTS` variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Client ports of servers 1..3.
    pub client: [u16; 3],
    /// Route ports of servers 1..3.
    pub route: [u16; 3],
    /// Monitoring (HTTP) ports of servers 1..3.
    pub http: [u16; 3],
}

impl Ports {
    /// The script's defaults, for a cluster started by hand.
    pub const DEFAULT: Ports = Ports {
        client: [4311, 4312, 4313],
        route: [6311, 6312, 6313],
        http: [8311, 8312, 8313],
    };

    /// Nine ports in a row from `base`: clients, routes, monitoring.
    fn from_base(base: u16) -> Ports {
        Ports {
            client: [base, base + 1, base + 2],
            route: [base + 3, base + 4, base + 5],
            http: [base + 6, base + 7, base + 8],
        }
    }

    /// The script's `PORTS` value: nine ports separated by spaces.
    pub fn to_env(self) -> String {
        let all: Vec<String> = self
            .client
            .iter()
            .chain(&self.route)
            .chain(&self.http)
            .map(u16::to_string)
            .collect();
        all.join(" ")
    }

    /// Parses [`Ports::to_env`] (also the `DIR/ports` file the script writes).
    pub fn parse(text: &str) -> Option<Ports> {
        let all: Vec<u16> = text
            .split_whitespace()
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [c1, c2, c3, r1, r2, r3, h1, h2, h3] = all[..] else {
            return None;
        };
        Some(Ports {
            client: [c1, c2, c3],
            route: [r1, r2, r3],
            http: [h1, h2, h3],
        })
    }

    /// The client URL of server `n` (1..3): on 127.0.0.1, or on the address in
    /// [`CLIENT_HOST_VAR`] (the soak with delay and loss puts a delaying proxy there).
    pub fn url(&self, n: usize) -> String {
        let host = std::env::var(CLIENT_HOST_VAR).unwrap_or_else(|_| "127.0.0.1".to_owned());
        format!("nats://{host}:{}", self.client[n - 1])
    }

    /// The client URLs of all three servers.
    pub fn urls(&self) -> Vec<String> {
        (1..=3).map(|n| self.url(n)).collect()
    }
}

/// First port of the range the slots are taken from: above the fixed ports of the tests
/// (19xxx, 20000) and below the kernel's usual ephemeral range (32768..), so that an
/// outgoing connection does not take a server's port between a stop and a restart.
const SLOT_FIRST: u16 = 21_000;
/// Slots of ten ports: nine for the servers, the tenth held as the slot's lock.
const SLOTS: u16 = 1_100;

/// The ports of this test binary's cluster, picked once per process and shared by its
/// tests. `WSR_NATS_PORTS` (set for the processes a test starts) or, with `WSR_NATS_DIR`,
/// the ports of that directory's cluster (the defaults if it has none) win; otherwise a slot
/// of ten ports is taken, starting at one derived from the process id: its tenth port is
/// kept bound for the life of the process (the lock: another test binary, from any checkout,
/// skips a slot whose lock it cannot bind, and the kernel releases it when the process
/// ends, even on a crash), and its nine server ports must be free.
pub fn ports() -> Ports {
    static PORTS: OnceLock<(Ports, Option<TcpListener>)> = OnceLock::new();
    PORTS
        .get_or_init(|| {
            if let Some(ports) = std::env::var(PORTS_VAR).ok().and_then(|p| Ports::parse(&p)) {
                return (ports, None);
            }
            if let Ok(dir) = std::env::var("WSR_NATS_DIR") {
                let stored = std::fs::read_to_string(Path::new(&dir).join("ports")).ok();
                return (
                    stored
                        .and_then(|p| Ports::parse(&p))
                        .unwrap_or(Ports::DEFAULT),
                    None,
                );
            }
            let start = (std::process::id() % u32::from(SLOTS)) as u16;
            for i in 0..SLOTS {
                let base = SLOT_FIRST + (start + i) % SLOTS * 10;
                let Ok(lock) = TcpListener::bind(("127.0.0.1", base + 9)) else {
                    continue;
                };
                let free = (base..base + 9).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
                if free {
                    return (Ports::from_base(base), Some(lock));
                }
            }
            panic!(
                "no free slot of ten ports in {SLOT_FIRST}..{}",
                SLOT_FIRST + SLOTS * 10
            )
        })
        .0
}

/// A port no one listens on now, picked by the kernel: for the listeners of the processes a
/// test starts (fixed ports would meet another checkout's run).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The NATS cluster of a test: tests of one binary run one at a time, on one set of
/// [`ports`].
pub struct Nats {
    pub dir: PathBuf,
    /// The servers' ports.
    pub ports: Ports,
    owned: bool,
    _serial: MutexGuard<'static, ()>,
}

/// The repository root: the first ancestor of the including package that holds the script.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/nats-cluster.sh").is_file())
        .expect("scripts/nats-cluster.sh in an ancestor of the package")
        .to_path_buf()
}

fn script(args: &[&str]) -> bool {
    Command::new("bash")
        .arg(repo_root().join("scripts/nats-cluster.sh"))
        .args(args)
        .env("PORTS", ports().to_env())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts (or joins) the NATS cluster; `None` if `nats-server` is not installed.
pub fn nats() -> Option<Nats> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n\n!!!!! SKIPPED: nats-server is not on PATH (apt-get install -y nats-server) !!!!!\n\n");
        return None;
    }
    let (dir, owned) = match std::env::var("WSR_NATS_DIR") {
        Ok(dir) => (PathBuf::from(dir), false),
        Err(_) => (
            std::env::temp_dir().join(format!("wsr-nats-test-{}", std::process::id())),
            true,
        ),
    };
    assert!(
        script(&["start", dir.to_str().unwrap()]),
        "cannot start the NATS cluster in {}",
        dir.display()
    );
    Some(Nats {
        dir,
        ports: ports(),
        owned,
        _serial: serial,
    })
}

impl Nats {
    /// The client URL of server `n` (1..3).
    pub fn url(&self, n: usize) -> String {
        self.ports.url(n)
    }
    /// The client URLs of all three servers.
    pub fn urls(&self) -> Vec<String> {
        self.ports.urls()
    }
    pub fn stop_server(&self, n: u32) {
        assert!(script(&[
            "stop",
            self.dir.to_str().unwrap(),
            &n.to_string()
        ]));
    }
    /// SIGKILL of server `n` (a crash, no lame-duck or clean close).
    pub fn kill_server(&self, n: u32) {
        assert!(script(&[
            "kill",
            self.dir.to_str().unwrap(),
            &n.to_string()
        ]));
    }
    /// SIGKILL of all servers at once.
    pub fn kill_all(&self) {
        assert!(script(&["kill", self.dir.to_str().unwrap()]));
    }
    /// SIGSTOP of server `n`: a hung server, to its clients and its routes alike what a
    /// network partition around it looks like (nothing closes, nothing arrives).
    pub fn pause_server(&self, n: u32) {
        self.signal(n, "-STOP");
    }
    /// SIGCONT of server `n` after [`Nats::pause_server`].
    pub fn resume_server(&self, n: u32) {
        self.signal(n, "-CONT");
    }
    /// The process id of server `n`, if it runs.
    pub fn server_pid(&self, n: u32) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("n{n}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
    fn signal(&self, n: u32, signal: &str) {
        let pid = self
            .server_pid(n)
            .expect("the pid file of a running server");
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }
    pub fn start_server(&self, n: u32) {
        assert!(script(&[
            "start",
            self.dir.to_str().unwrap(),
            &n.to_string()
        ]));
    }
    pub fn start_all(&self) {
        assert!(script(&["start", self.dir.to_str().unwrap()]));
    }
    pub fn stop_all(&self) {
        assert!(script(&["stop", self.dir.to_str().unwrap()]));
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if self.owned {
            script(&["stop", self.dir.to_str().unwrap()]);
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            // Leave the shared cluster whole for the next test.
            script(&["start", self.dir.to_str().unwrap()]);
        }
    }
}
