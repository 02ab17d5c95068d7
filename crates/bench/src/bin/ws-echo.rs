//! `ws-echo --addr ADDR [--compression]`: echo server on path `/` built on `wsrelay-ws`
//! (not on the raw library). Used by `scripts/conformance.sh` and by the benchmarks as "our
//! layer"; `--compression` negotiates permessage-deflate with the default settings.

use std::convert::Infallible;
use std::net::SocketAddr;

use clap::Parser;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use wsrelay_bench::server::{text, Body};
use wsrelay_ws::{Compression, Config, Event};

/// Echo server built on wsrelay-ws.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: SocketAddr,
    /// Largest message accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    #[arg(long)]
    compression: bool,
    /// With --compression: messages shorter than this are sent uncompressed.
    #[arg(long, default_value_t = Compression::default().threshold)]
    compression_threshold: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wsrelay_bench::sys::raise_nofile_limit()?;
    let compression = args
        .compression
        .then(|| Compression::default().threshold(args.compression_threshold));
    let config = Config::default()
        .max_message_size(args.max_message_size)
        .compression(compression);
    wsrelay_bench::server::block_on_current_thread(wsrelay_bench::server::serve(
        args.addr,
        move |request| handle(config.clone(), request),
    ))??;
    Ok(())
}

async fn handle(
    config: Config,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() != "/" {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    }
    let (response, pending) = match wsrelay_ws::accept(&mut request, config) {
        Ok(accepted) => accepted,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    tokio::spawn(async move {
        let Ok(mut conn) = pending.into_connection().await else {
            return;
        };
        loop {
            match conn.next_event().await {
                // One write per echo, like the bare servers; the relay batches with feed/flush.
                Event::Message(message) => {
                    if conn.send(message).await.is_err() {
                        break;
                    }
                }
                Event::Pong(_) => {}
                Event::Closed(_) => break,
            }
        }
    });
    Ok(response)
}
