//! The instruction hook armed only when a resume runs long (see [`crate::preempt`]).
//!
//! In Lua 5.4 any count hook makes the VM trap *every* instruction (`luaG_traceexec`), whatever
//! the count: a hook kept on all the time cost ~950 instructions per relayed message. So
//! threads run without a hook. Each worker thread has a timer on its own CPU clock
//! ([`SliceTimer`]) that signals it after every time slice of CPU it uses; the signal handler
//! here sets the hook on the Lua thread running there if the same resume has been running
//! since the previous signal, that is for a whole time slice of CPU at least. The hook then
//! works as it always did (it preempts, stops, fails) and removes itself from a thread it
//! finds with nothing to do.
//!
//! Why a CPU-clock timer: it costs nothing on an idle worker (its clock stands still), needs
//! no watchdog thread, and under load it interrupts only the worker itself, a few hundred
//! times a second. A first version had a watchdog thread look at every worker once a time
//! slice: its wake-ups preempted the busy worker ~500 times a second and cost 3–4 % of the
//! echo throughput with the server on one core (docs/BENCHMARKS.md, "Round 3").
//!
//! What this needs to be sound:
//!
//! - **Which thread runs.** Lua keeps no "running thread" a signal handler could read, so this
//!   module keeps it ([`RUNNING`], per OS thread): the actor's coroutine around each resume
//!   ([`Running`]), and a coroutine of the Lua code while `coroutine.resume` or
//!   `coroutine.close` runs it ([`coroutine_functions`]). It only ever points at a thread
//!   that cannot be collected while it is set: the actor's coroutine is held by its driver,
//!   a resumed or closed coroutine is an argument of the call running it, and every setter
//!   restores the previous value before returning, on paths that raise no Lua error.
//! - **`lua_sethook` from a signal handler.** Lua designs `lua_sethook` to be callable from a
//!   signal handler (its own standalone interpreter stops a script on SIGINT that way): it
//!   only stores the hook's fields (a byte mask, counts, a pointer, each written whole) and
//!   marks the frames of the thread's call list for tracing, a list whose links are written
//!   before a frame becomes current. The handler runs on the worker thread itself (the
//!   timer's signal is directed at that thread), so the thread it hooks is not running
//!   elsewhere meanwhile; calling it from another thread would not be sound (the list may
//!   change under it), hence the signal.
//! - **The rest of the process.** The signal is `SIGURG` (ignored by default, and used by
//!   nothing here: sockets raise it only for an owner set with `F_SETOWN`), installed with
//!   `SA_RESTART`, so interrupted blocking calls restart; `epoll_wait`, which never restarts,
//!   reports `EINTR`, which mio retries. The handler keeps `errno`. Only threads that made a
//!   [`SliceTimer`] get it, and only while they use CPU.

use std::ffi::c_int;
use std::sync::atomic::{compiler_fence, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua, Table};

/// The signal that arms the hook.
const SIGNAL: c_int = libc::SIGURG;

/// mlua's hook function (the one that calls the closure of `Lua::set_global_hook`), taken from
/// the first state it was installed on; the same function for every state.
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// `coroutine.resume` of the standard library, which [`resume`] leaves a bad argument to.
static RESUME: AtomicUsize = AtomicUsize::new(0);

/// `coroutine.close` of the standard library, which [`close`] calls.
static CLOSE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The Lua thread running on this OS thread (null: none), for the signal handler. An
    /// atomic only to make its reads and writes whole when the handler interrupts a write.
    static RUNNING: AtomicPtr<lua_State> = const { AtomicPtr::new(std::ptr::null_mut()) };
    /// The hook interval of the engine whose resume runs on this OS thread.
    static INTERVAL: AtomicI32 = const { AtomicI32::new(1) };
    /// Resumes started on this OS thread (wraps), and the count the last signal saw: equal at
    /// the next signal means one resume has run through a whole period of the timer.
    static RESUMES: AtomicU64 = const { AtomicU64::new(0) };
    static SEEN: AtomicU64 = const { AtomicU64::new(0) };
}

