//! The runtime a test drives its nodes or clients from (shared with the root package's
//! cluster tests, like `nats.rs`).

/// A two-thread runtime: blocking calls (`block_in_place`) need a multi-thread one.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
