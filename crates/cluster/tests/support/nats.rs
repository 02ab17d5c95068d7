//! The 3-server NATS cluster a test runs against (`scripts/nats-cluster.sh`).
//!
//! Plain `std`, so that the root package's end-to-end tests can include this file too
//! (`#[path]`): the cluster tests and the `wsrelay run` cluster tests share one harness.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// The NATS cluster of a test: tests of one binary run one at a time.
pub struct Nats {
    pub dir: PathBuf,
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
        owned,
        _serial: serial,
    })
}

impl Nats {
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