/// Sets the running Lua thread; returns the previous one.
fn replace_running(state: *mut lua_State) -> *mut lua_State {
    let previous = RUNNING.with(|r| r.swap(state, Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    previous
}

/// The actor's coroutine is running on this OS thread until the value is dropped (which
/// restores the previous one).
pub(crate) struct Running(*mut lua_State);

impl Running {
    /// `thread` (a `lua_State` address, `Slice::main_thread`) of an engine whose hook checks
    /// every `interval` instructions is about to be resumed.
    ///
    /// The caller keeps the thread alive (it holds the coroutine) until this value is dropped.
    pub(crate) fn enter(thread: usize, interval: u32) -> Running {
        let interval = i32::try_from(interval).unwrap_or(i32::MAX).max(1);
        INTERVAL.with(|i| i.store(interval, Ordering::Relaxed));
        RESUMES.with(|r| r.store(r.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed));
        Running(replace_running(thread as *mut lua_State))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        replace_running(self.0);
    }
}

/// The signal handler: if the resume that runs now also ran at the previous signal, arms the
/// hook of the Lua thread running here, to fire after the engine's hook interval, as a hook
/// kept on all the time would (the first check comes at the same distance from the
/// interrupted point as ever: a long C function followed by a few instructions is not
/// checked in between, as before).
extern "C" fn on_signal(_: c_int) {
    // SAFETY: `errno` is this thread's; it is read and written back unchanged around code that
    // does not touch it, so the interrupted code sees its own value.
    let errno = unsafe { *libc::__errno_location() };
    let resumes = RESUMES.with(|r| r.load(Ordering::Relaxed));
    let same_resume = SEEN.with(|s| s.swap(resumes, Ordering::Relaxed)) == resumes;
    let state = RUNNING.with(|r| r.load(Ordering::Relaxed));
    let interval = INTERVAL.with(|i| i.load(Ordering::Relaxed));
    let hook = HOOK.load(Ordering::Relaxed);
    if same_resume && !state.is_null() && hook != 0 {
        // SAFETY: `state` is a live thread of this OS thread (see the module docs, "Which
        // thread runs"), and `lua_sethook` may run in a signal handler that interrupts its
        // thread ("lua_sethook from a signal handler"). `hook` is mlua's hook function, stored
        // from `lua_gethook`.
        unsafe {
            let hook: ffi::lua_Hook = std::mem::transmute::<usize, ffi::lua_Hook>(hook);
            ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, interval);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the signal handler (once per process).
fn install_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: a zeroed `sigaction` is valid (empty mask, no flags); the handler is an
        // `extern "C"` function of the right signature that is async-signal-safe (see
        // `on_signal`).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(SIGNAL, &action, std::ptr::null_mut()) != 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
    });
    result
}

/// Takes mlua's hook function from `lua`'s main thread, where `Lua::set_global_hook` has just
/// installed it, and removes it there: threads run without a hook until a signal arms it.
pub(crate) fn take_hook(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: `lua_gethook` and `lua_sethook` on the state `exec_raw` hands us, which is not
    // running (we are outside any resume); neither raises.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            if let Some(hook) = ffi::lua_gethook(state) {
                HOOK.store(hook as usize, Ordering::Relaxed);
            }
            ffi::lua_sethook(state, None, 0, 0);
        })
    }
}

/// Removes the hook of `thread`, the Lua thread running now.
pub(crate) fn disarm(thread: usize) {
    // SAFETY: `thread` is the running thread of this OS thread (the caller is its hook);
    // `lua_sethook` does not raise.
    unsafe { ffi::lua_sethook(thread as *mut lua_State, None, 0, 0) };
}

/// A timer on the calling thread's CPU clock that signals that thread after every `period`
/// of CPU it uses (see the module docs); deleted when dropped.
#[derive(Debug)]
pub(crate) struct SliceTimer(libc::timer_t);

impl SliceTimer {
    /// Starts the timer of the calling thread. The signal handler is installed first.
    pub(crate) fn start(period: Duration) -> std::io::Result<SliceTimer> {
        install_handler()?;
        // A zero time slice must not make the timer fire without pause.
        let period = period.max(Duration::from_micros(200));
        // SAFETY: a zeroed `sigevent` is valid; the fields set direct the signal at this
        // thread (`gettid`), which `timer_create` checks exists. `timer` is written by
        // `timer_create` before it is read, and deleted only by `Drop`.
        unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = SIGNAL;
            event.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            if libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut event, &mut timer) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let timer = SliceTimer(timer);
            let every = libc::timespec {
                tv_sec: period.as_secs() as libc::time_t,
                tv_nsec: period.subsec_nanos() as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: every,
                it_value: every,
            };
            if libc::timer_settime(timer.0, 0, &spec, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(timer)
        }
    }
}

impl Drop for SliceTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted once, here.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Upvalues of [`resume`]: the messages `lua_resume` and it may push, kept alive so that
/// pushing them allocates nothing (short strings are interned: a live one is found, not
/// created), hence raises nothing.
const MESSAGES: (&str, &str, &str, &str, &str) = (
    "cannot resume non-suspended coroutine",
    "cannot resume dead coroutine",
    "C stack overflow",
    "too many arguments to resume",
    "too many results to resume",
);
const TOO_MANY_ARGUMENTS: c_int = ffi::lua_upvalueindex(4);
const TOO_MANY_RESULTS: c_int = ffi::lua_upvalueindex(5);

