//! Shared helpers: the built binary, a running `wsrelay run`, temporary app
//! directories, a tiny HTTP GET.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The ops tests' app in process (`App::start`), raw HTTP, clients and a metrics scraper.
pub mod ops;

/// The 3-server NATS cluster, the same harness as `wsrelay-cluster`'s tests.
#[path = "../../crates/cluster/tests/support/nats.rs"]
pub mod nats;

/// A partition between NATS servers (iptables), the same as `wsrelay-cluster`'s soak uses.
#[path = "../../crates/cluster/tests/support/routes.rs"]
pub mod routes;

/// Delay and loss in a network namespace, the same as `wsrelay-cluster`'s soak uses.
#[path = "../../crates/cluster/tests/support/netem.rs"]
pub mod netem;

/// A FIFO for the loader to refuse, the same helper as `wsrelay-config`'s tests use.
#[path = "../../crates/config/tests/fifo.rs"]
pub mod fifo;

/// The runtime the cluster tests drive their clients from, the same as `wsrelay-cluster`'s.
#[path = "../../crates/cluster/tests/support/rt.rs"]
mod rt;
pub use rt::rt;

/// The ports of this binary's NATS cluster (`routes` finds them here, as in the cluster tests).
pub use nats::ports;

/// The start of a cluster node's `app.yaml`: the namespace `app`, the `cluster` entry of node
/// `node` (NATS servers `urls`, the first tried first; the credentials file `creds`) and the
/// process host `processes`; the test adds its entries.
pub fn cluster_app_head(node: &str, urls: &[String; 3], creds: &str) -> String {
    cluster_app_head_with(node, urls, creds, "")
}

/// [`cluster_app_head`] with more fields of the `cluster` entry (`fields`: YAML lines
/// indented as the entry's fields, e.g. `"    max_peers: 8\n"`).
pub fn cluster_app_head_with(node: &str, urls: &[String; 3], creds: &str, fields: &str) -> String {
    let [u1, u2, u3] = urls;
    format!(
        r#"namespace: app
entries:
  - name: cluster
    kind: cluster
    node: {node}
    nats_urls: ["{u1}", "{u2}", "{u3}"]
    credentials: {creds}
{fields}  - name: processes
    kind: process.host
"#
    )
}

/// Registry entries (indented as under `entries:`) of a relay gateway on `127.0.0.1:port`: the
/// `http.service` `gateway`, the router `root` at `/` with the `websocket_relay` middleware
/// (any origin), and `GET /` answered by the `function.lua` entry `connect` (the app's
/// `connect.lua`, modules `http` and `json`), which names the target in `X-WS-Relay`.
pub fn relay_gateway_entries(port: u16) -> String {
    format!(
        r#"  - name: gateway
    kind: http.service
    addr: "127.0.0.1:{port}"
  - name: root
    kind: http.router
    meta:
      server: gateway
    prefix: /
    post_middleware:
      - websocket_relay
    post_options:
      wsrelay.allowed.origins: "*"
  - name: connect
    kind: function.lua
    source: file://connect.lua
    method: handler
    modules: [http, json]
  - name: connect_endpoint
    kind: http.endpoint
    meta:
      router: root
    method: GET
    path: /
    func: connect
"#
    )
}

/// A `wsrelay run` node a cluster test started: killed when dropped (resumed first, in case the
/// test stopped it with `SIGSTOP`).
pub struct NodeProc {
    child: Child,
}

impl NodeProc {
    /// Spawns `cmd` (a `wsrelay` command line with its environment).
    pub fn spawn(cmd: &mut Command) -> NodeProc {
        NodeProc {
            child: cmd.spawn().expect("start wsrelay"),
        }
    }

    /// Sends the signal `sig` (`STOP`, `CONT`, `KILL` ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `wsrelay` binary under test.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsrelay"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `wsrelay ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run wsrelay")
}

