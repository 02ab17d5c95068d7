//! Lua to Rust: what a process hands over (message payloads, spawn arguments, return values,
//! JSON) read straight from the Lua stack.
//!
//! The rules are those of [`crate::convert`] (its module docs have the table): a table with
//! keys `1..n` only is an array, any other a map; a table met twice is converted once and
//! copied after; a cycle, nesting past [`MAX_DEPTH`] or a value over the budget is an error.
//! Reading uses only raw accessors, which never raise (see the module docs of `raw`).

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_int, c_void, CStr};

use mlua::ffi::{self, lua_State};
use mlua::{Lua, MultiValue, Value as LuaValue};
use smallvec::SmallVec;

use wsrelay_process::{Field, Unbuilt, Visit};

use crate::budget::{ConvertError, NODE_COST};

/// Tables nested deeper than this are rejected.
const MAX_DEPTH: usize = 100;

/// A Lua value that is not a table, as a [`Sink`] receives it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    /// `nil`.
    Nil,
    /// `json.null` and mlua's null light userdata.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string's bytes (UTF-8 or not).
    Str(&'a [u8]),
    /// A value with no payload form: its Lua type name.
    Other(&'static str),
}

/// Builds the converted form of scalars, arrays and maps (a payload `Value`, JSON).
pub(crate) trait Sink {
    type Out: Clone;
    fn scalar(&self, value: Scalar<'_>) -> Result<Self::Out, String>;
    fn array(&self, items: Vec<Self::Out>) -> Self::Out;
    fn map(&self, entries: Vec<(String, Self::Out)>) -> Self::Out;
}

/// Converts `values` within one budget of `limit` bytes.
pub(crate) fn read<S: Sink>(
    lua: &Lua,
    values: &[LuaValue],
    sink: S,
    limit: usize,
) -> Result<Vec<S::Out>, ConvertError> {
    let mut walker = Walker::new(sink, limit);
    let mut out = None;
    let args: MultiValue = values.iter().cloned().collect();
    // SAFETY: the closure only reads (see the module docs); the values are its arguments,
    // the only slots of its stack.
    let called = unsafe {
        lua.exec_raw::<()>(args, |state| {
            let count = ffi::lua_gettop(state);
            out = Some(
                (1..=count)
                    .map(|i| walker.walk(state, i).map(|(v, _)| v))
                    .collect(),
            );
            ffi::lua_settop(state, 0);
        })
    };
    match (called, out) {
        (Ok(()), Some(result)) => result,
        (Err(e), _) => Err(ConvertError::Unsupported(e.to_string())),
        (Ok(()), None) => Err(ConvertError::Unsupported(
            "conversion did not run".to_owned(),
        )),
    }
}

/// One conversion: the budget left, the tables on the current path (cycles), the tables met
/// once, and the kept conversions of tables met twice.
pub(crate) struct Walker<S: Sink> {
    sink: S,
    limit: usize,
    left: usize,
    /// Inline for the usual few levels: a conversion per message should not allocate for them.
    path: SmallVec<[*const c_void; 8]>,
    seen: Seen,
    shared: HashMap<*const c_void, (S::Out, usize)>,
}

/// The tables met so far: a short list for the usual payload of a few tables (a hash set
/// per message cost more than the rest of the conversion), a set past [`Seen::LIST`].
#[derive(Default)]
struct Seen {
    list: SmallVec<[*const c_void; Seen::LIST]>,
    set: HashSet<*const c_void>,
}

impl Seen {
    const LIST: usize = 16;

    /// Adds `id`; whether it was there already.
    fn insert(&mut self, id: *const c_void) -> bool {
        if self.set.is_empty() {
            if self.list.contains(&id) {
                return true;
            }
            if self.list.len() < Seen::LIST {
                self.list.push(id);
                return false;
            }
            self.set.extend(self.list.drain(..));
        }
        !self.set.insert(id)
    }
}

impl<S: Sink> Walker<S> {
    pub(crate) fn new(sink: S, limit: usize) -> Walker<S> {
        Walker {
            sink,
            limit,
            left: limit,
            path: SmallVec::new(),
            seen: Seen::default(),
            shared: HashMap::new(),
        }
    }

    /// Spends `cost` of the budget.
    fn charge(&mut self, cost: usize) -> Result<(), ConvertError> {
        self.left = self.left.checked_sub(cost).ok_or_else(|| {
            ConvertError::TooBig(format!(
                "value too large: over {} bytes (max_value_size; each value counts {NODE_COST} bytes plus its text, a shared table each time it appears)",
                self.limit
            ))
        })?;
        Ok(())
    }

    /// The converted value at stack `index` (absolute) and what it cost.
    ///
    /// # Safety
    ///
    /// `state` is a valid Lua state and `index` a valid absolute stack index.
    pub(crate) unsafe fn walk(
        &mut self,
        state: *mut lua_State,
        index: c_int,
    ) -> Result<(S::Out, usize), ConvertError> {
        if ffi::lua_type(state, index) == ffi::LUA_TTABLE {
            return self.table(state, index);
        }
        let scalar = scalar(state, index);
        let cost = NODE_COST
            + match scalar {
                Scalar::Str(bytes) => bytes.len(),
                _ => 0,
            };
        self.charge(cost)?;
        Ok((self.sink.scalar(scalar)?, cost))
    }

    /// # Safety
    ///
    /// As [`walk`](Walker::walk), with a table at `index`.
    unsafe fn table(
        &mut self,
        state: *mut lua_State,
        index: c_int,
    ) -> Result<(S::Out, usize), ConvertError> {
        let id = ffi::lua_topointer(state, index);
        if self.path.contains(&id) {
            return Err(ConvertError::TooBig(
                "cannot convert a table that contains itself (a cycle)".to_owned(),
            ));
        }
        if let Some((out, cost)) = self.shared.get(&id) {
            let (out, cost) = (out.clone(), *cost);
            self.charge(cost)?;
            return Ok((out, cost));
        }
        if self.path.len() >= MAX_DEPTH || ffi::lua_checkstack(state, 4) == 0 {
            return Err(ConvertError::TooBig(format!(
                "table nested too deeply (over {MAX_DEPTH} levels)"
            )));
        }
        let met_before = self.seen.insert(id);
        self.charge(NODE_COST)?;
        self.path.push(id);
        let top = ffi::lua_gettop(state);
        let converted = self.table_contents(state, index);
        // Whatever the contents left on the stack (a key and a value on an early error).
        ffi::lua_settop(state, top);
        self.path.pop();
        let (out, cost) = converted?;
        let cost = cost + NODE_COST;
        if met_before {
            self.shared.insert(id, (out.clone(), cost));
        }
        Ok((out, cost))
    }

    /// The array or map of the table at `index`, and what its contents cost.
    ///
    /// # Safety
    ///
    /// As [`table`](Walker::table), with room for four more stack slots.
    unsafe fn table_contents(
        &mut self,
        state: *mut lua_State,
        index: c_int,
    ) -> Result<(S::Out, usize), ConvertError> {
        if let Some(n) = array_len(state, index) {
            let mut items = Vec::with_capacity(n);
            let mut cost = 0;
            for i in 1..=n {
                ffi::lua_rawgeti(state, index, i as ffi::lua_Integer);
                let item = self.walk(state, ffi::lua_gettop(state));
                ffi::lua_settop(state, -2);
                let (item, c) = item?;
                items.push(item);
                cost += c;
            }
            return Ok((self.sink.array(items), cost));
        }
        // Room for a small record at once (`{type = ..., data = ...}` is the usual payload):
        // growing from empty reallocates on the way.
        let mut entries = Vec::with_capacity(4);
        let mut cost = 0;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, index) != 0 {
            let key = key_text(state, -2)?;
            self.charge(key.len())?;
            let (value, c) = self.walk(state, ffi::lua_gettop(state))?;
            cost += key.len() + c;
            entries.push((key, value));
            // Keep the key for the next step.
            ffi::lua_settop(state, -2);
        }
        Ok((self.sink.map(entries), cost))
    }
}

/// A table read as a record of a few string fields without building its value, for
/// `process.send` to offer it to a shortcut or a transport first (`wsrelay_process::Unbuilt`).
/// Only a table that would convert to a map of at most [`Fields::MAX`] fields with UTF-8
/// keys and scalar values, within the budget, is readable; every field of any other is
/// [`Field::Other`], and the sender builds the value (which reports what is wrong with it).
///
/// The table is read at the first look, not before: most sends go to a receiver that looks
/// at nothing (a Lua process), and then the walk that builds the payload is the only one.
pub(crate) struct Fields<'a> {
    /// The state, the table's index and the budget; `None` if nothing is readable.
    table: Option<(*mut lua_State, c_int, usize)>,
    record: OnceCell<Record<'a>>,
}

