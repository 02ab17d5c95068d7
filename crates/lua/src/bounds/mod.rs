//! Bounds on the C library functions whose work does not follow from their arguments' size.
//!
//! The instruction hook never fires inside a C function, so a C loop runs until it ends, and
//! neither preemption nor the CPU budget applies. Every standard function reachable from the
//! sandbox was checked; what each costs at most now:
//!
//! | function | unbounded case | bound |
//! |---|---|---|
//! | `string.find/match/gmatch/gsub` | backtracking patterns | Rust matcher with a step budget ([`crate::stdlib`]) |
//! | `string.rep` | repeating `""` n times loops n times | returns `""` at once |
//! | `string.rep`, `string.pack` (`c<n>` padding), `table.concat`, `string.format`, `gsub` output | huge results | the per-slice allocator limit ([`crate::resume::Resumes`]): the allocation fails before C fills it |
//! | `table.insert/remove/sort/concat` | a table whose `__len`/`__index`/`__newindex` are C functions: a synthetic length of 2^31 or more, every access a C call | tables with a metatable use Lua versions (preemptible); plain tables stay in C (their length is real) |
//! | `table.move` | a range of nils (`table.move({}, 1, 1 << 50, 1)`) or of synthetic elements | ranges over 65,536 or tables with a metatable are copied in Lua |
//! | `setmetatable` with `__gc` | finalizers run in the collector with hooks off: an endless `__gc` holds the worker forever | refused |
//! | `table.unpack`, `string.byte`, `utf8.codepoint`, `select` | many results | Lua's stack limit (1,000,000 values) |
//! | `string.len/sub/upper/lower/reverse/byte/char/format`, `utf8.*`, `string.pack/unpack`, `tostring`, `tonumber`, `os.date` | — | linear in the size of their arguments and results |
//! | `table.sort` comparator, `__tostring`, `__index` ... written in Lua | an endless callback | the hook runs in it; it cannot yield there, so the CPU budget ends it |
//!
//! The Lua versions keep the C functions' results; on a table with a metatable, `table.sort`
//! reads every element, sorts a copy and writes every element back (C reads and writes as it
//! goes, which a `__newindex` could observe).

use mlua::{Function, Lua, Table, Value as LuaValue};

/// The guards, in Lua.
const GUARDS: &str = include_str!("guards.lua");

/// Installs the guards in the state's real `string` and `table` tables and returns the
/// `setmetatable` the sandbox should offer.
pub(crate) fn install(lua: &Lua) -> mlua::Result<Function> {
    let globals = lua.globals();
    let has_metatable = lua.create_function(|_, value: LuaValue| {
        Ok(matches!(&value, LuaValue::Table(t) if t.metatable().is_some()))
    })?;
    lua.load(GUARDS).set_name("=wsrelay-lua bounds").call((
        globals.get::<Table>("string")?,
        globals.get::<Table>("table")?,
        globals.get::<Table>("math")?,
        has_metatable,
    ))
}
