//! The `wsrelay` command line: parses arguments and calls into `wsrelay-app`.
//!
//! Exit status (docs/spec.md §12): 0 success, 1 runtime failure, 2 configuration error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};
use wsrelay_app::watch::Watcher;
use wsrelay_app::{demo, load_options, App, AppError, AppOptions};
use wsrelay_config::AppConfig;

/// The allocator: a relayed message, an upgrade and a handler call each allocate and free
/// dozens of small blocks across Rust and Lua, and mimalloc's per-thread free lists serve them
/// at a fraction of glibc's cost (measured in docs/BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long shutdown waits for connections and in-flight requests, by default.
const DRAIN_TIMEOUT: &str = "10s";

const EXAMPLES: &str = "\
Examples:
  wsrelay run                          run the built-in chat demo on http://127.0.0.1:8080/
  wsrelay run --listen 0.0.0.0:9000    the demo, on another address
  wsrelay run examples/chat            run the app in a directory
  wsrelay run --watch examples/chat    reload Lua and YAML edits without dropping
                                       connections (a broken edit is logged and the
                                       running version keeps serving)
  wsrelay run --metrics 127.0.0.1:9090 also serve /metrics and /healthz there
  wsrelay check --strict examples/seed validate an app without starting it
                                       (--strict: unknown entry fields are errors)
  kill -HUP <pid>                      reload TLS certificates now (they are also
                                       reloaded when their files change)
  wsrelay completions bash > /etc/bash_completion.d/wsrelay
                                       shell completions (bash, zsh, fish, elvish, powershell)

Logging: RUST_LOG=debug wsrelay run   (default: info; --json: one JSON object per line)";

