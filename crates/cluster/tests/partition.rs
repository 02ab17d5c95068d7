//! A silent network partition (docs/cluster-design.md §3): node B runs in a network namespace joined by a
//! veth pair to a NATS server on the host side; the link is set down for a while. Nothing
//! closes, so only heartbeats notice: the monitor across gets `noconnection` once, sends fail
//! `node unreachable`, and after the link is back new sends and monitors work.
//!
//! Needs root (`ip netns`); skipped otherwise. Addresses: 10.77.0.1 (host end), 10.77.0.2.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_cluster::{Cluster, ClusterOptions};
use wsrelay_process::{reason, Event, Pid, SendError, Value};

const NS: &str = "wsrpart";
const HOST_IF: &str = "wsrph";
const NS_IF: &str = "wsrpc";
const URL: &str = "nats://10.77.0.1:4399";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespace, the NATS server and node B's process; removed on drop.
struct Net {
    nats: Option<Child>,
    child: Option<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in [self.child.take(), self.nats.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        ip(&["link", "del", HOST_IF]);
        ip(&["netns", "del", NS]);
    }
}

fn setup() -> Option<Net> {
    ip(&["netns", "del", NS]);
    ip(&["link", "del", HOST_IF]);
    if !ip(&["netns", "add", NS]) {
        eprintln!("SKIPPED: cannot create a network namespace (needs root)");
        return None;
    }
    let net = Net {
        nats: None,
        child: None,
    };
    let ns_ip = |args: &[&str]| {
        let mut a = vec!["netns", "exec", NS, "ip"];
        a.extend_from_slice(args);
        ip(&a)
    };
    assert!(ip(&[
        "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF
    ]));
    assert!(ip(&["link", "set", NS_IF, "netns", NS]));
    assert!(ip(&["addr", "add", "10.77.0.1/24", "dev", HOST_IF]));
    assert!(ip(&["link", "set", HOST_IF, "up"]));
    assert!(ns_ip(&["addr", "add", "10.77.0.2/24", "dev", NS_IF]));
    assert!(ns_ip(&["link", "set", NS_IF, "up"]));
    assert!(ns_ip(&["link", "set", "lo", "up"]));
    Some(net)
}

/// Polls until the NATS server accepts connections (at most 10 s).
#[allow(clippy::disallowed_methods)] // a plain test thread, no runtime to block
fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "NATS server on {addr} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn options(node: &str) -> ClusterOptions {
    let mut o = ClusterOptions::new("wsrp", node, vec![URL.to_owned()]);
    o.names_bucket = None;
    o
}

/// Node B, run by the parent test inside the namespace: prints its echo PID, then waits.
#[test]
#[ignore = "helper of partition_is_noticed_by_heartbeats_and_heals"]
fn partition_child() {
    let Ok(node) = std::env::var("WSR_PARTITION_CHILD") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = Cluster::start(options(&node)).await.unwrap();
        b.node().add_host(HOST, Default::default());
        let echo = echo(b.node(), "echo");
        println!("PID {echo}");
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn partition_is_noticed_by_heartbeats_and_heals() {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let Some(mut net) = setup() else { return };
    net.nats = Some(
        Command::new("nats-server")
            .args(["-a", "10.77.0.1", "-p", "4399"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port("10.77.0.1:4399");
    let b_name = unique("pb");
    let mut child = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "partition::partition_child",
            "--nocapture",
        ])
        .env("WSR_PARTITION_CHILD", &b_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    net.child = Some(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line.strip_prefix("PID ") {
                let _ = tx.send(pid.to_owned());
            }
        }
    });
    let remote: Pid = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("node B in the namespace starts")
        .parse()
        .unwrap();
    let rt = rt();
    rt.block_on(async {
        let a = Cluster::start(options(&unique("pa"))).await.unwrap();
        a.node().add_host(HOST, Default::default());
        let me = probe(a.node());
        me.monitor(&remote).unwrap();
        assert!(
            echo_works(&me, &remote, Duration::from_secs(15)).await,
            "echo before the cut"
        );

        assert!(ip(&["link", "set", HOST_IF, "down"]));
        let cut = Instant::now();
        let ev = tokio::time::timeout(Duration::from_secs(15), me.next_event()).await;
        let detected = cut.elapsed();
        match ev {
            Ok(Event::Exit { from, result }) => {
                assert_eq!(from, remote);
                assert_eq!(result.error_text(), Some(reason::NOCONNECTION));
            }
            other => panic!("{other:?}"),
        }
        eprintln!("partition (veth down) detected after {detected:?}");
        assert!(matches!(
            me.send(&remote, "ping", Value::Null),
            Err(SendError::NodeUnreachable(_))
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(ip(&["link", "set", HOST_IF, "up"]));
        let healed = Instant::now();
        assert!(
            echo_works(&me, &remote, Duration::from_secs(30)).await,
            "echo after the link is back"
        );
        eprintln!("partition healed: echo again after {:?}", healed.elapsed());
        assert!(me.try_next_event().is_none(), "noconnection exactly once");
        me.monitor(&remote).unwrap();
        assert!(echo_works(&me, &remote, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            me.try_next_event().is_none(),
            "new monitor quiet after healing"
        );
        a.shutdown();
    });
    drop(net);
}