/// `coroutine.resume` and `coroutine.close` for the process's coroutine library: the standard
/// ones, telling the signal handler which thread runs while they run a coroutine.
pub(crate) fn coroutine_functions(
    lua: &Lua,
    coroutine: &Table,
) -> mlua::Result<(Function, Function)> {
    let standard: (Function, Function) = (coroutine.get("resume")?, coroutine.get("close")?);
    // SAFETY: `lua_tocfunction` reads the function values `exec_raw` pushed; the five strings
    // become the closure's upvalues, and `lua_pushcclosure` allocates inside `exec_raw`'s
    // protected call. `resume` and `close` follow the C function protocol.
    unsafe {
        lua.exec_raw::<()>(standard, |state| {
            if let (Some(resume), Some(close)) = (
                ffi::lua_tocfunction(state, -2),
                ffi::lua_tocfunction(state, -1),
            ) {
                RESUME.store(resume as usize, Ordering::Relaxed);
                CLOSE.store(close as usize, Ordering::Relaxed);
            }
        })?;
        if RESUME.load(Ordering::Relaxed) == 0 || CLOSE.load(Ordering::Relaxed) == 0 {
            return Err(mlua::Error::runtime(
                "coroutine.resume and close must be C functions",
            ));
        }
        let resume_function =
            lua.exec_raw::<Function>(MESSAGES, |state| ffi::lua_pushcclosure(state, resume, 5))?;
        let close_function = lua.create_c_function(close)?;
        Ok((resume_function, close_function))
    }
}

/// `coroutine.resume(co, ...)`, as the standard library's (`luaB_coresume`), with the running
/// thread set to `co` while it runs.
unsafe extern "C-unwind" fn resume(state: *mut lua_State) -> c_int {
    let co = ffi::lua_tothread(state, 1);
    if co.is_null() {
        // The standard function raises the argument error.
        let original =
            std::mem::transmute::<usize, ffi::lua_CFunction>(RESUME.load(Ordering::Relaxed));
        return original(state);
    }
    let narg = ffi::lua_gettop(state) - 1;
    let results = aux_resume(state, co, narg);
    if results < 0 {
        ffi::lua_pushboolean(state, 0);
        ffi::lua_insert(state, -2);
        2
    } else {
        ffi::lua_pushboolean(state, 1);
        ffi::lua_insert(state, -(results + 1));
        results + 1
    }
}

/// Resumes `co` with the top `narg` values of `state`; the number of results moved back, or
/// -1 with an error message on top. Raises nothing: the messages it and `lua_resume` push are
/// alive (see [`MESSAGES`]), and everything else here neither allocates nor raises.
unsafe fn aux_resume(state: *mut lua_State, co: *mut lua_State, narg: c_int) -> c_int {
    if ffi::lua_checkstack(co, narg) == 0 {
        ffi::lua_pushvalue(state, TOO_MANY_ARGUMENTS);
        return -1;
    }
    ffi::lua_xmove(state, co, narg);
    let previous = replace_running(co);
    let mut results: c_int = 0;
    let status = ffi::lua_resume(co, state, narg, &mut results);
    replace_running(previous);
    if status == ffi::LUA_OK || status == ffi::LUA_YIELD {
        if ffi::lua_checkstack(state, results + 1) == 0 {
            ffi::lua_pop(co, results);
            ffi::lua_pushvalue(state, TOO_MANY_RESULTS);
            return -1;
        }
        ffi::lua_xmove(co, state, results);
        results
    } else {
        ffi::lua_xmove(co, state, 1);
        -1
    }
}

