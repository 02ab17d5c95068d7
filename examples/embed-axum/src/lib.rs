//! wsrelay embedded in an axum app (the walk-through is docs/embedding.md).
//!
//! One listener serves:
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | a plain axum handler: `ok` |
//! | `GET /metrics` | the host's Prometheus registry, with the runtime's series in it |
//! | `GET /ws` | a Rust handler spawns a Rust echo process and relays the connection to it |
//! | `GET /lua/` | the Lua app's `function.lua` handler spawns a Lua echo process and relays to it |
//!
//! Both WebSocket routes are behind the same relay layer, so the origin check (same-origin
//! only), the admission limits and the handshake checks are those of `wsrelay run`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use wsrelay::{
    CancellationToken, ClientEvent, ClientEventKind, Context, Outgoing, RelayConfig, RelayTo,
    Response, Runtime, RuntimeBuilder, Value,
};

/// The process host of the Rust echo processes.
pub const ECHO_HOST: &str = "embed:rust";

/// The Lua app of this example: the entries of `app.yaml` (next to this crate's manifest)
/// with the Lua files of `examples/echo`, compiled in, so that both apps run one handler and
/// one echo process.
pub fn app() -> RuntimeBuilder {
    Runtime::builder()
        .lua_file("app.yaml", include_str!("../app.yaml"))
        .lua_file("connect.lua", include_str!("../../echo/connect.lua"))
        .lua_file("echo.lua", include_str!("../../echo/echo.lua"))
}

/// Starts the runtime with the Lua app `app` ([`app`], or another one with an
/// `echo:connect` handler), serves the routes on `listener` until
/// `token` is cancelled, then waits for the runtime's graceful shutdown (WebSocket clients
/// get close `1001`).
///
/// # Errors
///
/// The runtime did not start (a bad Lua app), or the listener failed.
pub async fn serve(
    listener: TcpListener,
    app: RuntimeBuilder,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let runtime = app.shutdown_token(token.clone()).start().await?;
    let router = router(&runtime, listener.local_addr()?)?;
    axum::serve(
        listener,
        // The client's address, for the relay's per-IP limits.
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(token.cancelled_owned())
    .await?;
    runtime.stopped().await;
    Ok(())
}

/// The routes, for a server listening on `local_addr`.
///
/// # Errors
///
/// A bad relay option, or no `echo:connect` entry in the Lua app.
pub fn router(runtime: &Runtime, local_addr: SocketAddr) -> anyhow::Result<Router> {
    // One relay route (one connection pool) shared by both WebSocket routes; the default
    // options: same-origin only.
    let relay = runtime
        .relay(RelayConfig::new())?
        .listener(local_addr)
        .client_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));

    let mut registry = Registry::default();
    runtime.register_metrics(&mut registry);
    let registry = Arc::new(registry);

    let echo_runtime = runtime.clone();
    let lua = tower_layer_of(&relay, runtime.lua_handler("echo:connect")?);
    Ok(Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(move || metrics(registry.clone())))
        .route(
            "/ws",
            get(move || connect(echo_runtime.clone())).route_layer(relay),
        )
        .route_service("/lua/", lua))
}

/// Wraps `service` in `layer` (what `tower::ServiceBuilder` would do, without the crate).
fn tower_layer_of<S>(layer: &wsrelay::RelayLayer, service: S) -> wsrelay::RelayService<S> {
    tower_layer::Layer::layer(layer, service)
}

/// The Rust handler of `/ws`: a target process of its own per connection.
async fn connect(runtime: Runtime) -> Response {
    match runtime.spawn(ECHO_HOST, echo) {
        Ok(pid) => RelayTo::process(&pid).into_response(),
        Err(error) => wsrelay::response::text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

/// The Rust echo target: sends each client message back; ends with its client.
async fn echo(ctx: Context) {
    loop {
        let msg = ctx.recv().await;
        let Some(event) = msg.payload().downcast_ref::<ClientEvent>() else {
            // `ws.leave` `not_upgraded` (a NotUpgraded): no connection will come.
            return;
        };
        match &event.kind {
            ClientEventKind::Message { text: true, data } => {
                let text = String::from_utf8_lossy(data).into_owned();
                send(&ctx, event, Outgoing::text(text));
            }
            ClientEventKind::Message { text: false, data } => {
                send(&ctx, event, Outgoing::binary(data.clone()));
            }
            ClientEventKind::Leave { .. } => return,
            _ => {}
        }
    }
}

fn send(ctx: &Context, event: &ClientEvent, out: Outgoing) {
    // A connection that is gone needs no answer.
    let _ = ctx.send(&event.client_pid, "ws.send", Value::Opaque(Arc::new(out)));
}

/// `GET /metrics`: the host's registry in the OpenMetrics text format.
async fn metrics(registry: Arc<Registry>) -> (StatusCode, String) {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (StatusCode::OK, body),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics\n".to_owned(),
        ),
    }
}
