//! `wsrelay-bench`: WebSocket load generator. See `crates/bench/README.md`.

use clap::Parser as _;
use wsrelay_bench::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let limit = wsrelay_bench::sys::raise_nofile_limit()?;
    let wanted = match &cli.command {
        Command::Idle(args) => Some(args.connections),
        Command::Broadcast(args) => Some(args.clients + 1),
        _ => None,
    };
    if let Some(wanted) = wanted {
        if wanted as u64 + 64 > limit {
            anyhow::bail!("{wanted} connections exceed the open-file limit {limit}");
        }
    }
    wsrelay_bench::server::block_on_current_thread(async move {
        match cli.command {
            Command::Echo(args) => wsrelay_bench::echo::run(args).await,
            Command::Idle(args) => wsrelay_bench::idle::run(args).await,
            Command::Broadcast(args) => wsrelay_bench::broadcast::run(args).await,
            Command::Upgrade(args) => wsrelay_bench::upgrade::run(args).await,
        }
    })?
}