/// `coroutine.close(co)`: the standard library's, with the running thread set to `co` while
/// it runs `co`'s pending `__close` handlers.
unsafe extern "C-unwind" fn close(state: *mut lua_State) -> c_int {
    // Set before this function exists (`coroutine_functions`).
    let original = std::mem::transmute::<usize, ffi::lua_CFunction>(CLOSE.load(Ordering::Relaxed));
    let co = ffi::lua_tothread(state, 1);
    // Only a suspended or dead coroutine is closed (anything else raises, and must do so
    // with the running thread unchanged): not this one, and not one with a call in progress
    // that is not a yield (a coroutine that resumed another).
    let mut ar = std::mem::zeroed::<ffi::lua_Debug>();
    let closable = !co.is_null()
        && co != state
        && match ffi::lua_status(co) {
            ffi::LUA_YIELD => true,
            ffi::LUA_OK => ffi::lua_getstack(co, 0, &mut ar) == 0,
            _ => true,
        };
    if !closable {
        return original(state);
    }
    // `lua_closethread` runs the handlers in protected mode and reports their error; the
    // rest of the standard function pushes a boolean and moves a value: nothing raises.
    let previous = replace_running(co);
    let results = original(state);
    replace_running(previous);
    results
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, LuaOptions, StdLib, Value};

    fn lua_with_functions() -> Lua {
        let lua = Lua::new_with(StdLib::COROUTINE | StdLib::TABLE, LuaOptions::new()).unwrap();
        let coroutine: mlua::Table = lua.globals().get("coroutine").unwrap();
        let (resume, close) = super::coroutine_functions(&lua, &coroutine).unwrap();
        lua.globals().set("resume", resume).unwrap();
        lua.globals().set("close", close).unwrap();
        lua
    }

    /// The `resume` here returns what the standard one returns, in every case it handles.
    #[test]
    fn resume_answers_as_the_standard_library_does() {
        let lua = lua_with_functions();
        let script = r#"
            local function run(res)
              local out = {}
              local co = coroutine.create(function(a, b)
                local c = coroutine.yield(a + b, "x")
                error("boom " .. c, 0)
              end)
              out[#out + 1] = table.pack(res(co, 1, 2))
              out[#out + 1] = table.pack(res(co, 5))
              out[#out + 1] = table.pack(res(co))
              out[#out + 1] = table.pack(res(coroutine.create(function() return end)))
              local self_co
              self_co = coroutine.create(function() return res(self_co) end)
              out[#out + 1] = table.pack(res(self_co))
              local outer = coroutine.create(function()
                local inner = coroutine.create(function() return res(outer_ref) end)
                return res(inner)
              end)
              outer_ref = outer
              out[#out + 1] = table.pack(res(outer))
              out[#out + 1] = table.pack(pcall(res, 42))
              local parts = {}
              for _, r in ipairs(out) do
                local p = {}
                for i = 1, r.n do p[#p + 1] = tostring(r[i]) end
                parts[#parts + 1] = table.concat(p, ",")
              end
              return table.concat(parts, "|")
            end
            local std = run(coroutine.resume)
            local ours = run(resume)
            return std, ours
        "#;
        let (std, ours): (String, String) = lua.load(script).eval().unwrap();
        // The argument error names the function as it was called (a global here).
        assert_eq!(std.replace("'coroutine.resume'", "'resume'"), ours);
        assert!(std.contains("3,x"), "{std}");
        assert!(std.contains("boom 5"), "{std}");
    }

    /// `close` closes a suspended coroutine (running its `__close` handlers) and refuses a
    /// running one with the standard message, leaving no running thread set behind.
    #[test]
    fn close_runs_handlers_and_refuses_a_running_coroutine() {
        let lua = lua_with_functions();
        let (closed, refused): (Value, String) = lua
            .load(
                r#"
                local ran = false
                local co = coroutine.create(function()
                  local x <close> = setmetatable({}, {__close = function() ran = true end})
                  coroutine.yield()
                end)
                coroutine.resume(co)
                local ok = close(co)
                local _, err = pcall(close, coroutine.running())
                return ok and ran, err
                "#,
            )
            .eval()
            .unwrap();
        assert_eq!(closed, Value::Boolean(true));
        assert!(
            refused.contains("cannot close a running coroutine"),
            "{refused}"
        );
        assert!(super::RUNNING
            .with(|r| r.load(std::sync::atomic::Ordering::Relaxed))
            .is_null());
    }

    /// The timer's signal sets the hook on the thread `Running` names, once one resume has run
    /// through a whole period: a loop that never calls out of Lua, with no hook set, is
    /// stopped by a hook only the signal can have armed; a short one, before it, is not.
    #[test]
    fn the_slice_timer_arms_the_hook_of_a_resume_that_runs_a_whole_period() {
        let lua = Lua::new();
        lua.set_global_hook(
            mlua::HookTriggers::new().every_nth_instruction(1),
            |_, _| Err(mlua::Error::runtime("interrupted")),
        )
        .unwrap();
        super::take_hook(&lua).unwrap();
        let quiet: i64 = lua
            .load("local n = 0 for i = 1, 100000 do n = n + 1 end return n")
            .eval()
            .unwrap();
        assert_eq!(quiet, 100_000, "no hook runs before a signal");

        let timer = super::SliceTimer::start(std::time::Duration::from_millis(5)).unwrap();
        let main = lua.current_thread().to_pointer() as usize;
        // Many short resumes, each well under a period: none is armed.
        for _ in 0..2000 {
            let running = super::Running::enter(main, 100);
            let n: i64 = lua
                .load("local n = 0 for i = 1, 1000 do n = n + 1 end return n")
                .eval()
                .unwrap();
            drop(running);
            assert_eq!(n, 1000);
        }
        let running = super::Running::enter(main, 100);
        let result = lua.load("while true do end").exec();
        drop(running);
        drop(timer);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("interrupted"), "{err}");
    }
}
