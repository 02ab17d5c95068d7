//! The allocator of a worker's Lua state, with the state's memory count and limit.
//!
//! mlua's allocator asks Rust's global allocator for every block with a 16-byte alignment.
//! Under mimalloc (the `wsrelay` binary's global allocator) that is `mi_malloc_aligned`, whose
//! fast path takes a free block only if it happens to be 16-byte aligned: Lua's tables (56
//! bytes), strings (24 bytes and up) and nodes come from size classes whose blocks are 8-byte
//! aligned, so about half of them went the generic way, which over-allocates to align. Lua
//! needs no more than 8 (its `LUAI_MAXALIGN`: a double, a pointer, a 64-bit integer), which
//! every mimalloc block has. So when the global allocator is mimalloc, a worker's state
//! allocates with plain `mi_malloc`, `mi_realloc` and `mi_free`; otherwise (a library user's
//! own allocator, the unit tests) it keeps asking the global allocator exactly as mlua did.
//!
//! Swapping the allocator leaves mlua without its count and limit (they live in its
//! allocator's data), so [`Memory`] is the state's count and limit from then on, with mlua's
//! rules: a growth past the limit fails, shrinking and freeing never do.
//!
//! Measured (callgrind, `scripts/bench-profile.sh relay-lua`): the Lua echo's 19 allocator
//! calls per message went from 1,156 to 943 instructions, the whole message from 18,985 to
//! 18,796 (docs/BENCHMARKS.md, "Stop 38").

use std::alloc::Layout;
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;

use mlua::ffi;
use mlua::Lua;

/// The layout mlua's allocator gives a block of `size` bytes (its `SYS_MIN_ALIGN`, read from
/// mlua so the two never differ): blocks it allocated before the swap are resized and freed
/// with it when the global allocator is not mimalloc.
fn global_layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, ffi::SYS_MIN_ALIGN).ok()
}

/// Where a state's blocks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// `mi_malloc` and friends: the global allocator is mimalloc, so blocks mlua allocated
    /// before the swap are mimalloc's too (`mi_free` and `mi_realloc` take aligned blocks).
    Mimalloc,
    /// Rust's global allocator with mlua's layout.
    Global,
}

/// The allocator's data: the bytes in use, the limit, the backend. Only the thread running
/// the state touches it (Lua calls the allocator from that thread), hence `Cell`s.
#[derive(Debug)]
struct Counter {
    used: Cell<usize>,
    /// 0: no limit.
    limit: Cell<usize>,
    backend: Backend,
}

/// A worker state's memory count and limit (its allocator installed by [`install`]).
#[derive(Clone, Debug)]
pub(crate) struct Memory(Rc<Counter>);

impl Memory {
    /// The bytes the state has in use.
    pub(crate) fn used(&self) -> usize {
        self.0.used.get()
    }

    /// Allocations that would take the state past `limit` bytes fail from now on (0: none).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.0.limit.set(limit);
    }

    /// Whether the state allocates with mimalloc directly.
    #[cfg(test)]
    pub(crate) fn direct(&self) -> bool {
        self.0.backend == Backend::Mimalloc
    }
}

/// The bytes `lua` has in use: its [`Memory`]'s count, or mlua's for a state without this
/// module's allocator.
pub(crate) fn used(lua: &Lua) -> usize {
    match lua.app_data_ref::<Rc<Counter>>() {
        Some(counter) => counter.used.get(),
        None => lua.used_memory(),
    }
}

/// Gives `lua` this module's allocator, counting on from the bytes it has in use, under
/// `limit`. The state must have a nonzero memory limit set through mlua first: mlua decides
/// then that allocations may fail and protects its calls accordingly, and keeps that
/// decision after the swap.
pub(crate) fn install(lua: &Lua, limit: usize) -> Memory {
    let counter = Rc::new(Counter {
        used: Cell::new(lua.used_memory()),
        limit: Cell::new(limit),
        backend: if global_is_mimalloc() {
            Backend::Mimalloc
        } else {
            Backend::Global
        },
    });
    // The allocator's data lives as long as the state: the app data is dropped after
    // `lua_close`, which frees the state's last blocks through the allocator.
    tracing::debug!(backend = ?counter.backend, "lua: the state's allocator");
    lua.set_app_data(Rc::clone(&counter));
    let data = Rc::as_ptr(&counter) as *mut c_void;
    // SAFETY: the swap happens between two allocations (no Lua code or allocation runs
    // while mlua's handle is borrowed here); `allocate` frees and resizes the blocks mlua's
    // allocator made (see `Backend`); `data` outlives the state (above).
    unsafe {
        lua.exec_raw::<()>((), |state| ffi::lua_setallocf(state, allocate, data))
            .expect("lua_setallocf raises nothing");
    }
    Memory(counter)
}

/// Whether Rust's global allocator is mimalloc: a block it returns lies in mimalloc's heap.
fn global_is_mimalloc() -> bool {
    let probe = Box::new(0u64);
    // SAFETY: `mi_is_in_heap_region` only looks the address up in mimalloc's page map; it
    // does not dereference it.
    unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr::from_ref(&*probe).cast()) }
}

