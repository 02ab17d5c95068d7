//! `idle`: opens many idle connections, spread over loopback source addresses (one source
//! address gives about 28k ephemeral ports), and reports the server's RSS growth per connection.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::IdleArgs;
use crate::dial::Dialer;
use crate::sys::rss_total;

/// Result of an idle run.
#[derive(Debug, Serialize)]
pub struct IdleReport {
    /// Connections open at the end of the ramp.
    pub connections: usize,
    /// Seconds spent opening them.
    pub ramp_seconds: f64,
    /// Server RSS before, in bytes (when `--server-pid` was given).
    pub rss_before: Option<u64>,
    /// Server RSS with all connections open, in bytes.
    pub rss_after: Option<u64>,
    /// `(after - before) / connections`, in bytes.
    pub rss_per_connection: Option<u64>,
}

/// Runs `idle` and prints the report to stdout.
///
/// # Errors
///
/// When the URL is bad, a connection cannot be opened or the server's RSS cannot be read.
pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    let uri: http::Uri = args.url.parse().context("--url")?;
    let dialer = Dialer::new(uri, None).await?;
    let rss_before = rss_total(&args.server_pid)?;
    let started = Instant::now();
    let clients = dialer
        .open_many(
            args.connections,
            &args.sources,
            args.concurrency as usize,
            "connection",
        )
        .await?;
    let ramp_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} connections open in {ramp_seconds:.1}s; holding",
        clients.len()
    );
    // Let the server finish its per-connection setup before sampling.
    tokio::time::sleep(args.hold.min(Duration::from_secs(2))).await;
    let rss_after = rss_total(&args.server_pid)?;
    let rss_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if !clients.is_empty() => {
            Some(after.saturating_sub(before) / clients.len() as u64)
        }
        _ => None,
    };
    let report = IdleReport {
        connections: clients.len(),
        ramp_seconds,
        rss_before,
        rss_after,
        rss_per_connection,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("connections  ramp(s)  rss_before(KiB)  rss_after(KiB)  rss/conn(bytes)");
        let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| (v / 1024).to_string());
        println!(
            "{:<12} {:<8.1} {:<16} {:<15} {}",
            report.connections,
            report.ramp_seconds,
            kib(report.rss_before),
            kib(report.rss_after),
            report
                .rss_per_connection
                .map_or("-".to_owned(), |v| v.to_string())
        );
    }
    tokio::time::sleep(args.hold).await;
    drop(clients);
    Ok(())
}
