//! `broadcast`: fan-out delivery latency. `clients` receivers connect first (spread over the
//! source addresses), then one sender connects and publishes `messages` text frames
//! `bench:SEQ:MICROS`, where MICROS is the send time on this process's clock. Each receiver
//! looks for that text in every frame it gets (so a server may wrap it, as the chat example
//! does in JSON) and records `now - MICROS`. A progress line goes to stderr every second.
//!
//! Several `--url`s (the nodes of a cluster, each serving the same app) share the receivers
//! evenly; the sender connects to the first. One process and one clock measure them all, so
//! the report gives the percentiles over every receiver and, per URL, over its receivers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_websockets::Message;

use crate::cli::BroadcastArgs;
use crate::dial::{ClientWs, Dialer};
use crate::latency::{new_histogram, Latency};

/// How many handshakes run at once while opening connections.
const CONNECT_CONCURRENCY: usize = 64;

/// Result of a broadcast run. Latencies are in microseconds, from the sender's send to a
/// receiver's read.
#[derive(Debug, Serialize)]
pub struct BroadcastReport {
    /// Receivers connected.
    pub clients: usize,
    /// Messages the sender published.
    pub messages: u64,
    /// Deliveries expected (`clients * messages`).
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Seconds spent opening the receivers.
    pub ramp_seconds: f64,
    /// Delivery latencies.
    #[serde(flatten)]
    pub latency: Latency,
    /// Receivers whose connection failed.
    pub errors: usize,
    /// With several `--url`s: the same figures for the receivers of each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_url: Vec<UrlReport>,
}

/// The receivers of one `--url`.
#[derive(Debug, Serialize)]
pub struct UrlReport {
    /// The URL they connected to.
    pub url: String,
    /// Receivers connected there.
    pub clients: usize,
    /// Deliveries seen there.
    pub delivered: u64,
    /// Their delivery latencies.
    #[serde(flatten)]
    pub latency: Latency,
    /// Those whose connection failed.
    pub errors: usize,
}

