//! Backpressure and isolation (docs/spec.md §9): a client that never reads is closed as a
//! slow consumer without slowing anyone else, and a client flooding a slow Lua target is held
//! back by TCP instead of growing the target's inbox or the server's memory.
//!
//! Timing is printed, not asserted (run with `--nocapture`): the asserts are on outcomes, so
//! a loaded machine cannot make these tests flaky.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as T;
use wsrelay_process::{Pid, SpawnOptions, Value};
use wsrelay_relay::{ClientEvent, ClientEventKind, Outgoing};

/// What an echo target reports: `(client, "join" | leave reason, close code)`.
type Report = (Pid, &'static str, Option<u16>);

/// A Rust target that echoes every frame and reports joins and leaves.
fn echo_target(h: &Harness) -> (Pid, mpsc::UnboundedReceiver<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pid = h
        .node
        .spawn(HOST, SpawnOptions::new(), move |ctx| echo_body(ctx, tx))
        .unwrap();
    (pid, rx)
}

async fn echo_body(ctx: wsrelay_process::Context, tx: mpsc::UnboundedSender<Report>) {
    loop {
        let msg = ctx.recv().await;
        let Some(event) = msg.payload().downcast_ref::<ClientEvent>() else {
            continue;
        };
        let client = event.client_pid.clone();
        match &event.kind {
            ClientEventKind::Join { .. } => {
                let _ = tx.send((client, "join", None));
            }
            ClientEventKind::Message { data, .. } => {
                let echo = Outgoing::text(String::from_utf8_lossy(data).into_owned());
                let _ = ctx.send(&client, "ws.send", Value::Opaque(Arc::new(echo)));
            }
            ClientEventKind::Leave { reason, code } => {
                let _ = tx.send((client, reason, *code));
            }
            _ => {}
        }
    }
}

/// Echo round trips for `window`, one at a time; the latencies, or `None` if an echo did not
/// come back within 5 s.
async fn echo_for(mut client: Client, window: Duration) -> Option<Vec<Duration>> {
    let mut latencies = Vec::new();
    let end = Instant::now() + window;
    let mut i = 0u64;
    while Instant::now() < end {
        let text = format!("e{i}");
        i += 1;
        let sent = Instant::now();
        client.send(T::text(text.clone())).await.ok()?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .ok()??
                .ok()?;
            if matches!(&frame, T::Text(t) if t.as_str() == text) {
                break;
            }
        }
        latencies.push(sent.elapsed());
    }
    let _ = client.close(None).await;
    drain(client);
    Some(latencies)
}