/// Runs `cmd` to completion with its output captured, failing the test (and
/// killing the child) if that takes longer than `bound`: a hang detector, not a
/// timing assertion. Returns the output and the time it took.
pub fn output_within(mut cmd: Command, bound: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsrelay");
    while child.try_wait().expect("wait for wsrelay").is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsrelay did not finish within {bound:?}");
        }
        #[allow(clippy::disallowed_methods)] // a synchronous test helper, not a runtime worker
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    (child.wait_with_output().expect("wsrelay output"), elapsed)
}

/// A temporary app directory.
pub struct AppDir {
    dir: tempfile::TempDir,
}

impl AppDir {
    /// An empty app directory.
    pub fn new() -> AppDir {
        AppDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes a file (creating parent directories).
    pub fn file(self, name: &str, text: &str) -> AppDir {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A `wsrelay run` child process, listening on a port of its own.
pub struct Server {
    child: Child,
    /// The address it serves.
    pub addr: SocketAddr,
    /// The operations listener's address, when it was started with `--metrics` and read by
    /// [`Server::spawn_with_ops`].
    pub ops: Option<SocketAddr>,
}

impl Server {
    /// Starts `wsrelay run [DIR] --listen 127.0.0.1:0` and reads the bound
    /// address from the line it prints.
    pub fn start(dir: Option<&Path>) -> Server {
        Server::start_with_env(dir, &[])
    }

    /// [`Server::start`] with environment variables set for the child.
    pub fn start_with_env(dir: Option<&Path>, env: &[(&str, &str)]) -> Server {
        let mut cmd = bin();
        cmd.envs(env.iter().copied()).arg("run");
        if let Some(dir) = dir {
            cmd.arg(dir);
        }
        cmd.args(["--listen", "127.0.0.1:0"]);
        Server::spawn(cmd)
    }

    /// Spawns `cmd` (a `wsrelay run ...`, stderr as the caller set it) and reads the bound
    /// address from the first "serving http://" or "serving https://" line it prints.
    pub fn spawn(cmd: Command) -> Server {
        Server::spawn_reading(cmd, false)
    }

    /// [`Server::spawn`] for a `wsrelay run --metrics ADDR`: also reads the operations
    /// listener's address from its "ops serving" line.
    pub fn spawn_with_ops(cmd: Command) -> Server {
        Server::spawn_reading(cmd, true)
    }

    fn spawn_reading(mut cmd: Command, with_ops: bool) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn wsrelay run");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut ops) = (None, None);
        while addr.is_none() || (with_ops && ops.is_none()) {
            let line = lines
                .next()
                .expect("wsrelay run exited before serving")
                .unwrap();
            let Some(url) = line.split("serving ").nth(1) else {
                continue;
            };
            let Some(url) = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
            else {
                continue;
            };
            if line.contains(" ops serving ") {
                ops = Some(url.trim_end_matches("/metrics").parse().expect("address"));
            } else if addr.is_none() {
                addr = Some(url.trim_end_matches('/').parse().expect("address"));
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr: addr.expect("address"),
            ops,
        }
    }

    /// Collects what the child writes to stderr (which the caller must have piped) from now
    /// on, as it comes, into the returned text.
    pub fn stderr_log(&mut self) -> std::sync::Arc<std::sync::Mutex<String>> {
        let stderr = self.child.stderr.take().expect("stderr piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        log
    }

    /// Sends `signal` (e.g. `HUP`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Sends SIGTERM and returns everything the child wrote to stderr (which the caller must
    /// have piped) once it exits.
    pub fn terminate_with_output(mut self) -> Vec<u8> {
        use std::io::Read as _;
        let mut stderr = self.child.stderr.take().expect("stderr piped");
        self.signal("TERM");
        let mut out = Vec::new();
        stderr.read_to_end(&mut out).expect("read stderr");
        out
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for the exit (at most 20 s).
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "wsrelay did not stop on SIGTERM");
            #[allow(clippy::disallowed_methods)] // a synchronous test helper, not a runtime worker
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
