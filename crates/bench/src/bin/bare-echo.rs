//! `bare-echo --lib LIB --addr ADDR`: a bare echo server of one candidate library behind
//! hyper's HTTP/1.1 upgrade, on one current-thread runtime.

use std::net::SocketAddr;

use clap::Parser;
use wsrelay_bench::bare::{handle, Library};

/// Bare echo server for one candidate WebSocket library.
#[derive(Debug, Parser)]
struct Args {
    /// Library to echo with.
    #[arg(long = "lib", value_enum)]
    library: Library,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wsrelay_bench::sys::raise_nofile_limit()?;
    let library = args.library;
    wsrelay_bench::server::block_on_current_thread(wsrelay_bench::server::serve(
        args.addr,
        move |request| handle(library, request),
    ))??;
    Ok(())
}
