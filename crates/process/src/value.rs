//! Message payloads.
//!
//! A [`Value`] is JSON-like (null, bool, integer, float, string, bytes, array, map) so it can
//! cross into Lua, JSON and, later, other nodes. [`Value::Opaque`] carries a Rust value between
//! Rust processes of one node without copying or converting it; it turns into a plain value
//! only when it has to leave Rust (see [`OpaqueValue::to_value`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A message payload.
#[derive(Clone, Default)]
pub enum Value {
    /// No value (`nil` in Lua, `null` in JSON).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// UTF-8 text.
    String(String),
    /// Raw bytes (a Lua string that is not UTF-8, a binary WebSocket frame).
    Bytes(Bytes),
    /// A sequence.
    Array(Vec<Value>),
    /// String keys to values, in insertion order.
    Map(Map),
    /// A Rust value passed by reference between Rust processes of one node.
    Opaque(Arc<dyn OpaqueValue>),
}

/// A Rust value that travels inside a [`Value`] without being copied.
///
/// Receivers written in Rust downcast it with [`Value::downcast_ref`]; receivers that need
/// plain data (Lua, JSON, another node) call [`OpaqueValue::to_value`].
pub trait OpaqueValue: Any + Send + Sync + fmt::Debug {
    /// The plain form of the value, used where it leaves Rust.
    fn to_value(&self) -> Value;

    /// About how many bytes the value holds, for inbox limits (high-water marks, a relay
    /// connection's outbound bytes). Values that carry a payload must count it, or a queue
    /// of them escapes every byte limit.
    fn size_hint(&self) -> usize {
        0
    }

    /// Walks the plain form of the value without building it: what [`to_value`] returns,
    /// piece by piece. Converters that build another representation anyway (a Lua table, a
    /// JSON document) use it to skip the intermediate [`Value`]. The default builds the plain
    /// form and walks that; payload types on hot paths override it.
    ///
    /// [`to_value`]: OpaqueValue::to_value
    fn visit(&self, visitor: &mut dyn Visit) {
        self.to_value().visit(visitor);
    }
}

/// Receives a value piece by piece, depth first (see [`Value::visit`]): a scalar is one call;
/// an array is `begin_array`, its items, `end_array`; a map is `begin_map`, then `key` and the
/// value of each entry, then `end_map`.
pub trait Visit {
    /// `Null`.
    fn null(&mut self);
    /// A boolean.
    fn bool(&mut self, value: bool);
    /// An integer.
    fn int(&mut self, value: i64);
    /// A float.
    fn float(&mut self, value: f64);
    /// UTF-8 text.
    fn str(&mut self, value: &str);
    /// Bytes that may not be UTF-8.
    fn bytes(&mut self, value: &[u8]);
    /// An array of `len` items follows.
    fn begin_array(&mut self, len: usize);
    /// The array is complete.
    fn end_array(&mut self);
    /// A map of `len` entries follows.
    fn begin_map(&mut self, len: usize);
    /// The key of the next entry; its value follows.
    fn key(&mut self, key: &str);
    /// The map is complete.
    fn end_map(&mut self);
}

/// A payload shared by reference: the messages of a group send all hold the same one, so a
/// send to ten thousand members converts its payload once and copies a pointer per member.
/// Receivers see the value inside ([`OpaqueValue::to_value`], [`OpaqueValue::visit`]).
#[derive(Debug)]
pub struct Shared(pub Value);

impl OpaqueValue for Shared {
    fn to_value(&self) -> Value {
        self.0.clone()
    }

    fn size_hint(&self) -> usize {
        fn size(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::Array(items) => items.iter().map(size).sum(),
                Value::Map(m) => m.iter().map(|(k, v)| k.len() + size(v)).sum(),
                Value::Opaque(o) => o.size_hint(),
                _ => 0,
            }
        }
        size(&self.0)
    }

    fn visit(&self, visitor: &mut dyn Visit) {
        self.0.visit(visitor);
    }
}

