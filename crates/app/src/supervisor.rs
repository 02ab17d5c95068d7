//! Supervision of `process.service` entries: start, restart on error exits
//! with the entry's [`RestartPolicy`](wsrelay_config::RestartPolicy) backoff,
//! stop on shutdown.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wsrelay_config::ProcessService;
use wsrelay_process::{Event, ExitResult, Node, Pid, SpawnOptions, Value};

/// Supervises one service until it exits normally, runs out of restarts, or
/// `stop` is cancelled. `ready` is set when the first run of the service comes to its first
/// wait (see [`SpawnOptions::notify_ready`]); it is dropped unset if that run cannot start.
///
/// The supervisor is itself a process on the service's host, so it can
/// monitor the service like any Lua process would.
pub(crate) async fn supervise(
    node: Node,
    service: ProcessService,
    stop: CancellationToken,
    ready: watch::Sender<bool>,
) {
    let mut ready = Some(ready);
    let host = service.host.to_string();
    let entry = service.process.to_string();
    let (ctx, guard) = match node.attach(&host, SpawnOptions::new()) {
        Ok(process) => process.detach(),
        Err(error) => {
            tracing::error!(service = %service.id, %error, "cannot start the supervisor");
            return;
        }
    };
    let args: Vec<Value> = service
        .input
        .iter()
        .cloned()
        .map(Value::from_json)
        .collect();
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let mut options = SpawnOptions::new().monitored_by(ctx.pid().clone());
        if let Some(ready) = ready.take() {
            options = options.notify_ready(ready);
        }
        let result = match node.spawn_entry(&entry, &host, options, args.clone()) {
            Ok(pid) => {
                tracing::info!(service = %service.id, %pid, "service started");
                // Cancel safety: `wait_exit` only reads events; dropping it loses nothing
                // we still need, since we stop supervising.
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    result = wait_exit(&ctx, &pid) => result,
                }
            }
            Err(error) => ExitResult::error(error),
        };
        if !result.is_error() {
            tracing::info!(service = %service.id, "service exited normally; not restarting");
            break;
        }
        // A service that ran longer than the longest delay is considered healthy again.
        if started.elapsed() > service.restart.max_delay {
            attempt = 0;
        }
        if service
            .restart
            .max_attempts
            .is_some_and(|max| attempt >= max)
        {
            tracing::error!(
                service = %service.id,
                error = result.error_text().unwrap_or_default(),
                attempts = attempt,
                "service failed; giving up"
            );
            break;
        }
        let delay: Duration = service.restart.delay(attempt);
        attempt += 1;
        tracing::warn!(
            service = %service.id,
            error = result.error_text().unwrap_or_default(),
            attempt,
            ?delay,
            "service failed; restarting"
        );
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    guard.exit(ExitResult::normal(()));
}

/// Waits until every service of `starting` (its id and the receiver of its `ready` signal)
/// has come to its first wait or failed to start, for `limit` at most; warns of those that
/// have not by then.
pub(crate) async fn wait_started(starting: Vec<(String, watch::Receiver<bool>)>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut late = Vec::new();
    for (id, mut started) in starting {
        // Closed (the first run ended before its body ran) counts as done: the supervisor
        // restarts it after its delay, as it would later.
        let waited = tokio::time::timeout_at(deadline, started.wait_for(|ready| *ready)).await;
        if waited.is_err() {
            late.push(id);
        }
    }
    if !late.is_empty() {
        tracing::warn!(
            services = %late.join(", "),
            waited = ?limit,
            "services still starting; opening the listeners anyway"
        );
    }
}

/// Waits for the EXIT of `pid`.
async fn wait_exit(ctx: &wsrelay_process::Context, pid: &Pid) -> ExitResult {
    loop {
        if let Event::Exit { from, result } = ctx.next_event().await {
            if &from == pid {
                return result;
            }
        }
    }
}
