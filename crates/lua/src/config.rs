//! Engine settings.

use std::time::Duration;

/// Settings of a [`LuaEngine`](crate::LuaEngine).
///
/// The defaults suit a server: one worker per core, preemption every 10,000 instructions,
/// 64 MiB per process and 1 GiB per worker state, 30 s per handler call, 10M pattern steps
/// per call, 16 MiB per value handed to Rust.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads, each owning one Lua state (`0`: one per available core).
    pub workers: usize,
    /// How many Lua instructions run between two checks of the running process (stop
    /// requests, time slice, CPU budget) once its resume has run `time_slice`; a shorter
    /// resume is not checked (the hook is armed by the worker's slice timer). Smaller reacts
    /// faster and costs more.
    pub hook_interval: u32,
    /// How long a process may run before it is preempted (yields to the other processes of its
    /// worker) at the next check.
    pub time_slice: Duration,
    /// How long a process may run without being able to yield (inside a metamethod or a
    /// C function such as `table.sort`'s comparator) before it fails with
    /// `"cpu budget exceeded"`. `None`: no limit.
    pub cpu_budget: Option<Duration>,
    /// The most memory one process may add to its worker's state in one slice (one resume,
    /// between two yields). It is the allocator's limit while the process runs: an
    /// allocation above it (after a full collection) raises Lua's `"not enough memory"` in
    /// that process, also inside C functions such as `string.rep`. Garbage the state held
    /// when the slice began is freed by that collection and adds to the room (see the crate
    /// docs, "Memory"). It also caps the string a `string.gsub` may build.
    pub process_memory_limit: usize,
    /// The hard limit of each worker's Lua state (all of its processes together); an
    /// allocation above it fails with a Lua memory error in the process that makes it.
    pub worker_memory_limit: usize,
    /// How long an HTTP handler or function call may take.
    pub call_timeout: Duration,
    /// How many matcher steps one call of `string.find`, `match`, `gsub` (or one step of a
    /// `gmatch` iterator) may take; past it the call raises `"pattern too complex"`. A step
    /// is one attempt at a pattern item or one character of a repetition: a scan of a
    /// subject costs a few steps per byte, a backtracking pattern far more.
    pub pattern_step_limit: u64,
    /// The largest value Lua code can hand to Rust in one go: a message payload (all of a
    /// `process.send`'s payloads together), spawn arguments, a cancel reason, a return value,
    /// the text of `json.encode`/`res:write_json`, and an HTTP response (headers and body
    /// together). Each value counts 16 bytes plus the bytes of its text (a shared table each
    /// time it appears); past the limit the call returns `nil, err` (or fails, for return
    /// values). Converted values live outside the Lua memory limits, so this is what bounds
    /// them.
    pub max_value_size: usize,
    /// The most values the channels of one worker may hold together (buffered, or held by
    /// senders waiting for a receiver); past it `ch:send` raises and a `case_send` waits.
    /// The queues are Rust memory outside the Lua limits.
    pub max_channel_values: usize,
    /// The OS environment variables the `env` module may read: exact names, or prefixes
    /// ending in `*`. Read once when the engine starts. The default, `WSRELAY_APP_*`, keeps
    /// what the operator gave wsrelay itself (credentials, `RUST_LOG`) away from Lua code;
    /// see `docs/lua/env.md`.
    pub env_readable: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            workers: 0,
            hook_interval: 10_000,
            time_slice: Duration::from_millis(2),
            cpu_budget: Some(Duration::from_secs(1)),
            process_memory_limit: 64 << 20,
            worker_memory_limit: 1 << 30,
            call_timeout: Duration::from_secs(30),
            pattern_step_limit: 10_000_000,
            max_value_size: 16 << 20,
            max_channel_values: 1 << 20,
            env_readable: vec!["WSRELAY_APP_*".to_owned()],
        }
    }
}

impl EngineConfig {
    /// How long one resume may run before the dispatcher treats its worker as stuck and
    /// sends new jobs elsewhere: four time slices (a resume that can yield ends within about
    /// one), at least a millisecond.
    pub(crate) fn stuck_after(&self) -> std::time::Duration {
        (self.time_slice * 4).max(std::time::Duration::from_millis(1))
    }

    /// The number of workers (shards) to start: `workers`, or one per core this process may
    /// run on when it is `0`.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