/// What [`Fields`] read.
struct Record<'a> {
    entries: SmallVec<[(&'a [u8], Scalar<'a>); Fields::MAX]>,
    readable: bool,
}

impl<'a> Fields<'a> {
    /// The most fields a readable table has: a `ws.send` has two.
    const MAX: usize = 4;

    /// Nothing readable: the payload is not a table, or there are several.
    pub(crate) fn none() -> Fields<'a> {
        Fields {
            table: None,
            record: OnceCell::new(),
        }
    }

    /// The fields of the table at `index` (absolute), as [`Walker`] would charge them
    /// against `limit`, read when first looked at.
    ///
    /// # Safety
    ///
    /// `state` is valid, with a table at `index` and room for two more stack slots, for as
    /// long as the fields are: the table stays on the stack, unchanged, and nothing runs or
    /// is allocated in the state (no collection can run). The fields borrow its strings.
    pub(crate) unsafe fn of(state: *mut lua_State, index: c_int, limit: usize) -> Fields<'a> {
        Fields {
            table: Some((state, index, limit)),
            record: OnceCell::new(),
        }
    }

    /// The record, read at the first call.
    fn record(&self) -> Option<&Record<'a>> {
        let (state, index, limit) = self.table?;
        // SAFETY: `of`'s contract holds while `self` lives.
        let record = self
            .record
            .get_or_init(|| unsafe { Record::read(state, index, limit) });
        record.readable.then_some(record)
    }
}