/// The state's `lua_Alloc` (Lua 5.4 manual §4.6): frees when `nsize` is 0, allocates when
/// `ptr` is null, resizes otherwise; a null return is a failure, which Lua raises as a
/// memory error (after an emergency collection).
///
/// # Safety
///
/// Called by Lua with the `data` of [`install`], and `ptr`, `osize` describing a block this
/// state allocated (`osize` is then its size).
unsafe extern "C" fn allocate(
    data: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    // SAFETY: `data` is the `Counter` of `install`, alive as long as the state.
    let counter = unsafe { &*(data as *const Counter) };
    let old = if ptr.is_null() { 0 } else { osize };
    if nsize == 0 {
        if !ptr.is_null() {
            // SAFETY: `ptr` is a block of this state of `osize` bytes.
            unsafe { free(counter.backend, ptr, osize) };
            counter.used.set(counter.used.get() - osize);
        }
        return ptr::null_mut();
    }
    if nsize > isize::MAX as usize {
        return ptr::null_mut();
    }
    let used = counter.used.get();
    let limit = counter.limit.get();
    if nsize > old && limit != 0 && used - old + nsize > limit {
        return ptr::null_mut();
    }
    // SAFETY: as for `free`; `nsize` is nonzero.
    let block = unsafe {
        if ptr.is_null() {
            alloc(counter.backend, nsize)
        } else {
            realloc(counter.backend, ptr, osize, nsize)
        }
    };
    if !block.is_null() {
        counter.used.set(used - old + nsize);
    }
    block
}

/// A new block of `size` (nonzero) bytes, or null.
unsafe fn alloc(backend: Backend, size: usize) -> *mut c_void {
    match backend {
        // SAFETY: any size; null on failure.
        Backend::Mimalloc => unsafe { libmimalloc_sys::mi_malloc(size) },
        Backend::Global => match global_layout(size) {
            // SAFETY: the layout's size is nonzero.
            Some(layout) => unsafe { std::alloc::alloc(layout).cast() },
            None => ptr::null_mut(),
        },
    }
}

/// `ptr` (a block of `osize` bytes from `backend`) resized to `nsize` (nonzero) bytes, or
/// null with `ptr` left as it was.
unsafe fn realloc(backend: Backend, ptr: *mut c_void, osize: usize, nsize: usize) -> *mut c_void {
    match backend {
        // SAFETY: `ptr` is a mimalloc block (see `Backend::Mimalloc`).
        Backend::Mimalloc => unsafe { libmimalloc_sys::mi_realloc(ptr, nsize) },
        Backend::Global => match global_layout(osize) {
            // SAFETY: `ptr` was allocated with this layout (mlua's or ours, the same; valid,
            // as it was made once); `nsize` is nonzero and at most `isize::MAX`.
            Some(layout) => unsafe { std::alloc::realloc(ptr.cast(), layout, nsize).cast() },
            None => ptr::null_mut(),
        },
    }
}

/// Frees `ptr`, a block of `osize` bytes from `backend`.
unsafe fn free(backend: Backend, ptr: *mut c_void, osize: usize) {
    match backend {
        // SAFETY: `ptr` is a mimalloc block (see `Backend::Mimalloc`).
        Backend::Mimalloc => unsafe { libmimalloc_sys::mi_free(ptr) },
        Backend::Global => {
            if let Some(layout) = global_layout(osize) {
                // SAFETY: `ptr` was allocated with this layout (valid, as it was made once).
                unsafe { std::alloc::dealloc(ptr.cast(), layout) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, LuaOptions, StdLib};

    use super::install;

    fn state() -> (Lua, super::Memory) {
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING, LuaOptions::new()).unwrap();
        lua.set_memory_limit(64 << 20).unwrap();
        let memory = install(&lua, 64 << 20);
        (lua, memory)
    }

    /// The count goes on from mlua's and stays Lua's own count of its bytes, through
    /// allocations, resizes (a growing table) and frees.
    #[test]
    fn the_count_is_the_states_own() {
        let (lua, memory) = state();
        // The unit tests run under the system allocator.
        assert!(!memory.direct());
        let lua_count = || lua.used_memory();
        assert_eq!(memory.used(), lua_count());
        let keep = lua
            .load("local t = {} for i = 1, 1000 do t[i] = string.rep('x', i) end return t")
            .eval::<mlua::Table>()
            .unwrap();
        assert_eq!(memory.used(), lua_count());
        let before = memory.used();
        drop(keep);
        lua.gc_collect().unwrap();
        assert_eq!(memory.used(), lua_count());
        assert!(memory.used() + 400_000 < before, "the strings were freed");
    }

    /// A growth past the limit fails as a memory error, and the state goes on after it.
    #[test]
    fn the_limit_holds_and_the_state_survives_it() {
        let (lua, memory) = state();
        memory.set_limit(memory.used() + (1 << 20));
        let err = lua
            .load("return string.rep('x', 4 * 1024 * 1024)")
            .exec()
            .unwrap_err();
        assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
        let err = lua
            .load("local t = {} for i = 1, 1e7 do t[i] = i end")
            .exec()
            .unwrap_err();
        assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
        lua.gc_collect().unwrap();
        memory.set_limit(0);
        let n: i64 = lua
            .load("local t = {} for i = 1, 1e5 do t[i] = i end return #t")
            .eval()
            .unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(memory.used(), lua.used_memory());
    }
}