impl Value {
    /// The value as one that clones by reference: containers and text are wrapped in
    /// [`Shared`]; scalars, bytes and opaque values already clone cheaply.
    pub fn into_shared(self) -> Value {
        match self {
            Value::String(_) | Value::Array(_) | Value::Map(_) => {
                Value::Opaque(Arc::new(Shared(self)))
            }
            other => other,
        }
    }
}

/// Builds a [`Value`] from [`Visit`] calls: the inverse of [`Value::visit`]. Payload types
/// that override [`OpaqueValue::visit`] check it against their `to_value` with it.
///
/// # Examples
///
/// ```
/// use wsrelay_process::{Map, Value, ValueBuilder};
///
/// let value: Value = Map::new().with("a", 1).with("b", Value::Array(vec![true.into()])).into();
/// let mut builder = ValueBuilder::default();
/// value.visit(&mut builder);
/// assert_eq!(builder.finish(), value);
/// ```
#[derive(Debug, Default)]
pub struct ValueBuilder {
    /// Open arrays and maps, innermost last; a map's pending key with it.
    open: Vec<(Value, Option<String>)>,
    done: Option<Value>,
}

impl ValueBuilder {
    /// The value built (`Null` if nothing, or something incomplete, was visited).
    pub fn finish(self) -> Value {
        self.done.unwrap_or_default()
    }

    fn place(&mut self, value: Value) {
        match self.open.last_mut() {
            Some((Value::Array(items), _)) => items.push(value),
            Some((Value::Map(map), key)) => {
                map.insert(key.take().unwrap_or_default(), value);
            }
            _ => self.done = Some(value),
        }
    }
}

impl Visit for ValueBuilder {
    fn null(&mut self) {
        self.place(Value::Null);
    }
    fn bool(&mut self, value: bool) {
        self.place(Value::Bool(value));
    }
    fn int(&mut self, value: i64) {
        self.place(Value::Int(value));
    }
    fn float(&mut self, value: f64) {
        self.place(Value::Float(value));
    }
    fn str(&mut self, value: &str) {
        self.place(Value::String(value.to_owned()));
    }
    fn bytes(&mut self, value: &[u8]) {
        self.place(Value::Bytes(Bytes::copy_from_slice(value)));
    }
    fn begin_array(&mut self, len: usize) {
        self.open
            .push((Value::Array(Vec::with_capacity(len)), None));
    }
    fn end_array(&mut self) {
        if let Some((array, _)) = self.open.pop() {
            self.place(array);
        }
    }
    fn begin_map(&mut self, len: usize) {
        self.open.push((Value::Map(Map::with_capacity(len)), None));
    }
    fn key(&mut self, key: &str) {
        if let Some((_, pending)) = self.open.last_mut() {
            *pending = Some(key.to_owned());
        }
    }
    fn end_map(&mut self) {
        if let Some((map, _)) = self.open.pop() {
            self.place(map);
        }
    }
}

impl Value {
    /// Borrows the text of a `String` value (or of `Bytes` that are valid UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Borrows the bytes of a `String` or `Bytes` value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer value of an `Int`, or of a `Float` without fraction.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    /// Borrows the map of a `Map` value.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a key of a `Map` value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Whether the value is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Borrows the Rust value inside an `Opaque` value, if it has type `T`.
    pub fn downcast_ref<T: OpaqueValue>(&self) -> Option<&T> {
        match self {
            Value::Opaque(o) => {
                let any: &dyn Any = &**o;
                any.downcast_ref::<T>()
            }
            _ => None,
        }
    }

    /// Replaces every `Opaque` value, however deep, by its plain form.
    pub fn into_plain(self) -> Value {
        match self {
            Value::Opaque(o) => o.to_value().into_plain(),
            Value::Array(items) => Value::Array(items.into_iter().map(Value::into_plain).collect()),
            Value::Map(map) => {
                Value::Map(map.into_iter().map(|(k, v)| (k, v.into_plain())).collect())
            }
            other => other,
        }
    }