impl<'a> Record<'a> {
    /// # Safety
    ///
    /// As [`Fields::of`].
    unsafe fn read(state: *mut lua_State, index: c_int, limit: usize) -> Record<'a> {
        let top = ffi::lua_gettop(state);
        let mut record = Record {
            entries: SmallVec::new(),
            readable: true,
        };
        let mut cost = NODE_COST;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, index) != 0 {
            let value = match ffi::lua_type(state, -1) {
                ffi::LUA_TTABLE => Scalar::Other("table"),
                _ => scalar(state, -1),
            };
            let key = (ffi::lua_type(state, -2) == ffi::LUA_TSTRING)
                .then(|| string_bytes(state, -2))
                .filter(|key| utf8(key).is_some());
            let (Some(key), false, true) = (
                key,
                matches!(value, Scalar::Other(_)),
                record.entries.len() < Fields::MAX,
            ) else {
                record.readable = false;
                break;
            };
            cost += key.len()
                + NODE_COST
                + match value {
                    Scalar::Str(bytes) => bytes.len(),
                    _ => 0,
                };
            record.entries.push((key, value));
            ffi::lua_settop(state, -2);
        }
        ffi::lua_settop(state, top);
        record.readable &= cost <= limit;
        record
    }
}

impl Unbuilt for Fields<'_> {
    fn field(&self, key: &str) -> Field<'_> {
        let Some(record) = self.record() else {
            return Field::Other;
        };
        match record.entries.iter().find(|(k, _)| *k == key.as_bytes()) {
            None => Field::Missing,
            Some((_, Scalar::Str(bytes))) => match utf8(bytes) {
                Some(text) => Field::Text(text),
                None => Field::Bytes(bytes),
            },
            Some(_) => Field::Other,
        }
    }

    fn visit(&self, v: &mut dyn Visit) -> bool {
        let Some(record) = self.record() else {
            return false;
        };
        v.begin_map(record.entries.len());
        for (key, value) in &record.entries {
            // Checked to be UTF-8 when read.
            v.key(utf8(key).unwrap_or_default());
            match *value {
                Scalar::Bool(b) => v.bool(b),
                Scalar::Int(i) => v.int(i),
                Scalar::Float(f) => v.float(f),
                Scalar::Str(bytes) => match utf8(bytes) {
                    Some(text) => v.str(text),
                    None => v.bytes(bytes),
                },
                // `Other` makes the table unreadable; `nil` is no field.
                Scalar::Nil | Scalar::Null | Scalar::Other(_) => v.null(),
            }
        }
        v.end_map();
        true
    }
}

/// The scalar at `index` (not a table).
///
/// # Safety
///
/// `state` is valid and `index` a valid index; the returned bytes live as long as the value
/// stays reachable and nothing is allocated (no collection can run).
pub(crate) unsafe fn scalar<'a>(state: *mut lua_State, index: c_int) -> Scalar<'a> {
    match ffi::lua_type(state, index) {
        ffi::LUA_TNIL => Scalar::Nil,
        ffi::LUA_TBOOLEAN => Scalar::Bool(ffi::lua_toboolean(state, index) != 0),
        ffi::LUA_TNUMBER if ffi::lua_isinteger(state, index) != 0 => {
            Scalar::Int(ffi::lua_tointegerx(state, index, std::ptr::null_mut()))
        }
        ffi::LUA_TNUMBER => Scalar::Float(ffi::lua_tonumberx(state, index, std::ptr::null_mut())),
        ffi::LUA_TSTRING => Scalar::Str(string_bytes(state, index)),
        ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(state, index).is_null() => Scalar::Null,
        other => Scalar::Other(type_name(state, other)),
    }
}