/// Runs `broadcast` and prints the report to stdout.
///
/// # Errors
///
/// When a URL is bad or a connection cannot be opened.
pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    let sender_uri: http::Uri = match &args.sender_url {
        Some(url) => url.parse().context("--sender-url")?,
        None => sender_url(&args.url[0]).parse().context("--url")?,
    };
    let started = Instant::now();
    // (URL index, connection) for every receiver; URL k gets its even share of the clients.
    let mut receivers = Vec::with_capacity(args.clients);
    let urls = args.url.len();
    for (k, url) in args.url.iter().enumerate() {
        let uri: http::Uri = url.parse().with_context(|| format!("--url {url}"))?;
        let share = args.clients / urls + usize::from(k < args.clients % urls);
        let opened = Dialer::new(uri, None)
            .await?
            .open_many(share, &args.sources, CONNECT_CONCURRENCY, "receiver")
            .await?;
        receivers.extend(opened.into_iter().map(|ws| (k, ws)));
    }
    let ramp_seconds = started.elapsed().as_secs_f64();
    eprintln!("{} receivers open in {ramp_seconds:.1}s", receivers.len());

    let clock = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let give_up = clock
        + args.interval * u32::try_from(args.messages).unwrap_or(u32::MAX)
        + args.timeout
        + Duration::from_secs(2);
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|(k, ws)| {
            let receive = receive(ws, clock, args.messages, delivered.clone(), give_up);
            tokio::spawn(async move { (k, receive.await) })
        })
        .collect();

    let (mut sender, _) = tokio_websockets::ClientBuilder::from_uri(sender_uri.clone())
        .connect()
        .await
        .with_context(|| format!("sender to {sender_uri}"))?;
    // Let the joins reach the server's room before the first message.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let progress = tokio::spawn(progress(delivered.clone(), args.clients as u64));
    let mut ticker = tokio::time::interval(args.interval);
    for seq in 0..args.messages {
        ticker.tick().await;
        let micros = clock.elapsed().as_micros();
        sender
            .send(Message::text(format!("bench:{seq}:{micros}")))
            .await
            .context("sender")?;
    }
    // The sender may get its own broadcasts: read them so the server never sees it as slow.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = sender.next().await {} });

    let mut histogram = new_histogram();
    let mut per_message: Vec<Histogram<u64>> =
        (0..args.messages).map(|_| new_histogram()).collect();
    let mut errors = 0;
    let mut per_url: Vec<(Histogram<u64>, usize, usize)> =
        (0..urls).map(|_| (new_histogram(), 0, 0)).collect();
    for task in tasks {
        let (k, (seen, failed)) = task.await?;
        per_url[k].1 += 1;
        per_url[k].2 += usize::from(failed);
        for (seq, micros) in seen {
            histogram.saturating_record(micros);
            per_url[k].0.saturating_record(micros);
            if let Some(h) = usize::try_from(seq)
                .ok()
                .and_then(|i| per_message.get_mut(i))
            {
                h.saturating_record(micros);
            }
        }
        errors += usize::from(failed);
    }
    if args.per_message {
        for (seq, h) in per_message.iter().enumerate() {
            eprintln!(
                "message {seq:>3}: {:>6} delivered  p50 {:>8} us  max {:>8} us",
                h.len(),
                h.value_at_quantile(0.5),
                h.max()
            );
        }
    }
    progress.abort();
    drain.abort();
    let report = BroadcastReport {
        clients: args.clients,
        messages: args.messages,
        expected: args.clients as u64 * args.messages,
        delivered: histogram.len(),
        ramp_seconds,
        latency: Latency::of(&histogram),
        errors,
        per_url: if urls > 1 {
            args.url
                .iter()
                .zip(&per_url)
                .map(|(url, (h, clients, errors))| UrlReport {
                    url: url.clone(),
                    clients: *clients,
                    delivered: h.len(),
                    latency: Latency::of(h),
                    errors: *errors,
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "clients  messages  delivered/expected  p50(us)  p95(us)  p99(us)  max(us)  errors"
        );
        println!(
            "{:<8} {:<9} {:<19} {:<8} {:<8} {:<8} {:<8} {}",
            report.clients,
            report.messages,
            format!("{}/{}", report.delivered, report.expected),
            report.latency.p50_us,
            report.latency.p95_us,
            report.latency.p99_us,
            report.latency.max_us,
            report.errors
        );
        for u in &report.per_url {
            println!(
                "  {}: {} clients, {} delivered, p50 {} p95 {} p99 {} max {} us, {} errors",
                u.url,
                u.clients,
                u.delivered,
                u.latency.p50_us,
                u.latency.p95_us,
                u.latency.p99_us,
                u.latency.max_us,
                u.errors
            );
        }
    }
    Ok(())
}

/// `url` with `sender=1` added to its query.
fn sender_url(url: &str) -> String {
    if url.contains('?') {
        format!("{url}&sender=1")
    } else {
        format!("{url}?sender=1")
    }
}

/// Reads frames until `messages` were seen, the connection fails, or `give_up`; returns the
/// (SEQ, latency in µs) of every stamped frame, and whether the connection failed.
async fn receive(
    mut ws: ClientWs,
    clock: Instant,
    messages: u64,
    delivered: Arc<AtomicU64>,
    give_up: Instant,
) -> (Vec<(u64, u64)>, bool) {
    let mut seen = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
    let deadline = tokio::time::Instant::from_std(give_up);
    let mut failed = false;
    while (seen.len() as u64) < messages {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(_) => {
                failed = true;
                break;
            }
            Err(_) => break,
        };
        let now = clock.elapsed().as_micros();
        if let Some((seq, sent)) = message.as_text().and_then(stamp) {
            let micros = u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX);
            seen.push((seq, micros.max(1)));
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = ws.close().await;
    (seen, failed)
}

/// The SEQ and MICROS of `bench:SEQ:MICROS` somewhere in `text`.
fn stamp(text: &str) -> Option<(u64, u128)> {
    let rest = &text[text.find("bench:")? + "bench:".len()..];
    let (seq, rest) = rest.split_once(':')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((seq.parse().ok()?, rest[..end].parse().ok()?))
}

async fn progress(delivered: Arc<AtomicU64>, clients: u64) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        ticker.tick().await;
        let now = delivered.load(Ordering::Relaxed);
        eprintln!(
            "[{:>3.0}s] {:>9} deliveries ({:.1} messages to every client)",
            start.elapsed().as_secs_f64(),
            now,
            now as f64 / clients.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stamp_in_wrapped_text() {
        assert_eq!(stamp("bench:3:12345"), Some((3, 12345)));
        assert_eq!(stamp(r#"{"text":"bench:4:77","user":"x"}"#), Some((4, 77)));
        assert_eq!(stamp("hello"), None);
        assert_eq!(sender_url("ws://h/"), "ws://h/?sender=1");
        assert_eq!(sender_url("ws://h/?a=b"), "ws://h/?a=b&sender=1");
    }
}