    /// Walks the value depth first (see [`Visit`]); opaque values walk their plain form
    /// ([`OpaqueValue::visit`]).
    pub fn visit(&self, visitor: &mut dyn Visit) {
        match self {
            Value::Null => visitor.null(),
            Value::Bool(b) => visitor.bool(*b),
            Value::Int(i) => visitor.int(*i),
            Value::Float(f) => visitor.float(*f),
            Value::String(s) => visitor.str(s),
            Value::Bytes(b) => visitor.bytes(b),
            Value::Array(items) => {
                visitor.begin_array(items.len());
                for item in items {
                    item.visit(visitor);
                }
                visitor.end_array();
            }
            Value::Map(map) => map.visit(visitor),
            Value::Opaque(o) => o.visit(visitor),
        }
    }

    /// Converts to JSON. Bytes become a string when they are UTF-8 and an array of numbers
    /// otherwise; non-finite floats become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => J::String(s.to_owned()),
                Err(_) => J::Array(b.iter().map(|&x| J::from(x)).collect()),
            },
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(map) => {
                J::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Opaque(o) => o.to_value().to_json(),
        }
    }

    /// Converts from JSON.
    pub fn from_json(json: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s),
            J::Array(items) => Value::Array(items.into_iter().map(Value::from_json).collect()),
            J::Object(map) => Value::Map(
                map.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            Value::Array(items) => f.debug_list().entries(items).finish(),
            Value::Map(map) => f.debug_map().entries(map.iter()).finish(),
            Value::Opaque(o) => write!(f, "opaque({o:?})"),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => *a as f64 == *b,
            (Value::String(_) | Value::Bytes(_), Value::String(_) | Value::Bytes(_)) => {
                self.as_bytes() == other.as_bytes()
            }
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            (Value::Opaque(a), Value::Opaque(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v as $as)
            }
        })*
    };
}

from_scalar!(bool => Bool as bool, i32 => Int as i64, i64 => Int as i64, u32 => Int as i64, f64 => Float as f64);

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}

impl From<Bytes> for Value {
    fn from(v: Bytes) -> Value {
        Value::Bytes(v)
    }
}

impl From<Map> for Value {
    fn from(v: Map) -> Value {
        Value::Map(v)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::Array(v)
    }
}

