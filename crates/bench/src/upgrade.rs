//! `upgrade`: connect, upgrade to WebSocket and close (a full close handshake), over and over,
//! `concurrency` cycles at a time, spread over loopback source addresses. Reports cycles per
//! second (each one upgrade, so through a relay handler that spawns a process it is the
//! upgrade-and-spawn rate), the handshake latency, and the server's RSS at the start, after
//! `warmup` cycles (the baseline) and at the end: a leak shows as end > baseline.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::UpgradeArgs;
use crate::dial::Dialer;
use crate::latency::new_histogram;
use crate::sys::rss_total;

/// Result of an upgrade run. Latencies are in microseconds (TCP connect + handshake).
#[derive(Debug, Serialize)]
pub struct UpgradeReport {
    /// Cycles completed after the warm-up.
    pub cycles: u64,
    /// Cycles that failed (all phases).
    pub errors: u64,
    /// Measured seconds (after the warm-up).
    pub seconds: f64,
    /// Completed cycles per second after the warm-up.
    pub upgrades_per_sec: f64,
    /// Median connect + handshake time.
    pub p50_us: u64,
    /// 99th percentile connect + handshake time.
    pub p99_us: u64,
    /// Server RSS before the first cycle, in bytes.
    pub rss_start: Option<u64>,
    /// Server RSS after the warm-up, in bytes (the baseline).
    pub rss_baseline: Option<u64>,
    /// Server RSS after the last cycle, in bytes.
    pub rss_end: Option<u64>,
    /// `(end - baseline) / baseline`, in percent.
    pub growth_percent: Option<f64>,
}

/// Runs `upgrade` and prints the report to stdout.
///
/// # Errors
///
/// When the URL is bad, the server's RSS cannot be read, or every cycle fails.
pub async fn run(args: UpgradeArgs) -> anyhow::Result<()> {
    let uri: http::Uri = args.url.parse().context("--url")?;
    let dialer = Dialer::new(uri.clone(), args.ca.as_deref()).await?;
    let sources = if args.sources.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        args.sources.clone()
    };
    let settle = args.settle;
    let rss_start = rss_total(&args.server_pid)?;
    let warmup = args.warmup.min(args.cycles);
    if warmup > 0 {
        eprintln!("warm-up: {warmup} cycles");
        let (_, errors) = phase(&dialer, &sources, warmup, args.concurrency).await;
        if errors == warmup {
            anyhow::bail!("every warm-up cycle failed (is {uri} up?)");
        }
        tokio::time::sleep(settle).await;
    }
    let rss_baseline = rss_total(&args.server_pid)?;
    let measured = args.cycles - warmup;
    eprintln!("measuring: {measured} cycles");
    let started = Instant::now();
    let (histogram, errors) = phase(&dialer, &sources, measured, args.concurrency).await;
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_end = rss_total(&args.server_pid)?;
    let growth_percent = match (rss_baseline, rss_end) {
        (Some(base), Some(end)) if base > 0 => {
            Some((end as f64 - base as f64) * 100.0 / base as f64)
        }
        _ => None,
    };
    let report = UpgradeReport {
        cycles: histogram.len(),
        errors,
        seconds,
        upgrades_per_sec: histogram.len() as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        rss_start,
        rss_baseline,
        rss_end,
        growth_percent,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| (v / 1024).to_string());
        println!("cycles   errors  upgrades/s  p50(us)  p99(us)  rss start/base/end (KiB)  growth");
        println!(
            "{:<8} {:<7} {:<11.0} {:<8} {:<8} {:<25} {}",
            report.cycles,
            report.errors,
            report.upgrades_per_sec,
            report.p50_us,
            report.p99_us,
            format!(
                "{}/{}/{}",
                kib(report.rss_start),
                kib(report.rss_baseline),
                kib(report.rss_end)
            ),
            report
                .growth_percent
                .map_or("-".to_owned(), |g| format!("{g:+.1}%"))
        );
    }
    Ok(())
}

/// Runs `cycles` cycles, `concurrency` at a time; returns the handshake times and the failures.
async fn phase(
    dialer: &Dialer,
    sources: &[IpAddr],
    cycles: u64,
    concurrency: usize,
) -> (Histogram<u64>, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(progress(done.clone(), cycles));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, done) = (next.clone(), done.clone());
            let (dialer, sources) = (dialer.clone(), sources.to_vec());
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cycles {
                        break;
                    }
                    let source = sources[(i % sources.len() as u64) as usize];
                    match cycle(&dialer, source).await {
                        Ok(micros) => histogram.saturating_record(micros.max(1)),
                        Err(_) => errors += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (histogram, errors)
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut errors = 0;
    for worker in workers {
        if let Ok((partial, failed)) = worker.await {
            histogram.add(partial).ok();
            errors += failed;
        }
    }
    progress.abort();
    (histogram, errors)
}

/// One cycle: connect and upgrade (timed), then a client-initiated close handshake, reading
/// until the server closes, so the server ends the connection (and its process) normally.
async fn cycle(dialer: &Dialer, source: IpAddr) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut ws = dialer.open(source).await?;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    ws.close().await?;
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    });
    drained.await.context("server did not close")?;
    Ok(micros)
}

async fn progress(done: Arc<AtomicU64>, total: u64) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last = 0;
    loop {
        ticker.tick().await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "[{:>3.0}s] {:>7} cycles/s, {now}/{total}",
            start.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
}
