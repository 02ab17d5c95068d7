//! Loads an app directory and prints every config error, one per line.
//!
//! `cargo run -p wsrelay-config --example check -- DIR`

use std::path::PathBuf;

use wsrelay_config::{AppConfig, LoadOptions};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let opts = LoadOptions::new().with_middleware(["websocket_relay", "cors"]);
    match AppConfig::load(&dir, &opts) {
        Ok(app) => println!("ok: {app:#?}"),
        Err(errs) => {
            eprintln!("{errs}");
            std::process::exit(2);
        }
    }
}
