//! `handler-bench --addr ADDR`: an HTTP server whose `GET /rust` answers `200 hello` from a
//! Rust handler, for `wrk`: the baseline of the Lua handler benchmark, which runs the real
//! thing, `wsrelay run examples/hello` (a `function.lua` entry), beside it (scripts/bench.sh).
//!
//! Runs like `wsrelay run`: a multi-thread Tokio runtime, so pinned to one core (`taskset -c
//! 0`) it is one runtime thread.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use http::{HeaderValue, StatusCode};
use wsrelay_bench::server::serve_router;
use wsrelay_http::{handler_fn, response, Router};

/// HTTP server with a Rust hello endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9006")]
    addr: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wsrelay_bench::sys::raise_nofile_limit()?;
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let rust = handler_fn(|_req| async {
        let mut res = response::text(StatusCode::OK, "hello");
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        res
    });
    let mut router = Router::new("/")?;
    router.route(http::Method::GET, "/rust", Arc::new(rust))?;
    serve_router("handler-bench", args.addr, router, "http", "/rust").await
}
