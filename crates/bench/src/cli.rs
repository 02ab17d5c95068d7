//! Command line of the `wsrelay-bench` load generator: one subcommand per kind of load.
//!
//! To add a load (`broadcast`, `upgrade-rate`): add a module with an `Args` struct and an async
//! `run(args)`, and a variant to [`Command`].

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand};

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
}

/// Options of `echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Server URL, e.g. ws://127.0.0.1:9001/
    #[arg(long)]
    pub url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Payload size of each text message, in bytes.
    #[arg(long, default_value_t = 20)]
    pub payload: usize,
    /// How long to send, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub duration: humantime::Duration,
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
    /// How long to hold the connections open once all are up.
    #[arg(long, default_value = "10s")]
    pub hold: humantime::Duration,
    /// PID of the server: report its RSS per connection (VmRSS before and after).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
