//! `wsrelay-bench`: WebSocket load generator. See `crates/bench/README.md`.

use clap::Parser as _;
use wsrelay_bench::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let limit = wsrelay_bench::sys::raise_nofile_limit()?;
    if let Command::Idle(args) = &cli.command {
        if args.connections as u64 + 64 > limit {
            anyhow::bail!(
                "--connections {} exceeds the open-file limit {limit}",
                args.connections
            );
        }
    }
    wsrelay_bench::server::block_on_current_thread(async move {
        match cli.command {
            Command::Echo(args) => wsrelay_bench::echo::run(args).await,
            Command::Idle(args) => wsrelay_bench::idle::run(args).await,
        }
    })?
}
