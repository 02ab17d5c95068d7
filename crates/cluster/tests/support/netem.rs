//! A network with delay, jitter and packet loss for the chaos soaks (`soak_netem.rs` in the
//! cluster tests, and the relay soak of the root package, which includes this file). This
//! kernel has no netem qdisc (`CONFIG_NET_SCH_NETEM` is not set here), so the network is made of
//! what it has, inside a network namespace of its own (never on the machine's loopback, which
//! other tests use):
//!
//! - **loss**: an iptables rule in the namespace drops [`LOSS`] of all packets at random
//!   (`-m statistic`), both directions, routes between the servers included; TCP
//!   retransmits them, so a lost packet costs at least the retransmission timeout (200 ms);
//! - **delay and jitter**: the nodes reach the servers through a proxy (the test binary run
//!   again, [`delay_proxy`]) on 127.0.0.2 that holds every chunk of bytes for [`DELAY`] ±
//!   [`JITTER`] in each direction, in order (TCP's order is kept: a chunk never leaves before
//!   the one ahead of it). The servers advertise their own addresses to clients; a rule
//!   refuses connections to them that do not come from the proxy, so a client that fails
//!   over to one it learnt moves on to the proxy's.
//!
//! [`soak_inside`] then runs a soak test of the same binary inside the namespace with its own
//! NATS cluster (`WSR_SOAK=long` passes through), with the soak's own checks. Needs root, `ip`
//! and `iptables`; skipped with a printed reason otherwise.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::nats::{nats, Ports, CLIENT_HOST_VAR, PORTS_VAR};
use super::{ports, rt};

/// Packets dropped at random, in the namespace.
pub const LOSS: &str = "0.01";
/// What the proxy holds every chunk for, each way, give or take [`JITTER`].
pub const DELAY: Duration = Duration::from_millis(20);
pub const JITTER: Duration = Duration::from_millis(10);

/// Set in the processes started inside the namespace: the network, for the soak's report.
pub const NETWORK_VAR: &str = "WSR_SOAK_NETWORK";
/// Set in the proxy process.
pub const PROXY_VAR: &str = "WSR_SOAK_PROXY";
/// Where the proxy listens (the servers' client ports) and the address its own
/// connections to the servers come from (the only one the servers accept).
pub const PROXY_HOST: &str = "127.0.0.2";
pub const PROXY_SOURCE: &str = "127.0.0.3";

/// How the soak running now reaches its servers, for its report: empty outside the namespace.
pub(crate) fn network() -> String {
    std::env::var(NETWORK_VAR).map_or(String::new(), |n| format!(" ({n})"))
}

/// Runs `program args`; the error says what failed and why.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace of this test process with the loss and the proxy rules; deleted on
/// drop, with the proxy.
struct Lossy {
    ns: String,
    proxy: Option<Child>,
}

impl Lossy {
    /// `None`, with the reason printed, without root, `ip` or `iptables`.
    fn new(ports: Ports) -> Option<Lossy> {
        let ns = format!("wsrsoak{}", std::process::id());
        let _ = run("ip", &["netns", "del", &ns]); // left by a crashed run of this pid
        let made = run("ip", &["netns", "add", &ns]).map(|()| Lossy {
            ns: ns.clone(),
            proxy: None,
        });
        let lossy = match made.and_then(|l| l.rules(ports).map(|()| l)) {
            Ok(lossy) => lossy,
            Err(why) => {
                eprintln!(
                    "\n!!!!! soak with delay and loss SKIPPED: needs root, ip and iptables ({why}) !!!!!\n"
                );
                let _ = run("ip", &["netns", "del", &ns]);
                return None;
            }
        };
        Some(lossy)
    }

    fn rules(&self, ports: Ports) -> Result<(), String> {
        let ns = self.ns.as_str();
        let iptables = |rule: &[&str]| {
            let mut args = vec!["netns", "exec", ns, "iptables"];
            args.extend_from_slice(rule);
            run("ip", &args)
        };
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        for port in ports.client {
            let port = port.to_string();
            iptables(&[
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "127.0.0.1",
                "--dport",
                &port,
                "!",
                "-s",
                PROXY_SOURCE,
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ])?;
        }
        iptables(&[
            "-A",
            "OUTPUT",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            LOSS,
            "-j",
            "DROP",
        ])
    }

    /// This test binary again, inside the namespace, with `env`.
    fn command(&self, test: &str, ignored: bool, ports: Ports) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(std::env::current_exe().expect("the test binary"))
            .args([test, "--exact", "--nocapture"])
            .args(ignored.then_some("--ignored"))
            .env(
                NETWORK_VAR,
                format!(
                    "loss {}%, delay {DELAY:?} ± {JITTER:?} each way",
                    LOSS.parse::<f64>().unwrap_or(0.0) * 100.0
                ),
            )
            // Its own NATS cluster on these ports of its own namespace, reached through the
            // proxy.
            .env_remove("WSR_NATS_DIR")
            .env(PORTS_VAR, ports.to_env())
            .env(CLIENT_HOST_VAR, PROXY_HOST);
        c
    }
}

