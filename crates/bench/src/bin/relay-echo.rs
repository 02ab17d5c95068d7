//! `relay-echo --addr ADDR`: echo through the whole relay on path `/`.
//!
//! Each connection is relayed (`X-WS-Relay`) to a Rust target process of its own that answers
//! every `ws.message` with `ws.send`: client -> connection process -> target -> connection
//! process -> client. Used for conformance (kosoku) and as the relay side of the echo
//! benchmark against `ws-echo` (same WebSocket layer, no relay). With `--shared-target` every
//! connection goes to one target process instead, so the idle memory per connection counts the
//! relay connection alone. `--compression` turns permessage-deflate on.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use http::StatusCode;
use wsrelay_bench::server::serve_router;
use wsrelay_http::{handler_fn, response, MiddlewareRegistry, Options, Router};
use wsrelay_process::{Context, HostConfig, Node, SpawnOptions, Value};
use wsrelay_relay::{ClientEvent, ClientEventKind, NotUpgraded, Outgoing, Relay};

/// Echo server through the wsrelay relay.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    addr: SocketAddr,
    /// Largest message accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// One target process for all connections instead of one per connection.
    #[arg(long)]
    shared_target: bool,
    /// Negotiate permessage-deflate (`wsrelay.compression: permessage-deflate`).
    #[arg(long)]
    compression: bool,
    /// With --compression: `wsrelay.compression_threshold` in bytes.
    #[arg(long)]
    compression_threshold: Option<usize>,
}

/// The allocator `wsrelay` ships with (its `main.rs` says why), so that this server measures
/// the relay as the product runs it; the bare servers it is compared with keep the system
/// allocator, as their authors ship them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOST: &str = "bench:processes";
const SERVER: &str = "bench:gateway";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wsrelay_bench::sys::raise_nofile_limit()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    node.add_host(SERVER, HostConfig::default());
    let relay = Relay::new(node.clone());
    let mut registry = MiddlewareRegistry::with_builtins();
    relay.register(&mut registry);
    let mut options = Options::new();
    options.insert("wsrelay.allowed.origins".into(), "*".into());
    options.insert(
        "wsrelay.max_message_size".into(),
        args.max_message_size.to_string(),
    );
    options.insert("wsrelay.max_outbound_bytes".into(), (64 << 20).to_string());
    // A load generator is one client opening thousands of connections: no admission limits.
    options.insert("wsrelay.max_connections".into(), "unlimited".into());
    options.insert("wsrelay.upgrade_rate".into(), "off".into());
    if args.compression {
        options.insert("wsrelay.compression".into(), "permessage-deflate".into());
    }
    if let Some(threshold) = args.compression_threshold {
        options.insert(
            "wsrelay.compression_threshold".into(),
            threshold.to_string(),
        );
    }

    let shared = if args.shared_target {
        Some(node.spawn(HOST, SpawnOptions::new(), |ctx| echo(ctx, true))?)
    } else {
        None
    };
    let handler = handler_fn(move |_req| {
        let node = node.clone();
        let shared = shared.clone();
        async move {
            let spawned = match shared {
                Some(pid) => Ok(pid),
                None => node.spawn(HOST, SpawnOptions::new(), |ctx| echo(ctx, false)),
            };
            let target = match spawned {
                Ok(pid) => pid,
                Err(e) => return response::text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let mut res = response::empty(StatusCode::OK);
            let header = format!(r#"{{"target_pid":"{target}"}}"#);
            res.headers_mut().insert(
                "x-ws-relay",
                header.parse().expect("PID text is a header value"),
            );
            res
        }
    });
    let mut router = Router::new("/")?;
    router.post_middleware(registry.build("websocket_relay", &options)?);
    router.route(http::Method::GET, "/", Arc::new(handler))?;
    serve_router("relay-echo", args.addr, router, "ws", "/").await
}

/// The target: answers each client frame with the same frame; unless `shared`, ends when its
/// client leaves.
async fn echo(ctx: Context, shared: bool) {
    loop {
        let msg = ctx.recv().await;
        let Some(event) = msg.payload().downcast_ref::<ClientEvent>() else {
            // A request that never became a connection (`ws.leave` `not_upgraded`) ends a
            // target of its own, as it ends a Lua one.
            if !shared && msg.payload().downcast_ref::<NotUpgraded>().is_some() {
                return;
            }
            continue;
        };
        match &event.kind {
            ClientEventKind::Message { text, data } => {
                let out = if *text {
                    Outgoing::Frame(wsrelay_ws::Message::Text(data.clone()))
                } else {
                    Outgoing::binary(data.clone())
                };
                let _ = ctx.send(&event.client_pid, "ws.send", Value::Opaque(Arc::new(out)));
            }
            ClientEventKind::Leave { .. } if !shared => return,
            _ => {}
        }
    }
}