/// The bytes of the string at `index`.
///
/// # Safety
///
/// As [`scalar`], with a string at `index` (`lua_tolstring` then converts nothing).
pub(crate) unsafe fn string_bytes<'a>(state: *mut lua_State, index: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let ptr = ffi::lua_tolstring(state, index, &mut len);
    if ptr.is_null() {
        return &[];
    }
    std::slice::from_raw_parts(ptr as *const u8, len)
}

/// The Lua name of type `tag`.
///
/// # Safety
///
/// `state` is valid.
pub(crate) unsafe fn type_name(state: *mut lua_State, tag: c_int) -> &'static str {
    let name = ffi::lua_typename(state, tag);
    if name.is_null() {
        return "value";
    }
    // Type names are static C strings of the Lua library.
    CStr::from_ptr(name).to_str().unwrap_or("value")
}

/// The length of the table at `index` if it is a sequence `1..n` with no other keys.
///
/// # Safety
///
/// As [`Walker::table_contents`].
unsafe fn array_len(state: *mut lua_State, index: c_int) -> Option<usize> {
    let n = ffi::lua_rawlen(state, index);
    if n == 0 {
        return None;
    }
    let mut count = 0usize;
    let mut sequence = true;
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, index) != 0 {
        let in_range = ffi::lua_type(state, -2) == ffi::LUA_TNUMBER
            && ffi::lua_isinteger(state, -2) != 0
            && (1..=n as i64).contains(&ffi::lua_tointegerx(state, -2, std::ptr::null_mut()));
        ffi::lua_settop(state, -2);
        if !in_range {
            sequence = false;
            ffi::lua_settop(state, -2);
            break;
        }
        count += 1;
    }
    (sequence && count == n).then_some(n)
}

