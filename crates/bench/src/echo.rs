//! `echo`: closed-loop echo load. Each connection sends one text message, waits for the echo
//! and repeats until the deadline; latencies go into one `hdrhistogram` per connection, merged at
//! the end. A progress line goes to stderr every second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio_websockets::Message;

use crate::cli::EchoArgs;
use crate::dial::{loopback_for, Dialer};
use crate::latency::{new_histogram, Latency};

/// Result of an echo run. Latencies are in microseconds.
#[derive(Debug, Serialize)]
pub struct EchoReport {
    /// Connections that took part.
    pub connections: usize,
    /// Payload size in bytes.
    pub payload: usize,
    /// Measured time in seconds.
    pub seconds: f64,
    /// Echoed messages.
    pub messages: u64,
    /// Echoed messages per second.
    pub msgs_per_sec: f64,
    /// Round trips.
    #[serde(flatten)]
    pub latency: Latency,
    /// Connections that failed before the deadline.
    pub errors: usize,
}

/// Runs `echo` and prints the report to stdout.
///
/// # Errors
///
/// When the URL is bad or a connection cannot be opened.
pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let uri: http::Uri = args.url.parse().context("--url")?;
    let payload = "x".repeat(args.payload);
    let dialer = Dialer::new(uri.clone(), args.ca.as_deref()).await?;
    let source = loopback_for(dialer.target());
    let mut clients = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let ws = dialer
            .open(source)
            .await
            .with_context(|| format!("connection {i} to {uri}"))?;
        clients.push(ws);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let progress = tokio::spawn(progress(counter.clone(), start));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let counter = counter.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let mut failed = false;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if ws.send(Message::text(payload.clone())).await.is_err() {
                        failed = true;
                        break;
                    }
                    match ws.next().await {
                        Some(Ok(message)) if message.is_text() => {}
                        _ => {
                            failed = true;
                            break;
                        }
                    }
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    histogram.saturating_record(micros.max(1));
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = ws.close().await;
                (histogram, failed)
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut errors = 0;
    for task in tasks {
        let (partial, failed) = task.await?;
        histogram.add(partial).ok();
        errors += usize::from(failed);
    }
    let seconds = (deadline - start).as_secs_f64();
    progress.abort();
    let messages = histogram.len();
    let report = EchoReport {
        connections: args.connections,
        payload: args.payload,
        seconds,
        messages,
        msgs_per_sec: messages as f64 / seconds,
        latency: Latency::of(&histogram),
        errors,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("connections  payload  msgs/s      p50(us)  p95(us)  p99(us)  max(us)  errors");
        println!(
            "{:<12} {:<8} {:<11.0} {:<8} {:<8} {:<8} {:<8} {}",
            report.connections,
            report.payload,
            report.msgs_per_sec,
            report.latency.p50_us,
            report.latency.p95_us,
            report.latency.p99_us,
            report.latency.max_us,
            report.errors
        );
    }
    Ok(())
}

async fn progress(counter: Arc<AtomicU64>, start: Instant) {
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last = 0;
    loop {
        ticker.tick().await;
        let now = counter.load(Ordering::Relaxed);
        eprintln!(
            "[{:>3.0}s] {:>9} msgs/s",
            start.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
}
