//! Frames from publishers that are not cluster nodes (hardening item 9): anyone who can
//! publish on `wsr.<cluster>.n.<node>.<anything>` must not create peers, heartbeats to
//! phantoms, metric series or memory; peers are capped and forgotten; with a cluster secret
//! only nodes holding it get in. Real nodes, a real 3-server NATS cluster, and a raw
//! `async-nats` client as the attacker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use wsrelay_cluster::{Cluster, ClusterOptions, ClusterSecret};
use wsrelay_process::{reason, Event, Pid, SpawnOptions, Value};

const T: Duration = Duration::from_secs(20);

/// A heartbeat frame, encoded by hand from the layout documented in `frame.rs`, unsigned.
fn heartbeat_frame(src: &str, dst: &str) -> Vec<u8> {
    let mut f = vec![5, 1, 0]; // version 5, heartbeat, flags: unsigned
    f.extend_from_slice(&7u32.to_be_bytes()); // incarnation
    for name in [src, dst] {
        f.push(name.len() as u8);
        f.extend_from_slice(name.as_bytes());
    }
    // session, published, ack_session, ack_seq, ack_bytes, grant_bytes
    for field in [1u64, 0, 0, 0, 0, 1 << 20] {
        f.extend_from_slice(&field.to_be_bytes());
    }
    f.extend_from_slice(&64u32.to_be_bytes()); // grant_frames
    f.push(0); // probe
    f
}

/// Counts what `node` publishes to peers, by destination node.
fn observe_publishes(client: &async_nats::Client, node: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (client, subject, out) = (client.clone(), format!("wsr.wsr.n.*.{node}"), seen.clone());
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut sub = client.subscribe(subject).await.unwrap();
        while let Some(msg) = sub.next().await {
            let dst = msg.subject.split('.').nth(3).unwrap_or_default().to_owned();
            out.lock().unwrap().push(dst);
        }
    });
    seen
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// The series (name and labels of each sample) in the node's metrics, sorted.
fn series(cluster: &Cluster) -> Vec<String> {
    let mut series: Vec<String> = metrics_text(cluster.stats())
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned())
        .collect();
    series.sort();
    series
}

fn dropped(cluster: &Cluster, reason: &str) -> u64 {
    cluster
        .stats()
        .dropped()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| n)
}

/// Spawns an echo process on `cluster` and checks a round trip from `other` through it.
async fn echo_across(cluster: &Cluster, other: &Cluster) {
    let echo = cluster
        .node()
        .spawn(HOST, SpawnOptions::new(), |ctx| async move {
            let msg = ctx.recv().await;
            let from = msg.from().unwrap().clone();
            ctx.send(&from, "echo", msg.payload().clone()).unwrap();
        })
        .unwrap();
    let me = probe(other.node());
    me.send(&echo, "ping", Value::from("hi")).unwrap();
    let msg = tokio::time::timeout(T, me.recv()).await.expect("echo");
    assert_eq!(msg.payload(), &Value::from("hi"));
}

/// Fast detection and forgetting, so the test does not wait minutes.
fn quick(node: &str, max_peers: usize) -> ClusterOptions {
    options(node)
        .with_heartbeat(Duration::from_millis(250), Duration::from_secs(1))
        .with_peer_limits(max_peers, Duration::from_secs(1))
}

#[test]
fn garbage_frames_create_no_peers_and_a_valid_peer_still_joins() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a_name = unique("ga");
        let a = start(&a_name).await;
        let attacker = raw_client("admin", "admin-pw").await;
        let published = observe_publishes(&attacker, &a_name);
        let series_before = series(&a);
        let rss_before = rss_bytes();

        // 20,000 frames, each from another made-up node: mostly one byte of garbage, and
        // well-formed heartbeats that name another source or another destination.
        let n = 20_000u32;
        for i in 0..n {
            let subject = format!("wsr.wsr.n.{a_name}.ph{i}");
            let payload = match i % 10 {
                0 => heartbeat_frame(&format!("other{i}"), &a_name),
                1 => heartbeat_frame(&format!("ph{i}"), "someone_else"),
                _ => vec![i as u8],
            };
            attacker.publish(subject, payload.into()).await.unwrap();
        }
        attacker.flush().await.unwrap();
        let refused = || dropped(&a, "malformed") + dropped(&a, "forged");
        assert!(
            eventually(T, || refused() == u64::from(n)).await,
            "every frame refused: {} of {n}",
            refused()
        );
        // Two heartbeat intervals: a phantom peer would have been sent heartbeats by now.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let rss_growth = rss_bytes().saturating_sub(rss_before);
        eprintln!(
            "20,000 garbage frames: RSS grew by {} KiB",
            rss_growth / 1024
        );
        assert!(a.peers().is_empty(), "no peer: {:?}", a.peers().len());
        assert_eq!(a.stats().peers_known(), 0);
        assert_eq!(series(&a), series_before, "no new metric series");
        assert!(
            published.lock().unwrap().is_empty(),
            "no heartbeats to phantoms"
        );
        // Before the fix each phantom cost ~10 KiB (200 MB for 20,000); the bound is loose
        // because the allocator keeps what the flood's buffers used.
        assert!(
            rss_growth < 40 << 20,
            "memory flat: grew {rss_growth} bytes"
        );

        // A real node still joins, and traffic flows both ways.
        let b_name = unique("gb");
        let b = start(&b_name).await;
        echo_across(&a, &b).await;
        echo_across(&b, &a).await;
        assert_eq!(a.peers(), vec![(b_name.clone(), true)]);
        let up = format!("wsrelay_peer_up{{peer=\"{b_name}\"}}");
        assert!(series(&a).contains(&up));
        let to: Vec<String> = published.lock().unwrap().clone();
        assert!(
            !to.is_empty() && to.iter().all(|dst| *dst == b_name),
            "{to:?}"
        );
        a.shutdown();
        b.shutdown();
    });
}