impl From<crate::Pid> for Value {
    fn from(v: crate::Pid) -> Value {
        Value::String(v.as_str().to_owned())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// String keys to values, kept in insertion order.
///
/// Payload maps are small (a handful of keys), so a vector beats a tree or a hash map.
#[derive(Clone, Default, PartialEq)]
pub struct Map(Vec<(String, Value)>);

impl Map {
    /// Walks the map as a [`Value::Map`] (see [`Visit`]).
    pub fn visit(&self, visitor: &mut dyn Visit) {
        visitor.begin_map(self.0.len());
        for (key, value) in &self.0 {
            visitor.key(key);
            value.visit(visitor);
        }
        visitor.end_map();
    }

    /// An empty map.
    pub fn new() -> Map {
        Map(Vec::new())
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Map {
        Map(Vec::with_capacity(n))
    }

    /// Sets `key` to `value`, replacing an existing entry; returns `self` for chaining.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Map {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Collects entries as [`Map::insert`] would (a repeated key keeps its first place and takes
/// the last value), in linear time: collecting a large table (a Lua table with many keys)
/// must not cost a scan of the map per key.
/// Up to this many entries, collecting a [`Map`] finds repeated keys by scanning.
const SCAN_KEYS: usize = 16;

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Map {
    /// A repeated key keeps its first place and takes the last value. Small maps (the usual
    /// payload) look keys up by scanning; past `SCAN_KEYS` entries an index makes it linear.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Map {
        let iter = iter.into_iter();
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(iter.size_hint().0);
        let mut index: Option<std::collections::HashMap<String, usize>> = None;
        for (k, v) in iter {
            let (key, value) = (k.into(), v.into());
            let found = match &index {
                Some(index) => index.get(&key).copied(),
                None => entries.iter().position(|(k, _)| *k == key),
            };
            if let Some(at) = found {
                entries[at].1 = value;
                continue;
            }
            if let Some(index) = &mut index {
                index.insert(key.clone(), entries.len());
            }
            entries.push((key, value));
            if index.is_none() && entries.len() > SCAN_KEYS {
                index = Some(
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect(),
                );
            }
        }
        Map(entries)
    }
}

impl From<Vec<(String, Value)>> for Map {
    /// As [`collect`](FromIterator::from_iter) (a repeated key keeps its first place and
    /// takes the last value), but a small vector without repeated keys becomes the map as it
    /// is: a payload read from Lua is such a vector, and copying it into a new one cost an
    /// allocation per message.
    fn from(entries: Vec<(String, Value)>) -> Map {
        let distinct = entries.len() <= SCAN_KEYS
            && entries
                .iter()
                .enumerate()
                .all(|(i, (key, _))| entries[..i].iter().all(|(k, _)| k != key));
        if distinct {
            return Map(entries);
        }
        entries.into_iter().collect()
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collecting_keeps_the_first_place_and_the_last_value_of_a_key() {
        let map: Map = [("a", 1), ("b", 2), ("a", 3)].into_iter().collect();
        assert_eq!(
            map.iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect::<Vec<_>>(),
            [("a", Value::Int(3)), ("b", Value::Int(2))]
        );
        // Linear: 200,000 distinct keys are collected without a scan per key.
        let big: Map = (0..200_000).map(|i| (i.to_string(), i)).collect();
        assert_eq!(big.len(), 200_000);
    }

    #[test]
    fn a_vector_becomes_a_map_as_collecting_makes_it() {
        let entries = |pairs: &[(&str, i64)]| -> Vec<(String, Value)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Int(*v)))
                .collect()
        };
        for pairs in [
            &[][..],
            &[("a", 1), ("b", 2)],
            &[("a", 1), ("b", 2), ("a", 3)],
            &[("b", 1), ("b", 2)],
        ] {
            let collected: Map = entries(pairs).into_iter().collect();
            assert_eq!(Map::from(entries(pairs)), collected);
        }
        // Past the scanned size, repeated keys are still merged.
        let mut many: Vec<(String, Value)> =
            (0..40).map(|i| (i.to_string(), Value::Int(i))).collect();
        many.push(("7".to_owned(), Value::Int(-1)));
        let map = Map::from(many);
        assert_eq!(map.len(), 40);
        assert_eq!(map.get("7"), Some(&Value::Int(-1)));
    }

    #[derive(Debug)]
    struct Frame(&'static str);

    impl OpaqueValue for Frame {
        fn to_value(&self) -> Value {
            Map::new().with("data", self.0).into()
        }
    }

    #[test]
    fn opaque_downcasts_and_flattens() {
        let v = Value::Opaque(Arc::new(Frame("hi")));
        assert_eq!(v.downcast_ref::<Frame>().unwrap().0, "hi");
        assert_eq!(v.clone().into_plain().get("data"), Some(&Value::from("hi")));
        assert_eq!(v.to_json(), serde_json::json!({"data": "hi"}));
    }

    #[test]
    fn json_round_trip_keeps_order_and_numbers() {
        let json = serde_json::json!({"b": 1, "a": [1.5, null, true, "x"]});
        let v = Value::from_json(json.clone());
        assert_eq!(v.to_json(), json);
        let keys: Vec<_> = v.as_map().unwrap().iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn map_insert_replaces() {
        let mut m = Map::new().with("a", 1);
        assert_eq!(m.insert("a", 2), Some(Value::Int(1)));
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove("a"), Some(Value::Int(2)));
        assert!(m.is_empty());
    }
}