/// `bytes` as text if it is UTF-8: [`std::str::from_utf8`] with a shortcut for ASCII, which
/// the short strings of a message (keys, `"text"`, topics, PIDs) are, and for which
/// `is_ascii` costs a fraction of the general check.
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// A table key as object key text.
///
/// # Safety
///
/// As [`scalar`].
unsafe fn key_text(state: *mut lua_State, index: c_int) -> Result<String, ConvertError> {
    match scalar(state, index) {
        // UTF-8 checked first: `from_utf8_lossy` walks the text chunk by chunk, slower for
        // the usual valid key.
        Scalar::Str(bytes) => Ok(match utf8(bytes) {
            Some(text) => text.to_owned(),
            None => String::from_utf8_lossy(bytes).into_owned(),
        }),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(f) => Ok(f.to_string()),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Null => Err(ConvertError::Unsupported(
            "cannot use a lightuserdata as an object key".to_owned(),
        )),
        Scalar::Nil => Err(ConvertError::Unsupported(
            "cannot use a nil as an object key".to_owned(),
        )),
        Scalar::Other(name) => Err(ConvertError::Unsupported(format!(
            "cannot use a {name} as an object key"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};
    use proptest::prelude::*;
    use wsrelay_process::Value;

    use crate::convert::{to_lua_stepwise, to_value, ValueBuild};

    /// The ASCII shortcut agrees with the general check, on ASCII, on other UTF-8 and on
    /// bytes that are not UTF-8 (an ASCII prefix included).
    #[test]
    fn utf8_agrees_with_from_utf8() {
        let cases: [&[u8]; 7] = [
            b"",
            b"type",
            b"{app:gw|0x00001}",
            "h\u{e9}llo".as_bytes(),
            b"data\xff",
            b"\xc3",
            b"a long ascii prefix before a bad byte: \x80",
        ];
        for bytes in cases {
            assert_eq!(
                super::utf8(bytes),
                std::str::from_utf8(bytes).ok(),
                "{bytes:?}"
            );
        }
    }

    /// A field as a test compares it.
    #[derive(Debug, PartialEq)]
    enum Owned {
        Missing,
        Text(String),
        Bytes(Vec<u8>),
        Other,
    }

    /// A record read without building it says of each field what its built value says. It
    /// is readable exactly when it is a map of at most four scalar fields with text keys
    /// within the budget (and then it also builds); an unreadable one says `Other` of every
    /// field, and the sender builds it.
    #[test]
    fn fields_of_a_record_agree_with_its_built_value() {
        use wsrelay_process::{Field, Unbuilt};
        const LIMIT: usize = 120;
        let lua = Lua::new();
        let cases = [
            ("{type = 'text', data = 'hi'}", true),
            ("{data = 'caf\u{e9}', type = 'binary'}", true),
            (r"{type = 'binary', data = '\255\0'}", true),
            ("{}", true),
            ("{type = 7, data = 'x', n = true, f = 1.5}", true),
            ("{data = 'x', n = json_null}", true),
            ("{a = 1, b = 2, c = 3, d = 4, data = 'x'}", false),
            ("{data = 'x', nested = {}}", false),
            ("{data = 'x', [1] = 'y'}", false),
            (r"{data = 'x', ['\255'] = 'y'}", false),
            ("{data = 'x', f = print}", false),
            // The budget: 16 for the table, then 4 + 16 + 84 for `data`.
            ("{data = string.rep('x', 84)}", true),
            ("{data = string.rep('x', 85)}", false),
        ];
        lua.globals()
            .set(
                "json_null",
                LuaValue::LightUserData(mlua::LightUserData(std::ptr::null_mut())),
            )
            .unwrap();
        for (code, readable) in cases {
            let table: LuaValue = lua.load(format!("return {code}")).eval().unwrap();
            let built = super::read(&lua, std::slice::from_ref(&table), ValueBuild, LIMIT)
                .map(|mut v| v.pop().unwrap());
            assert!(!readable || built.is_ok(), "{code}: readable, so it builds");
            if code.contains("85") {
                assert!(built.is_err(), "over the budget either way");
            }
            let mut seen = Vec::new();
            // SAFETY: the closure only reads; the table is its one argument (slot 1).
            unsafe {
                lua.exec_raw::<()>(table, |state| {
                    let fields = super::Fields::of(state, 1, LIMIT);
                    // Shown whole, it is what builds.
                    let mut shown = wsrelay_process::ValueBuilder::default();
                    let visited = fields.visit(&mut shown);
                    assert_eq!(visited, readable, "{code}");
                    if readable {
                        assert_eq!(Some(&shown.finish()), built.as_ref().ok(), "{code}");
                    }
                    for key in ["type", "data", "n"] {
                        seen.push(match fields.field(key) {
                            Field::Missing => Owned::Missing,
                            Field::Text(t) => Owned::Text(t.to_owned()),
                            Field::Bytes(b) => Owned::Bytes(b.to_vec()),
                            Field::Other => Owned::Other,
                        });
                    }
                })
                .unwrap();
            }
            let expected: Vec<Owned> = ["type", "data", "n"]
                .iter()
                .map(
                    |key| match (readable, built.as_ref().ok().map(|v| v.get(key))) {
                        (false, _) => Owned::Other,
                        (true, Some(None)) => Owned::Missing,
                        (true, Some(Some(Value::String(t)))) => Owned::Text(t.clone()),
                        (true, Some(Some(Value::Bytes(b)))) => Owned::Bytes(b.to_vec()),
                        (true, _) => Owned::Other,
                    },
                )
                .collect();
            assert_eq!(seen, expected, "{code}");
        }
    }

    /// Values whose Lua form reads back as the same value: no `Null` inside containers (a
    /// `nil` field vanishes), arrays not empty (`{}` reads as a map), bytes never UTF-8.
    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e9f64..1e9)
                .prop_filter("fraction", |f| f.fract() != 0.0)
                .prop_map(Value::Float),
            "[a-z\u{e9}\u{1F600}]{0,12}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 1..12)
                .prop_filter("not UTF-8", |b| std::str::from_utf8(b).is_err())
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|entries| Value::Map(entries.into_iter().collect())),
            ]
        })
    }

    /// Maps with their keys sorted, at every level (Lua tables have no order).
    fn sorted(v: Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            Value::Map(map) => {
                let mut entries: Vec<_> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Map(entries.into_iter().collect())
            }
            other => other,
        }
    }

    proptest! {
        #[test]
        fn lua_values_read_back_as_the_values_they_were_built_from(v in values()) {
            let lua = Lua::new_with(StdLib::TABLE, LuaOptions::new()).unwrap();
            lua.set_memory_limit(64 << 20).unwrap();
            let built = to_lua_stepwise(&lua, &v).unwrap();
            prop_assert_eq!(sorted(to_value(&lua, &built).unwrap()), sorted(v));
        }
    }
}