#[test]
fn a_node_user_may_publish_only_as_itself() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a_name = unique("pa");
        let a = start(&a_name).await;
        // User `d` of the test cluster may publish on `wsr.wsr.n.*.d` only.
        let d = raw_client("d", "d-pw").await;
        let errors_before = dropped(&a, "forged") + dropped(&a, "malformed");
        // As another node: the server refuses it, nothing reaches the node.
        let as_e = heartbeat_frame("e", &a_name);
        d.publish(format!("wsr.wsr.n.{a_name}.e"), as_e.into())
            .await
            .unwrap();
        // On its own subject but naming another source inside: refused by the node.
        let lying = heartbeat_frame("e", &a_name);
        d.publish(format!("wsr.wsr.n.{a_name}.d"), lying.into())
            .await
            .unwrap();
        d.flush().await.unwrap();
        assert!(eventually(T, || dropped(&a, "forged") == errors_before + 1).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            dropped(&a, "forged") + dropped(&a, "malformed"),
            errors_before + 1
        );
        assert!(a.peers().is_empty(), "{:?}", a.peers());
        a.shutdown();
    });
}

#[test]
fn peers_beyond_the_cap_are_refused_until_a_down_peer_makes_room() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a_name = unique("ca");
        let a = start_with(quick(&a_name, 2)).await;
        let (b_name, c_name, d_name) = (unique("cb"), unique("cc"), unique("cd"));
        let b = start_with(quick(&b_name, 8)).await;
        let c = start_with(quick(&c_name, 8)).await;
        echo_across(&a, &b).await;
        echo_across(&a, &c).await;
        assert_eq!(a.peers().len(), 2);

        // A third peer: refused and counted, also for local sends towards it.
        let d = start_with(quick(&d_name, 8)).await;
        let target = probe(a.node());
        probe(d.node())
            .send(target.pid(), "knock", Value::Null)
            .unwrap();
        assert!(eventually(T, || dropped(&a, "peer_limit") > 0).await);
        let d_pid: Pid = probe(d.node()).pid().clone();
        assert!(target.send(&d_pid, "hello", Value::Null).is_err());
        assert!(a.peers().iter().all(|(p, _)| *p != d_name));
        assert_eq!(a.stats().peers_known(), 2);

        // C goes down: D takes its place at its next heartbeat, and C's series goes.
        c.shutdown();
        let joined = (d_name.clone(), true);
        assert!(
            eventually(T, || a.peers().contains(&joined)).await,
            "{:?}",
            a.peers()
        );
        let listed: Vec<String> = a.peers().into_iter().map(|(p, _)| p).collect();
        let mut expected = vec![b_name.clone(), d_name.clone()];
        expected.sort();
        assert_eq!(listed, expected);
        let peer_series: Vec<String> = series(&a)
            .into_iter()
            .filter(|s| s.starts_with("wsrelay_peer_up"))
            .collect();
        assert_eq!(peer_series.len(), 2, "{peer_series:?}");
        assert!(!peer_series.iter().any(|s| s.contains(&c_name)));
        // D never heard from A while A refused it, so D may have declared A down (its sends
        // there then fail with `node unreachable`) before A let it in: D sends again once it
        // has heard from A, whose heartbeats reach D only after A let D in.
        let a_up = (a_name.clone(), true);
        assert!(
            eventually(T, || d.peers().contains(&a_up)).await,
            "{:?}",
            d.peers()
        );
        echo_across(&a, &d).await;
        a.shutdown();
        b.shutdown();
        d.shutdown();
    });
}

