//! `embed-axum --listen ADDR [--app DIR]`: wsrelay inside an axum app (see the library docs).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tokio::net::TcpListener;
use wsrelay::{CancellationToken, Runtime};

/// wsrelay embedded in an axum app: /health, /metrics, /ws (Rust echo), /lua/ (Lua echo).
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A Lua app directory with an `echo:connect` handler (default: the example's own app,
    /// compiled in).
    #[arg(long)]
    app: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The host installs the subscriber; the library only emits.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let listener = TcpListener::bind(args.listen).await?;
    println!("embed-axum: serving http://{}/", listener.local_addr()?);
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        // A failure to listen for Ctrl-C leaves the server running; stop it with a kill.
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    embed_axum::serve(
        listener,
        args.app
            .map_or_else(embed_axum::app, |dir| Runtime::builder().lua_dir(dir)),
        token,
    )
    .await
}
