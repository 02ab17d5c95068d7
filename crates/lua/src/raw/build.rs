//! Rust to Lua: payloads and received messages built in one protected call.
//!
//! A relayed frame becomes a message table, a payload table of four fields and a metadata
//! table; mlua would make a dozen protected calls of it. Here one `exec_raw` builds it all,
//! after [`headroom`] has made sure no allocation can fail (see the module docs of `raw`).

use std::ffi::c_int;

use mlua::ffi::{self, lua_State};
use mlua::{Lua, RegistryKey, Table, Value as LuaValue};
use smallvec::SmallVec;
use wsrelay_process::{Message, Pid, Value, Visit};

use super::{headroom, push_str, STACK_MARGIN};

/// What a built value may cost the Lua state, per node, besides the bytes of its strings: a
/// table header and a hash node (or array slot), rounded up.
const NODE_BYTES: usize = 128;

/// Strings up to this many bytes (keys, topics, short values) go through the state's string
/// cache: pushing a Lua string hashes it and looks it up in Lua's string table (~200
/// instructions for a key), and a message carries the same few keys every time.
const CACHED_LEN: usize = 16;

/// Slots of the string cache (a power of two; 128 keeps the usual message keys and topics
/// apart).
const CACHE_SLOTS: u32 = 128;

/// Slots of the PID cache, after the string cache's in the same table: a sender's PID text
/// (20-odd bytes, too long for the string cache's cheap slot choice: PIDs differ in their
/// last digits) is pushed for every message of a connection, and interning it costs Lua
/// ~300 instructions; a slot chosen by the PID's number and checked against its whole text
/// costs a third of that.
const PID_SLOTS: u64 = 64;

/// The metatables of received messages and their payload objects (their methods are defined
/// in `modules/inbox.rs`), kept in the registry of each worker state.
pub(crate) struct Metatables {
    message: Table,
    payload: Table,
    /// The string cache: an array of [`CACHE_SLOTS`] recently pushed short strings, then
    /// [`PID_SLOTS`] recently pushed PID texts (`false` in a free slot, so that storing never
    /// allocates), see [`Build::push_text`] and [`Build::push_pid`].
    strings: Table,
    /// Their registry slots, for the raw builder.
    ids: (ffi::lua_Integer, ffi::lua_Integer),
    _keys: (RegistryKey, RegistryKey),
}

impl Metatables {
    /// Registers `message` and `payload` in `lua`'s registry.
    pub(crate) fn new(lua: &Lua, message: Table, payload: Table) -> mlua::Result<Metatables> {
        let keys = (
            lua.create_registry_value(&message)?,
            lua.create_registry_value(&payload)?,
        );
        let slots = CACHE_SLOTS + PID_SLOTS as u32;
        let strings = lua.create_table_with_capacity(slots as usize, 0)?;
        for slot in 1..=slots {
            strings.raw_set(slot, false)?;
        }
        Ok(Metatables {
            ids: (registry_index(&keys.0), registry_index(&keys.1)),
            message,
            payload,
            strings,
            _keys: keys,
        })
    }

    /// The message and payload metatables and the string cache (for `inbox:receive()`,
    /// which hands them to [`super::receive_function`]).
    pub(crate) fn tables(&self) -> (Table, Table, Table) {
        (
            self.message.clone(),
            self.payload.clone(),
            self.strings.clone(),
        )
    }

    /// A copy to build with, so that no borrow of the state's app data is held while
    /// building (a conversion may set app data of its own).
    pub(crate) fn handle(&self) -> MessageMetas {
        MessageMetas {
            message: self.message.clone(),
            payload: self.payload.clone(),
            strings: self.strings.clone(),
            ids: self.ids,
        }
    }
}

/// See [`Metatables::handle`].
pub(crate) struct MessageMetas {
    message: Table,
    payload: Table,
    strings: Table,
    ids: (ffi::lua_Integer, ffi::lua_Integer),
}