#[test]
fn a_forgotten_peer_gets_noconnection_once_and_rejoins_after_a_restart() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start_with(quick(&unique("fa"), 8)).await;
        let b_name = unique("fb");
        let b = start_with(quick(&b_name, 8)).await;
        let me = probe(a.node());
        me.set_trap_links(true);
        let t = idle(b.node());
        me.monitor(&t).unwrap();
        me.link(&t).unwrap();
        let up = (b_name.clone(), true);
        assert!(eventually(T, || a.peers().contains(&up)).await);

        b.shutdown();
        let got = [next_event(&me).await, next_event(&me).await];
        assert!(got.iter().any(|e| matches!(e, Event::Exit { result, .. } if result.error_text() == Some(reason::NOCONNECTION))));
        assert!(got.iter().any(|e| matches!(e, Event::LinkDown { result, .. } if result.error_text() == Some(reason::NOCONNECTION))));
        // Forgotten a second after being declared down: state and series gone.
        assert!(eventually(T, || a.peers().is_empty()).await, "{:?}", a.peers());
        assert!(!series(&a).iter().any(|s| s.contains(&b_name)));
        // Monitoring the forgotten node's PID again: one more `noconnection`, for the new
        // monitor only (the node is still away).
        me.monitor(&t).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, t);
                assert_eq!(result.error_text(), Some(reason::NOCONNECTION));
            }
            other => panic!("{other:?}"),
        }

        // The node restarts under the same name: it joins again.
        // It speaks first: A's peer of that name may still be down, refusing sends.
        let b2 = start_with(quick(&b_name, 8)).await;
        echo_across(&a, &b2).await;
        assert!(eventually(T, || a.peers().contains(&up)).await);
        let t2 = b2
            .node()
            .spawn(HOST, SpawnOptions::new(), |ctx| async move {
                ctx.recv().await;
            })
            .unwrap();
        me.monitor(&t2).unwrap();
        me.send(&t2, "go", Value::Null).unwrap();
        match next_event(&me).await {
            Event::Exit { from, result } => {
                assert_eq!(from, t2);
                assert!(result.error_text().is_none(), "{result:?}");
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(me.try_next_event().is_none(), "every monitor and link failed once");
        a.shutdown();
        b2.shutdown();
    });
}

#[test]
fn a_peer_never_heard_from_is_forgotten_without_a_series() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let a = start_with(quick(&unique("na"), 8)).await;
        let me = probe(a.node());
        let ghost: Pid = format!("{{{}@{HOST}|0x100000001}}", unique("ghost"))
            .parse()
            .unwrap();
        me.send(&ghost, "anyone?", Value::Null).unwrap();
        me.monitor(&ghost).unwrap();
        assert_eq!(a.peers(), vec![(ghost.node().to_owned(), false)]);
        match next_event(&me).await {
            Event::Exit { result, .. } => {
                assert_eq!(result.error_text(), Some(reason::NOCONNECTION));
            }
            other => panic!("{other:?}"),
        }
        assert!(eventually(T, || a.peers().is_empty()).await);
        assert!(!series(&a).iter().any(|s| s.starts_with("wsrelay_peer_up")));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(me.try_next_event().is_none(), "noconnection exactly once");
        a.shutdown();
    });
}

#[test]
fn with_a_cluster_secret_only_nodes_holding_it_get_in() {
    let Some(_nats) = nats() else { return };
    rt().block_on(async {
        let secret = ClusterSecret::new(b"a secret of the test cluster").unwrap();
        let wrong = ClusterSecret::new(b"not the secret of this cluster").unwrap();
        let a = start_with(options(&unique("sa")).with_secret(secret.clone())).await;
        let b = start_with(options(&unique("sb")).with_secret(secret)).await;
        echo_across(&a, &b).await;
        echo_across(&b, &a).await;

        // A node with another secret, and one without: their frames never get in.
        let c = start_with(options(&unique("sc")).with_secret(wrong)).await;
        let d = start_with(options(&unique("sd"))).await;
        let target = probe(a.node());
        for outsider in [&c, &d] {
            probe(outsider.node())
                .send(target.pid(), "let me in", Value::Null)
                .unwrap();
        }
        assert!(eventually(T, || dropped(&a, "unauthenticated") >= 2).await);
        // Nor do unsigned frames of a raw client, even well-formed and well-addressed ones.
        let raw = raw_client("admin", "admin-pw").await;
        let before = dropped(&a, "unauthenticated");
        let a_name = a.node().name().to_owned();
        raw.publish(
            format!("wsr.wsr.n.{a_name}.intruder"),
            heartbeat_frame("intruder", &a_name).into(),
        )
        .await
        .unwrap();
        raw.flush().await.unwrap();
        assert!(eventually(T, || dropped(&a, "unauthenticated") > before).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            target.try_recv().is_none(),
            "nothing delivered from outsiders"
        );
        let peers: Vec<String> = a.peers().into_iter().map(|(p, _)| p).collect();
        assert_eq!(peers, vec![b.node().name().to_owned()]);
        for n in [&a, &b, &c, &d] {
            n.shutdown();
        }
    });
}

#[test]
fn a_secret_shorter_than_sixteen_bytes_is_refused_at_start() {
    let error = ClusterSecret::new(b"short").unwrap_err();
    assert!(error.to_string().contains("at least 16"), "{error}");
    let dir = std::env::temp_dir().join(format!("wsr-secret-{}", std::process::id()));
    std::fs::write(&dir, "short\n").unwrap();
    let error = ClusterSecret::from_file(&dir).unwrap_err();
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "{error}"
    );
    let _ = std::fs::remove_file(&dir);
}