/// Runs `clients` echo loops at once and returns every latency, sorted.
async fn echo_round(h: &Harness, clients: usize, window: Duration) -> Vec<Duration> {
    let mut loops = Vec::new();
    for _ in 0..clients {
        let client = h.connect_to("echo").await.expect("connect");
        loops.push(tokio::spawn(echo_for(client, window)));
    }
    let mut all = Vec::new();
    for task in loops {
        let latencies = task
            .await
            .unwrap()
            .expect("a client went unserved (an echo took over 5 s)");
        all.extend(latencies);
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_closed_as_slow_consumer_and_others_keep_being_served() {
    let h = Harness::builder()
        .option("wsrelay.max_outbound_bytes", "1MiB")
        .option("wsrelay.write_timeout", "2s")
        .no_upgrade_rate_limit()
        .start()
        .await;
    let (target, mut reports) = echo_target(&h);
    h.node.register("echo", &target).unwrap();
    let (flooder, _flooder_guard) = h.probe();
    let window = Duration::from_millis(1500);
    let clients = 8;

    // Without a stalled client.
    let quiet = echo_round(&h, clients, window).await;

    // With one: it never reads while 64 KiB frames are sent to it as fast as it takes them.
    assert!(eventually(Duration::from_secs(10), || h.relay.stats().open() == 0).await);
    while reports.try_recv().is_ok() {}
    let stalled = h.connect_to("echo").await.unwrap();
    let (stalled_pid, _, _) = reports.recv().await.unwrap();
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let flood = {
        let pid = stalled_pid.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while flooder
                .send(
                    &pid,
                    "ws.send",
                    Value::Opaque(Arc::new(Outgoing::binary(chunk.clone()))),
                )
                .is_ok()
            {
                sent += 1;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            sent
        })
    };
    let flood_start = Instant::now();
    let busy = echo_round(&h, clients, window).await;

    // The stalled client is closed as a slow consumer: ws.leave says so, and so does the
    // close frame it finds once it reads.
    let leave = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (pid, what, code) = reports.recv().await.unwrap();
            if pid == stalled_pid && what != "join" {
                return (what, code);
            }
        }
    })
    .await
    .expect("the stalled client was never closed");
    let detected_after = flood_start.elapsed();
    let (_, bytes_out) = h.relay.stats().outbound();
    assert_eq!(leave, ("slow_consumer", Some(1008)));
    let mut stalled = stalled;
    let code = read_to_end(&mut stalled, Duration::from_secs(10)).await;
    let frames_sent = flood.await.unwrap();

    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (b50, b99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    println!(
        "stall: {clients} echo clients, {}+{} round trips; p50/p99 without a stalled client \
         {q50:.2?}/{q99:.2?}, with one {b50:.2?}/{b99:.2?}; stalled client closed after \
         {detected_after:.2?} and {frames_sent} frames of 64 KiB ({} KiB written to sockets), close code seen by it: {code:?}",
        quiet.len(),
        busy.len(),
        bytes_out / 1024,
    );
    assert_eq!(code, Some(1008), "the stalled client reads a 1008 close");
    // The others were served: every echo of `echo_round` came back (within its 5 s wait);
    // how fast is the report above, not an assertion.
}

const SLOW_LUA: &str = r#"
local time = require("time")
local function run()
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        time.sleep("2ms")
    end
end
return { run = run }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_slow_lua_target_is_held_back_by_tcp() {
    const HIGH_WATER: usize = 32;
    let h = Harness::builder()
        .high_water(HIGH_WATER)
        .no_upgrade_rate_limit()
        .start()
        .await;
    let engine =
        wsrelay_lua::LuaEngine::new(h.node.clone(), wsrelay_lua::EngineConfig::default()).unwrap();
    engine
        .register_process(
            "app:slow",
            wsrelay_lua::ProcessSpec {
                source: SLOW_LUA.into(),
                method: "run".into(),
                modules: vec!["time".into()],
            },
        )
        .unwrap();
    let target = h
        .node
        .spawn_entry("app:slow", HOST, SpawnOptions::new(), Vec::new())
        .unwrap();
    h.node.register("slow", &target).unwrap();

    let rss_before = rss_kib();
    let client = h.connect_to("slow").await.unwrap();
    let (mut sink, stream) = client.split();
    let frame = "y".repeat(4096);
    let total = 20_000u64; // 80 MiB: far more than the socket buffers hold
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for _ in 0..total {
                if sink.send(T::text(frame.clone())).await.is_err() {
                    break;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            sink
        })
    };
    let mut peak_rss = rss_before;
    let mut peak_inbox = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_rss = peak_rss.max(rss_kib());
        if let Some(info) = h.node.processes().into_iter().find(|p| p.pid == target) {
            peak_inbox = peak_inbox.max(info.inbox_peak);
        }
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "flood: client wrote {sent} of {total} frames of 4 KiB in 3 s; target inbox peak \
         {peak_inbox} (high-water mark {HIGH_WATER}); RSS {rss_before} KiB before, peak \
         {peak_rss} KiB ({:+} KiB)",
        peak_rss as i64 - rss_before as i64
    );
    assert!(
        peak_inbox <= HIGH_WATER + 1,
        "the relay kept reading: inbox peak {peak_inbox}"
    );
    assert!(
        sent < total,
        "the client was never held back ({sent} frames written)"
    );
    // 80 MiB offered; what the server holds is the target's inbox plus socket buffers.
    assert!(
        peak_rss < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {peak_rss} KiB"
    );
    writer.abort();
    drop(stream);
    drop(engine);
}