// ===== received messages =====

/// The Lua form of a received message: `{topic, from, data, extra payload objects}` with the
/// message metatable (`msg:topic()`, `msg:from()`, `msg:payload()` (the message itself),
/// `msg:data()`, `msg:payloads()`); an extra payload object is `{data}` with the payload
/// metatable (`p:data()`). See `modules/inbox.rs`.
pub(crate) fn message(lua: &Lua, metas: &MessageMetas, msg: &Message) -> mlua::Result<Table> {
    if !headroom(lua, message_estimate(msg)) {
        return safe_message(lua, metas, msg);
    }
    let (message_meta, payload_meta) = metas.ids;
    // SAFETY: see the module docs: nothing below can raise, because the state has room for
    // twice the estimate of what is allocated; the stack is checked before use. The string
    // cache is the call's one argument (slot 1), removed at the end.
    unsafe {
        lua.exec_raw::<Table>(&metas.strings, |state| {
            push_message(
                state,
                msg,
                Meta::Registry(message_meta),
                Meta::Registry(payload_meta),
                1,
            );
            ffi::lua_remove(state, 1);
        })
    }
}

/// A generous estimate of the bytes the Lua form of `msg` takes (for [`headroom`]).
pub(super) fn message_estimate(msg: &Message) -> usize {
    NODE_BYTES * 3
        + msg.topic().len()
        + msg.from().map_or(0, |p| p.as_str().len())
        + estimate(msg.payload())
        + msg.extra().iter().map(estimate).sum::<usize>()
}

/// Where a metatable is: in the registry, or at a positive stack index or an upvalue index
/// of the running C function.
#[derive(Clone, Copy)]
pub(super) enum Meta {
    Registry(ffi::lua_Integer),
    Stack(c_int),
}

impl Meta {
    /// Pushes the metatable.
    ///
    /// # Safety
    ///
    /// `state` is valid and has a free stack slot; a `Stack` index holds the metatable.
    unsafe fn push(self, state: *mut lua_State) {
        match self {
            Meta::Registry(id) => {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, id);
            }
            Meta::Stack(index) => ffi::lua_pushvalue(state, index),
        }
    }
}

/// Pushes the Lua form of `msg` (see [`message`]); pushes nothing if the stack cannot grow.
/// `strings` is the stack index of the string cache (see [`Metatables`]).
///
/// # Safety
///
/// `state` is valid, inside a protected call or a C function, and has room for twice
/// [`message_estimate`] of `msg` below its memory limit (so nothing raises); `strings` is a
/// positive index or an upvalue index holding the string cache.
pub(super) unsafe fn push_message(
    state: *mut lua_State,
    msg: &Message,
    message_meta: Meta,
    payload_meta: Meta,
    strings: c_int,
) {
    let mut build = Build::new(state, strings);
    if !build.room(9) {
        return;
    }
    ffi::lua_createtable(state, 4, 0);
    let table = ffi::lua_gettop(state);
    build.push_text(msg.topic().as_bytes());
    ffi::lua_rawseti(state, table, 1);
    if let Some(from) = msg.from() {
        // The sender's text stays on the stack above the table while the payloads are
        // built: a relay event repeats it (`client_pid`), and a copy of the Lua string costs
        // nothing against a second push.
        build.push_pid(from);
        ffi::lua_pushvalue(state, -1);
        ffi::lua_rawseti(state, table, 2);
        build.pid = Some((from.as_str().as_bytes(), ffi::lua_gettop(state)));
    }
    build.start();
    msg.payload().visit(&mut build);
    build.finish();
    ffi::lua_rawseti(state, table, 3);
    if !msg.extra().is_empty() {
        ffi::lua_createtable(state, len_hint(msg.extra().len()), 0);
        for (i, extra) in msg.extra().iter().enumerate() {
            build.payload_object(extra, payload_meta);
            ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
        }
        ffi::lua_rawseti(state, table, 4);
    }
    // Drops the sender's text, if any: the table is on top again.
    ffi::lua_settop(state, table);
    message_meta.push(state);
    ffi::lua_setmetatable(state, -2);
}