impl Lossy {
    /// The counters of the namespace's `OUTPUT` chain: packets lost at random, and
    /// connections to a server refused for not coming through the proxy.
    fn counters(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "iptables", "-L", "OUTPUT", "-v", "-x", "-n",
            ])
            .output();
        let Ok(out) = out else {
            return "no counters".to_owned();
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let first = |l: &str, at: usize| {
            l.split_whitespace()
                .nth(at)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let lost: u64 = text
            .lines()
            .filter(|l| l.contains("statistic"))
            .map(|l| first(l, 0))
            .sum();
        let refused: u64 = text
            .lines()
            .filter(|l| l.contains("REJECT"))
            .map(|l| first(l, 0))
            .sum();
        format!("{lost} packets lost at random, {refused} direct connections refused")
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

/// Whether this process runs inside the namespace (a soak started by [`soak_inside`], or its
/// proxy): an outer test that finds itself there does nothing.
pub fn inside() -> bool {
    std::env::var_os(NETWORK_VAR).is_some()
}

/// Runs the test `soak` of this binary inside a namespace with delay and loss, with the proxy
/// (the binary's ignored test `proxy`, which calls [`delay_proxy`]); prints the soak's lines
/// that start with `report` and asserts that it passed. Does nothing when called inside the
/// namespace (the test that calls it is then not the one started there). Skipped, with the reason printed,
/// without `nats-server`, root, `ip` or `iptables`.
pub fn soak_inside(soak: &str, proxy: &str, report: &str) {
    if inside() {
        return; // inside the namespace: only the soak it was started for runs
    }
    // Holds this binary's test lock, so the soak inside has the cores to itself.
    let Some(nats) = nats() else { return };
    let ports = nats.ports; // free in the new namespace too: nothing else runs there
    let Some(mut lossy) = Lossy::new(ports) else {
        return;
    };
    lossy.proxy = Some(
        lossy
            .command(proxy, true, ports)
            .env(PROXY_VAR, "1")
            .stdout(Stdio::null())
            .spawn()
            .expect("the proxy starts"),
    );
    let started = Instant::now();
    let out = lossy
        .command(soak, false, ports)
        .output()
        .expect("the soak starts in the namespace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(report) || l.contains("SKIPPED") || l.contains("panicked"))
        .collect();
    eprintln!(
        "{}\n{soak} with delay and loss: {:.1?} in all; {}",
        lines.join("\n"),
        started.elapsed(),
        lossy.counters()
    );
    assert!(
        out.status.success(),
        "{soak} with delay and loss failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The delaying proxy, for the binary's `proxy` test that [`soak_inside`] starts inside the
/// namespace: listens on [`PROXY_HOST`] on each server's client port and forwards to the
/// server, holding every chunk for [`DELAY`] ± [`JITTER`]. Returns at once elsewhere.
pub fn delay_proxy() {
    if std::env::var_os(PROXY_VAR).is_none() {
        return;
    }
    rt().block_on(async {
        let mut listeners = Vec::new();
        for port in ports().client {
            let listener = TcpListener::bind((PROXY_HOST, port))
                .await
                .expect("the proxy listens");
            listeners.push(tokio::spawn(accept(listener, port)));
        }
        for l in listeners {
            let _ = l.await;
        }
    });
}

async fn accept(listener: TcpListener, port: u16) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(server) = connect(port).await else {
                return; // the server is down: the client sees the close and fails over
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Either direction ending ends both (the other side's close is forwarded).
            tokio::select! {
                _ = delayed(cr, sw) => {}
                _ = delayed(sr, cw) => {}
            }
        });
    }
}

/// A connection to the server on `port`, from [`PROXY_SOURCE`] (the only source the
/// servers accept in the namespace).
async fn connect(port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(
        (
            PROXY_SOURCE
                .parse::<std::net::Ipv4Addr>()
                .expect("an address"),
            0,
        )
            .into(),
    )?;
    socket
        .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await
}

/// Copies `from` to `to`, each chunk held for [`DELAY`] ± [`JITTER`] but never released
/// before the one ahead of it. At most 256 chunks wait (a bounded queue); a reader ahead of
/// that waits too, as a slow link would make it.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(256);
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut seed = u64::from(std::process::id()) | 1;
        let mut last = tokio::time::Instant::now();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // xorshift: jitter in [-JITTER, +JITTER].
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let spread = 2 * JITTER.as_micros() as u64 + 1;
            let hold = DELAY - JITTER + Duration::from_micros(seed % spread);
            last = last.max(tokio::time::Instant::now() + hold);
            if tx.send((last, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
