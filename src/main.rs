//! The `wsrelay` command line: parses arguments and calls into `wsrelay-app`.
//!
//! Exit status (SPEC §12): 0 success, 1 runtime failure, 2 configuration error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wsrelay_app::{demo, load_options, App, AppError, AppOptions};
use wsrelay_config::AppConfig;

/// How long shutdown waits for connections and in-flight requests, by default.
const DRAIN_TIMEOUT: &str = "10s";

const EXAMPLES: &str = "\
Examples:
  wsrelay run                          run the built-in chat demo on http://127.0.0.1:8080/
  wsrelay run --listen 0.0.0.0:9000    the demo, on another address
  wsrelay run examples/chat            run the app in a directory
  wsrelay run --metrics 127.0.0.1:9090 also serve /metrics and /healthz there
  wsrelay check examples/seed          validate an app without starting it

Logging: RUST_LOG=debug wsrelay run   (default: info)";

/// A WebSocket relay runtime: every connection is a process.
#[derive(Debug, Parser)]
#[command(name = "wsrelay", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an app (without DIR: the built-in demo chat on 127.0.0.1:8080).
    Run {
        /// The app directory (YAML entries and Lua files).
        dir: Option<PathBuf>,
        /// Listen on ADDR instead of the first http.service's addr.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Serve /metrics and /healthz on ADDR (a listener of its own; replaces the
        /// wsrelay.ops entry's addr). See docs/OPERATIONS.md.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// How long shutdown waits for connections to drain (e.g. 500ms, 10s, 1m).
        #[arg(long, value_name = "DURATION", default_value = DRAIN_TIMEOUT, value_parser = parse_drain)]
        drain_timeout: Duration,
    },
    /// Validate an app directory without starting it.
    Check {
        /// The app directory.
        dir: PathBuf,
    },
}

/// A failure and the exit status it maps to.
enum Failure {
    Config(String),
    Runtime(anyhow::Error),
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Failure {
        if error.is_config() {
            Failure::Config(error.to_string())
        } else {
            Failure::Runtime(error.into())
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Runtime(error)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if matches!(cli.command, Command::Run { .. }) {
        raise_open_file_limit();
    }
    let result = match cli.command {
        Command::Check { dir } => check(&dir),
        Command::Run {
            dir,
            listen,
            metrics,
            drain_timeout,
        } => tokio::runtime::Runtime::new()
            .context("cannot start the Tokio runtime")
            .map_err(Failure::from)
            .and_then(|rt| rt.block_on(run(dir, listen, metrics, drain_timeout))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(errors)) => {
            for line in errors.lines() {
                eprintln!("{line}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("wsrelay: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Raises the soft open-file limit to the hard one: every WebSocket is a file descriptor, and
/// the usual soft default (1024) would cap a server at about a thousand connections.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit; connections may be refused early");
        }
    }
}

fn load(dir: &Path) -> Result<AppConfig, Failure> {
    let config = AppConfig::load(dir, &load_options()).map_err(AppError::from)?;
    wsrelay_app::check(&config)?;
    Ok(config)
}

fn check(dir: &Path) -> Result<(), Failure> {
    let config = load(dir)?;
    let entries = config.services.len()
        + config.routers.len()
        + config.endpoints.len()
        + config.statics.len()
        + config.functions.len()
        + config.processes.len()
        + config.hosts.len()
        + config.process_services.len()
        + usize::from(config.cluster.is_some())
        + usize::from(config.ops.is_some());
    println!("ok: {entries} entries");
    Ok(())
}

fn parse_drain(text: &str) -> Result<Duration, String> {
    wsrelay_config::parse_positive_duration(text).map_err(|e| e.to_string())
}

async fn run(
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    drain_timeout: Duration,
) -> Result<(), Failure> {
    // The demo's files live in a temporary directory for as long as `_demo` does.
    let (config, _demo) = match dir {
        Some(dir) => (load(&dir)?, None),
        None => {
            let demo = demo::load(&load_options())?;
            (demo.config.clone(), Some(demo))
        }
    };
    let options = AppOptions::default()
        .with_listen(listen)
        .with_ops_listen(metrics);
    let app = App::start(config, options).await?;
    for (server, addr) in app.addrs() {
        println!("wsrelay: {server} serving http://{addr}/");
    }
    if let Some(addr) = app.ops_addr() {
        println!("wsrelay: ops serving http://{addr}/metrics");
    }
    wait_for_signal().await?;
    tracing::info!("signal received; shutting down");
    app.shutdown(drain_timeout).await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}