/// [`message`] through mlua, for when the state is too close to its memory limit. Data that
/// does not fit is replaced by its error (slot 5 of the message, slot 2 of an extra payload):
/// `:data()` raises it, so the process meets it where it reads the data (inside its `pcall`,
/// if any), as it would if the data were converted on demand.
fn safe_message(lua: &Lua, metas: &MessageMetas, msg: &Message) -> mlua::Result<Table> {
    let payload_meta = &metas.payload;
    // The data in `slot`, or its error in `slot + error_offset`.
    let put = |t: &Table, slot: usize, error_slot: usize, value: &Value| -> mlua::Result<()> {
        match crate::convert::to_lua_stepwise(lua, value) {
            Ok(converted) => t.raw_set(slot, converted),
            Err(e) => t.raw_set(error_slot, e.to_string()),
        }
    };
    let payload_object = |value: &Value| -> mlua::Result<Table> {
        let object = lua.create_table_with_capacity(2, 0)?;
        put(&object, 1, 2, value)?;
        object.set_metatable(Some(payload_meta.clone()))?;
        Ok(object)
    };
    let t = lua.create_table_with_capacity(5, 0)?;
    t.raw_set(1, msg.topic())?;
    if let Some(from) = msg.from() {
        t.raw_set(2, from.as_str())?;
    }
    put(&t, 3, 5, msg.payload())?;
    if !msg.extra().is_empty() {
        let extra = lua.create_table_with_capacity(msg.extra().len(), 0)?;
        for value in msg.extra() {
            extra.raw_push(payload_object(value)?)?;
        }
        t.raw_set(4, extra)?;
    }
    t.set_metatable(Some(metas.message.clone()))?;
    Ok(t)
}

// ===== values =====

/// A payload as a fresh Lua value, built in one protected call (or step by step by
/// [`crate::convert::to_lua_stepwise`] when the state is near its memory limit).
pub(crate) fn value(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    if !headroom(lua, estimate(value)) {
        return crate::convert::to_lua_stepwise(lua, value);
    }
    // SAFETY: as in `message`.
    unsafe {
        lua.exec_raw::<LuaValue>((), |state| {
            let mut build = Build::new(state, 0);
            build.start();
            value.visit(&mut build);
            build.finish();
        })
    }
}

/// A fresh table `{_G = itself}` with metatable `meta` (a process's or call's environment),
/// in one protected call.
pub(crate) fn environment(lua: &Lua, meta: &Table) -> mlua::Result<Table> {
    if !headroom(lua, NODE_BYTES * 2) {
        let env = lua.create_table_with_capacity(0, 1)?;
        env.raw_set("_G", &env)?;
        env.set_metatable(Some(meta.clone()))?;
        return Ok(env);
    }
    // SAFETY: as in `message`; the metatable is the call's one argument (slot 1).
    unsafe {
        lua.exec_raw::<Table>(meta, |state| {
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_pushvalue(state, -1);
            ffi::lua_setfield(state, -2, c"_G".as_ptr());
            ffi::lua_pushvalue(state, 1);
            ffi::lua_setmetatable(state, -2);
            ffi::lua_remove(state, 1);
        })
    }
}

/// A generous estimate of the bytes the Lua form of `value` takes.
fn estimate(value: &Value) -> usize {
    match value {
        Value::String(s) => NODE_BYTES + s.len(),
        Value::Bytes(b) => NODE_BYTES + b.len(),
        Value::Array(items) => NODE_BYTES + items.iter().map(estimate).sum::<usize>(),
        Value::Map(map) => {
            NODE_BYTES
                + map
                    .iter()
                    .map(|(k, v)| NODE_BYTES + k.len() + estimate(v))
                    .sum::<usize>()
        }
        // Opaque payloads say how many bytes they carry; their structure is small.
        Value::Opaque(o) => NODE_BYTES * 16 + o.size_hint() * 2,
        _ => NODE_BYTES,
    }
}