/// A WebSocket relay runtime: every connection is a process.
#[derive(Debug, Parser)]
#[command(name = "wsrelay", version, about, after_help = EXAMPLES)]
struct Cli {
    /// Log as JSON, one object per line (for log collectors); default: human-readable text.
    #[arg(long, global = true)]
    json: bool,
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
        /// Unknown entry fields are errors, not warnings (an older build would ignore
        /// `tls:` and serve plain HTTP; this refuses to start instead).
        #[arg(long)]
        strict: bool,
        /// Reload the app when a Lua or YAML file under DIR changes, without dropping
        /// connections: new handler calls and new processes run the new code, running
        /// processes keep theirs. See docs/OPERATIONS.md, "Hot reload".
        #[arg(long, requires = "dir")]
        watch: bool,
    },
    /// Validate an app directory without starting it.
    Check {
        /// The app directory.
        dir: PathBuf,
        /// Unknown entry fields are errors, not warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Print the version and how this binary was built (commit, target, profile).
    Version,
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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
    init_logging(cli.json);
    if matches!(cli.command, Command::Run { .. }) {
        raise_open_file_limit();
    }
    let result = match cli.command {
        Command::Check { dir, strict } => check(&dir, strict),
        Command::Version => {
            print!("{}", version_text());
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "wsrelay",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Run {
            dir,
            listen,
            metrics,
            drain_timeout,
            strict,
            watch,
        } => {
            // The control runtime (signals, start-up, the ops listener) needs no more than one
            // thread: connections and processes run on the app's shards, one per core.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the Tokio runtime")
                .map_err(Failure::from)
                .and_then(|rt| {
                    let options = RunOptions {
                        listen,
                        metrics,
                        drain_timeout,
                        strict,
                        watch,
                    };
                    rt.block_on(run(dir, options))
                })
        }
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

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // Fields flattened next to the message, so collectors index them without a path.
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
}

/// `wsrelay version`: what `build.rs` recorded (the commit is `unknown` when the source was
/// built outside a git checkout).
fn version_text() -> String {
    format!(
        "wsrelay {}\ncommit: {}\ntarget: {}\nprofile: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("WSRELAY_GIT_COMMIT"),
        env!("WSRELAY_TARGET"),
        env!("WSRELAY_PROFILE"),
    )
}

/// An address a browser can open: an unspecified one (`0.0.0.0`, `[::]`) serves on every
/// interface, loopback among them.
fn clickable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if !ip.is_unspecified() => addr,
        std::net::IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        std::net::IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
    }
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

/// The validation path `check`, `run` and every `--watch` reload share.
fn load(dir: &Path, strict: bool) -> Result<AppConfig, Failure> {
    Ok(wsrelay_app::validate(dir, strict)?)
}

fn check(dir: &Path, strict: bool) -> Result<(), Failure> {
    let config = load(dir, strict)?;
    let entries = config.services.len()
        + config.routers.len()
        + config.endpoints.len()
        + config.statics.len()
        + config.functions.len()
        + config.processes.len()
        + config.hosts.len()
        + config.process_services.len()
        + config.pg_scopes.len()
        + config.memory_stores.len()
        + config.env_storages.len()
        + config.env_variables.len()
        + usize::from(config.cluster.is_some())
        + usize::from(config.ops.is_some());
    println!("ok: {entries} entries");
    Ok(())
}

fn parse_drain(text: &str) -> Result<Duration, String> {
    wsrelay_config::parse_positive_duration(text).map_err(|e| e.to_string())
}

/// The options of `run` besides the directory.
struct RunOptions {
    listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    drain_timeout: Duration,
    strict: bool,
    watch: bool,
}

async fn run(dir: Option<PathBuf>, options: RunOptions) -> Result<(), Failure> {
    // The demo's files live in a temporary directory for as long as `_demo` does.
    let (config, _demo) = match &dir {
        Some(dir) => (load(dir, options.strict)?, None),
        None => {
            let demo = demo::load(&load_options().with_strict(true))?;
            (demo.config.clone(), Some(demo))
        }
    };
    let app_options = AppOptions::default()
        .with_listen(options.listen)
        .with_ops_listen(options.metrics);
    // Before the "serving" lines: a supervisor may signal as soon as it reads them.
    let mut signals = Signals::install()?;
    let app = App::start(config, app_options).await?;
    for (server, addr) in app.addrs() {
        let scheme = if app.is_tls(&server) { "https" } else { "http" };
        println!("wsrelay: {server} serving {scheme}://{addr}/");
        if addr.ip().is_unspecified() {
            let local = clickable(addr);
            println!("wsrelay: {server} (every interface) open {scheme}://{local}/");
        }
    }
    if let Some(addr) = app.ops_addr() {
        println!("wsrelay: ops serving http://{addr}/metrics");
        if app.admin_enabled() {
            let local = clickable(addr);
            println!("wsrelay: dashboard http://{local}/dashboard (admin token required)");
        }
    }
    let mut watcher = match (&dir, options.watch) {
        (Some(dir), true) => {
            let watcher = Watcher::start(dir).map_err(anyhow::Error::from)?;
            tracing::info!(dir = %dir.display(), "watching for Lua and YAML changes");
            Some(watcher)
        }
        _ => None,
    };
    loop {
        match wake(&mut signals, watcher.as_mut()).await {
            Wake::Stop => break,
            Wake::Reload => {
                tracing::info!("SIGHUP: reloading TLS certificates");
                // A failure is logged by the gateway; the certificates in use stay.
                let _ = app.reload_tls();
            }
            Wake::Changed => {
                if let Some(dir) = &dir {
                    // Logged and counted by the app; a failure keeps the running version.
                    let _ = app.reload_dir(dir, options.strict);
                }
            }
        }
    }
    tracing::info!("signal received; shutting down");
    app.shutdown(options.drain_timeout).await;
    Ok(())
}

/// Listeners for SIGINT, SIGTERM and SIGHUP. Once installed, these signals no longer
/// kill the process (their default action) but end [`Signals::wait`].
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

/// What a signal (or the watched directory) asks for.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP: reload the TLS certificates.
    Reload,
    /// App files changed (`--watch`): reload the app.
    Changed,
}

/// Waits for a signal or, when watching, a change of the app's files.
async fn wake(signals: &mut Signals, watcher: Option<&mut Watcher>) -> Wake {
    let Some(watcher) = watcher else {
        return signals.wait().await;
    };
    // Cancel safety: both are cancel safe (a change burst in progress is kept).
    tokio::select! {
        wake = signals.wait() => wake,
        changed = watcher.changed() => if changed { Wake::Changed } else { signals.wait().await },
    }
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Waits for the next signal.
    async fn wait(&mut self) -> Wake {
        tokio::select! {
            _ = self.interrupt.recv() => Wake::Stop,
            _ = self.terminate.recv() => Wake::Stop,
            _ = self.hangup.recv() => Wake::Reload,
        }
    }
}
