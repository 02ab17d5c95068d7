//! Command line of the `wsrelay-bench` load generator: one subcommand per kind of load.
//!
//! To add a load: add a module with an `Args` struct and an async `run(args)`, and a variant to
//! [`Command`].
//!
//! Durations (`--duration 10s`, `--interval 200ms`) use wsrelay's one duration grammar
//! ([`wsrelay_config::parse_duration`]): `<number><unit>` terms with `h`, `m`, `s`, `ms`, `us`,
//! `ns`, e.g. `1m30s`.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use wsrelay_config::parse_duration;

/// WebSocket load generator for wsrelay (runs on one current-thread runtime: pin it with taskset).
#[derive(Debug, Parser)]
#[command(name = "wsrelay-bench", version)]
pub struct Cli {
    /// The load to generate.
    #[command(subcommand)]
    pub command: Command,
}

/// One kind of load.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Closed-loop echo: each connection sends a message, waits for its echo, repeats.
    Echo(EchoArgs),
    /// Opens idle connections and reports the server's resident memory per connection.
    Idle(IdleArgs),
    /// Fan-out: one sender publishes timestamped messages, N clients report delivery latency.
    Broadcast(BroadcastArgs),
    /// Connect, upgrade and close, over and over: upgrades/s and the server's RSS before and
    /// after (leak check).
    Upgrade(UpgradeArgs),
}

/// Options of `echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Server URL, e.g. ws://127.0.0.1:9001/ or wss://localhost:9443/ (with --ca)
    #[arg(long)]
    pub url: String,
    /// The CA that signed the server's certificate (PEM), for wss:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Payload size of each text message, in bytes.
    #[arg(long, default_value_t = 20)]
    pub payload: usize,
    /// How long to send, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Server URL, e.g. ws://127.0.0.1:9001/
    #[arg(long)]
    pub url: String,
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Loopback source addresses to spread connections over (each gives ~28k ports).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub sources: Vec<IpAddr>,
    /// How long to hold the connections open once all are up (RSS is sampled after at most
    /// 2 s of it).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Handshakes in flight at once while opening connections. The server's allocator may
    /// keep what the connect storm's peak used, so a lower value separates that transient
    /// from the per-connection cost.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// PIDs of the server (comma-separated; their RSS is summed): report its RSS per
    /// connection (VmRSS before and after).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `broadcast`.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// URL the receivers connect to, e.g. ws://127.0.0.1:9004/; several (comma-separated,
    /// e.g. two cluster nodes) share the receivers evenly and get a line each in the report.
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// URL of the sender (default: the first `--url` with `?sender=1`). The server must send each text
    /// frame of the sender to every client; the frame may be wrapped (e.g. in JSON) as long
    /// as the text `bench:SEQ:MICROS` survives.
    #[arg(long)]
    pub sender_url: Option<String>,
    /// Receiving clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Loopback source addresses to spread connections over.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub sources: Vec<IpAddr>,
    /// Messages the sender publishes.
    #[arg(long, default_value_t = 20)]
    pub messages: u64,
    /// Pause between two messages, e.g. 200ms.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long to wait for the last deliveries after the last message.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also print, to stderr, each message's median and slowest delivery (shows a slow first
    /// message or a stall that the percentiles over all deliveries blur).
    #[arg(long)]
    pub per_message: bool,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Server URL, e.g. ws://127.0.0.1:9003/ or wss://localhost:9443/ (with --ca: every
    /// cycle is then a full TLS handshake)
    #[arg(long)]
    pub url: String,
    /// The CA that signed the server's certificate (PEM), for wss:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Connect/upgrade/close cycles to run in all (warm-up included).
    #[arg(long, default_value_t = 20_000)]
    pub cycles: u64,
    /// Cycles run first, before the RSS baseline is taken (allocator pools, runtime tables).
    #[arg(long, default_value_t = 5_000)]
    pub warmup: u64,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Loopback source addresses to spread connections over.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub sources: Vec<IpAddr>,
    /// PIDs of the server (comma-separated, RSS summed): report RSS at start, after the
    /// warm-up and at the end.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Pause before each RSS sample, so the server finishes closing.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_config_grammar() {
        let cli = Cli::try_parse_from([
            "wsrelay-bench",
            "broadcast",
            "--url",
            "ws://127.0.0.1:1/",
            "--interval",
            "1m30s",
        ])
        .unwrap();
        let Command::Broadcast(args) = cli.command else {
            panic!("not broadcast")
        };
        assert_eq!(args.interval, Duration::from_secs(90));
        assert_eq!(args.timeout, Duration::from_secs(10));
        // humantime's spellings that the one grammar does not have are refused.
        for bad in ["10 s", "2days", "1min"] {
            let parsed = Cli::try_parse_from([
                "wsrelay-bench",
                "echo",
                "--url",
                "ws://127.0.0.1:1/",
                "--duration",
                bad,
            ]);
            assert!(parsed.is_err(), "{bad:?}");
        }
    }
}