fn registry_index(key: &RegistryKey) -> ffi::lua_Integer {
    ffi::lua_Integer::from(key.id())
}

/// The string cache slot of `bytes` (1 to [`CACHE_SLOTS`], not empty): a mix of its length
/// and a few of its bytes, cheaper than hashing it all.
fn cache_slot(bytes: &[u8]) -> ffi::lua_Integer {
    let n = bytes.len();
    let mixed = (n as u32)
        ^ u32::from(bytes[0]) << 8
        ^ u32::from(bytes[n - 1]) << 16
        ^ u32::from(bytes[n / 2]) << 24
        ^ u32::from(bytes.get(1).copied().unwrap_or(0));
    let spread = mixed.wrapping_mul(0x27D4_EB2F) >> (32 - CACHE_SLOTS.trailing_zeros());
    ffi::lua_Integer::from(spread) + 1
}

fn len_hint(len: usize) -> c_int {
    c_int::try_from(len).unwrap_or(c_int::MAX)
}

/// Builds a value on the Lua stack from [`Visit`] calls: each complete value is pushed, then
/// stored into the table it belongs to (the enclosing array at its next index, or the
/// enclosing map under the key pushed before it); the outermost stays on the stack.
struct Build<'a> {
    state: *mut lua_State,
    /// The stack top where the value being built starts.
    base: c_int,
    /// The next index of each open array, or 0 for an open map; innermost last. Inline for
    /// the usual few levels: a message is built with a fresh `Build`, and a heap vector was an
    /// allocation per message.
    open: SmallVec<[ffi::lua_Integer; 8]>,
    /// Set when the stack could not grow: the rest of the visit is ignored and the value
    /// becomes `nil`.
    failed: bool,
    /// The stack index of the string cache, 0 for none.
    strings: c_int,
    /// A text already on the stack (the message's sender) and its absolute index: a string
    /// value equal to it is pushed as a copy of that Lua string.
    pid: Option<(&'a [u8], c_int)>,
}

