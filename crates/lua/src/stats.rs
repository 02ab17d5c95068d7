//! Counters of Lua failures, read by the metrics exporter ([`LuaEngine::stats`]) with the
//! workers' preemptions.
//!
//! [`LuaEngine::stats`]: crate::LuaEngine::stats

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::LuaError;

/// The engine's failure counters (shared by every entry of one engine).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    process_errors: AtomicU64,
    function_errors: AtomicU64,
    function_timeouts: AtomicU64,
}

impl Counters {
    /// A Lua process failed: a Lua error, a bad return, a CPU or memory limit. Exits
    /// caused from outside (terminate, shutdown, a failed link) are not counted.
    pub(crate) fn process_error(&self) {
        self.process_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of a function call.
    pub(crate) fn call<T>(&self, result: &Result<T, LuaError>) {
        match result {
            Ok(_) => {}
            Err(LuaError::Timeout { .. }) => {
                self.function_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.function_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> LuaStats {
        LuaStats {
            process_errors: self.process_errors.load(Ordering::Relaxed),
            function_errors: self.function_errors.load(Ordering::Relaxed),
            function_timeouts: self.function_timeouts.load(Ordering::Relaxed),
            preemptions: 0,
            heap_bytes: 0,
        }
    }
}

/// A snapshot of the engine's failure and preemption counters, cumulative since it started,
/// and of its Lua heaps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LuaStats {
    /// `process.lua` processes that ended with a Lua error (or hit a CPU/memory limit).
    pub process_errors: u64,
    /// `function.lua` calls (HTTP handlers included) that failed with a Lua error.
    pub function_errors: u64,
    /// `function.lua` calls stopped by `call_timeout`.
    pub function_timeouts: u64,
    /// Resumes the slice timer ended: a process or call ran a whole `time_slice` without
    /// yielding and was made to wait its turn behind the others of its worker. A steady rate
    /// means Lua code that computes for long stretches (it still runs, sliced).
    pub preemptions: u64,
    /// Bytes the workers' Lua states have in use (their heaps, as their allocators count
    /// them: every live process's coroutine, tables and strings, the loaded code, and
    /// garbage not collected yet), as of each worker's last resume or idle collection. Not
    /// cumulative. The limit per worker is `worker_memory_limit`.
    pub heap_bytes: u64,
}
