//! Lua for wsrelay: `process.lua` processes and `function.lua` handlers, with the Wippy Lua API
//! (`process`, `channel`, `errors`, `time`, `json`, `http`, `pg`, `base64`, `hash`, `uuid`,
//! `env`, `crypto`, `logger`, `store`, `metrics`, `http_client`; the reference is `docs/lua/`).
//!
//! # Tour
//!
//! - [`LuaEngine::new`] starts the worker threads for a [`Node`](wsrelay_process::Node).
//! - [`LuaEngine::register_process`] registers a `process.lua` entry as a process factory of
//!   the node: `node.spawn_entry(id, host, ...)` and Lua's `process.spawn(id, host, ...)` start
//!   it.
//! - [`LuaEngine::function`] prepares a `function.lua` entry; [`LuaFunction::call_http`] runs
//!   it as an HTTP handler with plain [`HttpRequest`] / [`HttpResponse`] structs (the gateway
//!   adapts them; this crate knows no HTTP library).
//! - [`LuaEngine::check_source`] is the syntax check the config loader uses.
//!
//! # Scheduler model
//!
//! Lua 5.4, a few states, many coroutines. There is one worker thread per core (by default),
//! each owning one Lua state (mlua states are `!Send`), a current-thread Tokio runtime and a
//! `LocalSet`. Every Lua process is a coroutine in one worker's state, with its own `_ENV`
//! table over read-only shared libraries ([`sandbox`](crate) rules: see the README), driven by a
//! local task. A process is created by the node ([`Node::attach`](wsrelay_process::Node::attach)
//! then `detach`), so it is routable and monitorable before any Lua runs; the `(Context,
//! ExitGuard)` pair is sent to a worker chosen round-robin, and the guard reports the exit
//! exactly once, whatever ends the coroutine.
//!
//! Blocking calls (`inbox:receive()`, `events:receive()`, `ch:receive()`, `channel.select`,
//! `time.sleep`) are async Rust functions: a blocked process is a pending task holding no
//! thread and about 5 KiB (see the README for measurements).
//!
//! **Preemption.** A count hook runs every `hook_interval` instructions once a resume has run
//! `time_slice` (a timer on the worker's CPU clock signals it, whose signal handler arms the hook:
//! short resumes run without one, see `raw/preempt.rs`). Then it yields the coroutine (Lua 5.4 allows yielding from a count hook; LuaJIT does
//! not, which decided the version), so an infinite loop cannot starve the other processes of
//! its worker — also inside coroutines of the Lua code, whose yields the process's
//! `coroutine` library passes up (`preempt`). Where a yield is impossible (inside a
//! metamethod or a C function calling back into Lua) the process is bounded instead: after
//! `cpu_budget` it fails with `"cpu budget exceeded"`. The same hook stops a running process
//! that was terminated or whose link failed (when its resume runs past its time slice; a
//! shorter one is stopped when it ends); a blocked one is stopped by its driver at once.
//!
//! **Values.** What Lua hands to Rust (payloads, JSON, responses) is converted within
//! `max_value_size` (`convert`); `math.random` has a generator per actor (`stdlib`).
//!
//! **Memory.** Each worker state has a hard limit (`worker_memory_limit`). While a process
//! runs (one resume, between two yields) the allocator's limit is lowered to the state's size
//! at the start of the slice plus `process_memory_limit`: an allocation above it — in Lua
//! code or inside a C function such as `string.rep` — fails at once with Lua's
//! `"not enough memory"` after a full collection, so garbage is never blamed and no C
//! function fills a huge buffer first. The size at the start of the slice counts garbage not
//! yet collected; that full collection frees it, so within one slice a process may grow by
//! `process_memory_limit` plus the garbage there was. Memory a process accumulates slowly over
//! many slices is bounded only by the worker limit: a shared state cannot attribute it
//! exactly.
//!
//! **C functions.** The hook never fires inside a C function, so every library function whose
//! work is not bounded by its arguments is replaced or guarded: the pattern functions by a
//! Rust matcher with a step budget ([`stdlib`](crate)), the table functions, `string.rep`
//! and `setmetatable` by guards (the `bounds` module lists every function and its bound).
//!
//! **Dispatch.** New processes and calls go to the workers round-robin, skipping a worker
//! whose current resume has run longer than four time slices (stuck in something that cannot
//! yield), so they do not queue behind it.
//!
//! **Errors.** A Lua error ends the process with an error exit whose text is
//! `entry: message` followed by the Lua traceback. No lock is held across an await, and no
//! Rust panic is reachable from Lua code.

mod actor;
mod bounds;
mod budget;
mod config;
mod convert;
mod dispatch;
mod duration;
mod engine;
mod error;
mod http_types;
mod mailbox;
mod modules;
mod preempt;
mod raw;
mod resume;
mod sandbox;
mod signal;
mod stats;
mod stdlib;
mod worker;

pub use config::EngineConfig;
pub use engine::{EntrySpec, FunctionSpec, LuaEngine, LuaFunction, ProcessSpec};
pub use error::LuaError;
pub use http_types::{HttpRequest, HttpResponse};
pub use modules::env::{EnvError, EnvStorageSpec, EnvVariableSpec};
pub use modules::http_client::{
    ChunkFuture, HttpClient, HttpClientPolicy, OutboundError, OutboundErrorKind, OutboundFuture,
    OutboundRequest, OutboundResponse, OutboundStream, MAX_IN_FLIGHT as MAX_HTTP_IN_FLIGHT,
};
pub use modules::metrics::{
    MetricFamily, MetricKind, MetricSeries, SeriesValue, HISTOGRAM_BUCKETS as METRIC_BUCKETS,
    MAX_LABELS as MAX_METRIC_LABELS, MAX_LABEL_VALUE as MAX_METRIC_LABEL_VALUE, MAX_METRICS,
    MAX_NAME as MAX_METRIC_NAME, MAX_SERIES as MAX_METRIC_SERIES, MAX_SERIES_PER_METRIC,
};
pub use modules::store::{StoreError, DEFAULT_MAX_SIZE as DEFAULT_STORE_MAX_SIZE};
pub use stats::LuaStats;