impl Build<'_> {
    fn new<'a>(state: *mut lua_State, strings: c_int) -> Build<'a> {
        Build {
            state,
            base: 0,
            open: SmallVec::new(),
            failed: false,
            strings,
            pid: None,
        }
    }

    /// Pushes `bytes` as a Lua string; a short one is taken from the string cache if it is
    /// there (a slot chosen by a few of its bytes, checked against the whole text), and
    /// replaces the slot's string otherwise. Needs two free stack slots (the string and,
    /// while storing it, its copy), which [`STACK_MARGIN`] keeps.
    ///
    /// # Safety
    ///
    /// As for [`push_str`].
    unsafe fn push_text(&mut self, bytes: &[u8]) {
        if self.strings == 0 || bytes.is_empty() || bytes.len() > CACHED_LEN {
            push_str(self.state, bytes);
            return;
        }
        self.push_cached(bytes, cache_slot(bytes));
    }

    /// Pushes the text of `pid` as a Lua string, from the PID cache if it is there (the slot
    /// of its number, checked against the whole text: PIDs of other nodes or hosts share
    /// numbers), and replaces the slot's string otherwise. Needs two free stack slots.
    ///
    /// # Safety
    ///
    /// As for [`push_str`].
    unsafe fn push_pid(&mut self, pid: &Pid) {
        let bytes = pid.as_str().as_bytes();
        if self.strings == 0 {
            push_str(self.state, bytes);
            return;
        }
        // Below `PID_SLOTS`: fits in an `i64`.
        let slot =
            (pid.id() % PID_SLOTS) as ffi::lua_Integer + ffi::lua_Integer::from(CACHE_SLOTS) + 1;
        self.push_cached(bytes, slot);
    }

    /// Pushes `bytes` from the cache's `slot` if it holds them, else pushes them and stores
    /// the string there.
    ///
    /// # Safety
    ///
    /// As for [`push_str`]; `self.strings` is the cache and `slot` one of its array slots.
    unsafe fn push_cached(&mut self, bytes: &[u8], slot: ffi::lua_Integer) {
        if ffi::lua_rawgeti(self.state, self.strings, slot) == ffi::LUA_TSTRING
            && super::read::string_bytes(self.state, -1) == bytes
        {
            return;
        }
        ffi::lua_settop(self.state, -2);
        push_str(self.state, bytes);
        ffi::lua_pushvalue(self.state, -1);
        // An existing array slot: stores without allocating.
        ffi::lua_rawseti(self.state, self.strings, slot);
    }

    /// A value starts at the current stack top; makes room for it.
    fn start(&mut self) {
        // SAFETY: reads the stack top.
        self.base = unsafe { ffi::lua_gettop(self.state) };
        self.open.clear();
        self.failed = false;
        self.room(1);
    }

    /// Makes room for `slots` more values; `false` (and the build fails) if the stack cannot
    /// grow.
    fn room(&mut self, slots: c_int) -> bool {
        // SAFETY: `lua_checkstack` never raises; it reports failure.
        let grown = unsafe { ffi::lua_checkstack(self.state, slots + STACK_MARGIN) } != 0;
        self.failed |= !grown;
        grown
    }

    /// Pushes a payload object `{value}` with the payload metatable `meta`.
    ///
    /// # Safety
    ///
    /// As for [`push_str`].
    unsafe fn payload_object(&mut self, value: &Value, meta: Meta) {
        ffi::lua_createtable(self.state, 1, 0);
        self.start();
        value.visit(self);
        self.finish();
        ffi::lua_rawseti(self.state, -2, 1);
        meta.push(self.state);
        ffi::lua_setmetatable(self.state, -2);
    }

    /// Leaves exactly one value above where it started: the built one, or `nil` if the build
    /// failed (what it left half-built is popped; the slot kept by `STACK_MARGIN` holds the
    /// `nil`).
    fn finish(&mut self) {
        if self.failed {
            // SAFETY: shrinking the stack to where the value started never fails.
            unsafe {
                ffi::lua_settop(self.state, self.base);
                ffi::lua_pushnil(self.state);
            }
        }
        self.open.clear();
        self.failed = false;
    }

    /// Stores the value on top of the stack where it belongs.
    fn place(&mut self) {
        // SAFETY: the enclosing table is just below the value (array) or below its key (map).
        unsafe {
            match self.open.last_mut() {
                Some(next) if *next > 0 => {
                    ffi::lua_rawseti(self.state, -2, *next);
                    *next += 1;
                }
                Some(_) => ffi::lua_rawset(self.state, -3),
                None => {}
            }
        }
    }

    /// Pushes a scalar and places it. No stack check: [`start`](Build::start) made room
    /// for the value at the root, and each open table for a key and a value inside it.
    fn scalar(&mut self, push: impl FnOnce(*mut lua_State)) {
        if self.failed {
            return;
        }
        push(self.state);
        self.place();
    }

    fn open(&mut self, narr: usize, nrec: usize, next: ffi::lua_Integer) {
        // The table, and a key and a value inside it.
        if self.failed || !self.room(3) {
            return;
        }
        // SAFETY: `room` made space; the sizes are hints.
        unsafe { ffi::lua_createtable(self.state, len_hint(narr), len_hint(nrec)) };
        self.open.push(next);
    }

    fn close(&mut self) {
        if self.failed {
            return;
        }
        self.open.pop();
        self.place();
    }
}

