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

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Map {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
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
