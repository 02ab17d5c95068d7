//! Engine settings.

use std::time::Duration;

/// Settings of a [`LuaEngine`](crate::LuaEngine).
///
/// The defaults suit a server: one worker per core, preemption every 10,000 instructions,
/// 64 MiB per process and 1 GiB per worker state, 30 s per handler call.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads, each owning one Lua state (`0`: one per available core).
    pub workers: usize,
    /// How many Lua instructions run between two checks of the running process (stop
    /// requests, memory, time slice). Smaller reacts faster and costs more.
    pub hook_interval: u32,
    /// How long a process may run before it is preempted (yields to the other processes of its
    /// worker) at the next check.
    pub time_slice: Duration,
    /// How long a process may run without being able to yield (inside a metamethod or a
    /// C function such as `table.sort`'s comparator) before it fails with
    /// `"cpu budget exceeded"`. `None`: no limit.
    pub cpu_budget: Option<Duration>,
    /// The most memory one process may add to its worker's state in one slice (live bytes
    /// after a full collection); above it the process fails with `"out of memory"`.
    pub process_memory_limit: usize,
    /// The hard limit of each worker's Lua state (all of its processes together); an
    /// allocation above it fails with a Lua memory error in the process that makes it.
    pub worker_memory_limit: usize,
    /// How long an HTTP handler or function call may take.
    pub call_timeout: Duration,
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
        }
    }
}

impl EngineConfig {
    /// The number of workers to start (resolves `0`).
    pub(crate) fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