impl Visit for Build<'_> {
    fn null(&mut self) {
        // SAFETY (all pushes): `scalar` made room for one value.
        self.scalar(|s| unsafe { ffi::lua_pushnil(s) });
    }

    fn bool(&mut self, value: bool) {
        self.scalar(|s| unsafe { ffi::lua_pushboolean(s, c_int::from(value)) });
    }

    fn int(&mut self, value: i64) {
        self.scalar(|s| unsafe { ffi::lua_pushinteger(s, value) });
    }

    fn float(&mut self, value: f64) {
        self.scalar(|s| unsafe { ffi::lua_pushnumber(s, value) });
    }

    fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        if self.failed {
            return;
        }
        match self.pid {
            // SAFETY: as in `scalar`; `index` holds the sender's text (see `push_message`).
            Some((pid, index)) if pid == value => unsafe { ffi::lua_pushvalue(self.state, index) },
            // SAFETY: as in `scalar`.
            _ => unsafe { self.push_text(value) },
        }
        self.place();
    }

    fn begin_array(&mut self, len: usize) {
        self.open(len, 0, 1);
    }

    fn end_array(&mut self) {
        self.close();
    }

    fn begin_map(&mut self, len: usize) {
        self.open(0, len, 0);
    }

    fn key(&mut self, key: &str) {
        if self.failed {
            return;
        }
        // SAFETY: the open map made room for its key and value.
        unsafe { self.push_text(key.as_bytes()) };
    }

    fn end_map(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use mlua::{Lua, LuaOptions, StdLib};
    use proptest::prelude::*;
    use wsrelay_process::{Map, Message, OpaqueValue, Pid, Value};

    use super::*;
    use crate::raw::set_limit;

    /// A state with a memory limit (so mlua protects every step) and the message metatables.
    fn state() -> Lua {
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING, LuaOptions::new()).unwrap();
        lua.set_memory_limit(64 << 20).unwrap();
        crate::modules::inbox::install(&lua).unwrap();
        lua
    }

    /// Both builders, and each result read back into a payload.
    fn both(lua: &Lua, v: &Value) -> (Value, Value) {
        set_limit(64 << 20);
        let raw = value(lua, v).unwrap();
        set_limit(0);
        let stepwise = crate::convert::to_lua_stepwise(lua, v).unwrap();
        let back = |x: &LuaValue| crate::convert::to_value(lua, x).unwrap();
        (back(&raw), back(&stepwise))
    }

    #[derive(Debug)]
    struct Wrapped(Value);

    impl OpaqueValue for Wrapped {
        fn to_value(&self) -> Value {
            self.0.clone()
        }
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e9f64..1e9).prop_map(Value::Float),
            "[a-z\u{e9}\u{1F600}]{0,12}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..12)
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-z]{1,6}", inner.clone()), 0..6)
                    .prop_map(|entries| Value::Map(entries.into_iter().collect())),
                inner.prop_map(|v| Value::Opaque(Arc::new(Wrapped(v)))),
            ]
        })
    }

    proptest! {
        #[test]
        fn raw_values_read_back_as_the_stepwise_ones(v in values()) {
            let lua = state();
            let (raw, stepwise) = both(&lua, &v);
            prop_assert_eq!(raw, stepwise);
        }
    }

    #[test]
    fn cached_strings_read_back_as_built() {
        // More short keys and values than the cache has slots: slots are taken over, texts
        // that share a slot must not be mixed up, and repeated builds hit the cache.
        let lua = state();
        let metas = lua.app_data_ref::<Metatables>().unwrap().handle();
        let mut payload = Map::new();
        for i in 0..400 {
            payload = payload.with(format!("k{i}"), format!("v{}", i % 37));
        }
        payload = payload
            .with("", "")
            .with("sixteen-bytes-ok", "seventeen-bytes-x");
        let msg = Message::new(None, "ws.message", Value::Map(payload));
        set_limit(64 << 20);
        for _ in 0..3 {
            let built = message(&lua, &metas, &msg).unwrap();
            let topic: String = built.get(1).unwrap();
            assert_eq!(topic, "ws.message");
            let data: Table = built.get(3).unwrap();
            for i in 0..400 {
                let v: String = data.get(format!("k{i}")).unwrap();
                assert_eq!(v, format!("v{}", i % 37));
            }
            assert_eq!(data.get::<String>("").unwrap(), "");
            assert_eq!(
                data.get::<String>("sixteen-bytes-ok").unwrap(),
                "seventeen-bytes-x"
            );
            assert_eq!(data.pairs::<LuaValue, LuaValue>().count(), 402);
        }
        set_limit(0);
    }

    #[test]
    fn pid_texts_read_back_as_sent() {
        // More senders than the PID cache has slots, with numbers that share slots and PIDs
        // of other hosts with the same numbers: every message carries its own sender's text,
        // in `from` and in the payload (where it is a copy of the same string).
        let lua = state();
        let metas = lua.app_data_ref::<Metatables>().unwrap().handle();
        let read = lua
            .load("local m = ... return m:from(), m:data().client_pid, m:data().other")
            .into_function()
            .unwrap();
        set_limit(64 << 20);
        for round in 0..3 {
            for i in 0..300u64 {
                let host = if i % 2 == 0 {
                    "app:gateway"
                } else {
                    "app:other"
                };
                let from = Pid::new("local", host, i % 150 + round);
                let payload = Map::new()
                    .with("client_pid", from.as_str())
                    .with("other", "{app:gateway|0x00001}");
                let msg = Message::new(Some(from.clone()), "ws.message", Value::Map(payload));
                let built = message(&lua, &metas, &msg).unwrap();
                let (sender, client_pid, other): (String, String, String) =
                    read.call(built).unwrap();
                assert_eq!(sender, from.as_str());
                assert_eq!(client_pid, from.as_str());
                assert_eq!(other, "{app:gateway|0x00001}");
            }
        }
        // Without a sender, nothing is reused.
        let payload = Map::new().with("client_pid", "{app:gateway|0x00007}");
        let msg = Message::new(None, "ws.message", Value::Map(payload));
        let built = message(&lua, &metas, &msg).unwrap();
        let (sender, client_pid): (Option<String>, String) = read.call(built).unwrap();
        assert_eq!(sender, None);
        assert_eq!(client_pid, "{app:gateway|0x00007}");
        set_limit(0);
    }

    #[test]
    fn raw_messages_read_like_the_safe_ones() {
        let lua = state();
        let metas = lua.app_data_ref::<Metatables>().unwrap().handle();
        let payload: Value = Map::new().with("type", "text").with("data", "hi").into();
        let msg = Message::new(
            Some(Pid::new("local", "app:gateway", 7)),
            "ws.message",
            payload,
        )
        .with_extra(vec![Value::from(1), Value::Null]);
        let read = lua
            .load(
                r#"local m = ...
                local extra = {}
                for i, p in ipairs(m:payloads()) do
                  if i > 1 then extra[#extra + 1] = tostring(p:data()) end
                end
                return { m:topic(), m:from(), m:payload():data().data, table.concat(extra, ","), m:data().type }"#,
            )
            .into_function()
            .unwrap();
        set_limit(64 << 20);
        let fast = message(&lua, &metas, &msg).unwrap();
        set_limit(0);
        let safe = safe_message(&lua, &metas, &msg).unwrap();
        let fast: Value = crate::convert::to_value(&lua, &read.call(fast).unwrap()).unwrap();
        let safe: Value = crate::convert::to_value(&lua, &read.call(safe).unwrap()).unwrap();
        assert_eq!(fast, safe);
        assert_eq!(
            fast,
            Value::Array(vec![
                "ws.message".into(),
                "{app:gateway|0x00007}".into(),
                "hi".into(),
                "1,nil".into(),
                "text".into(),
            ])
        );
    }
}
