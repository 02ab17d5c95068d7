//! Shared pieces of the wsrelay fuzz targets: a process [`Value`] built from fuzz input.
//!
//! Values reach the relay from Lua tables, JSON and Rust senders; the generator below covers
//! every variant, nests up to [`MAX_DEPTH`] levels (Lua and JSON bound depth before a value
//! gets this far), and prefers the keys the relay reads so the fuzzer reaches the interesting
//! branches quickly.

use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use wsrelay_process::{Map, Value};
use wsrelay_relay::Outgoing;

/// How deep a generated value nests.
pub const MAX_DEPTH: usize = 6;

/// Keys the relay's payload readers look at (docs/spec.md §4, §7).
const KEYS: &[&str] = &[
    "target_pid",
    "message_topic",
    "heartbeat_interval",
    "metadata",
    "type",
    "data",
    "code",
    "reason",
    "topic",
];

/// Strings that mean something to the relay's payload readers.
const WORDS: &[&str] = &[
    "text",
    "binary",
    "{app:processes|0x00001}",
    "{n1@app:gateway|0x1f0000}",
    "hub",
    "ws.message",
    "@reserved",
    "",
    " ",
    "30s",
    "1m30s",
    "500ms",
    "0s",
    "-1s",
    "9999999999999999999h",
];

/// A [`Value`] generated from fuzz input.
#[derive(Debug)]
pub struct FuzzValue(pub Value);

impl<'a> Arbitrary<'a> for FuzzValue {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        value(u, 0).map(FuzzValue)
    }
}

/// A map that is likely to hold the relay's keys.
#[derive(Debug)]
pub struct FuzzMap(pub Value);

impl<'a> Arbitrary<'a> for FuzzMap {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        map(u, 0).map(|m| FuzzMap(Value::Map(m)))
    }
}

fn string(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 2)? {
        Ok((*u.choose(WORDS)?).to_owned())
    } else {
        String::arbitrary(u)
    }
}

fn key(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok((*u.choose(KEYS)?).to_owned())
    } else {
        String::arbitrary(u)
    }
}

fn map(u: &mut Unstructured<'_>, depth: usize) -> Result<Map> {
    let mut map = Map::new();
    let len = u.int_in_range(0..=6)?;
    for _ in 0..len {
        let k = key(u)?;
        let v = value(u, depth + 1)?;
        map.insert(k, v);
    }
    Ok(map)
}

fn value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let leaf_only = depth >= MAX_DEPTH;
    let choice = u.int_in_range(0..=if leaf_only { 7 } else { 10 })?;
    Ok(match choice {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => Value::Int(i64::arbitrary(u)?),
        3 => Value::Int(i64::from(u.int_in_range(0u16..=5000)?)),
        4 => Value::Float(f64::arbitrary(u)?),
        5 => Value::String(string(u)?),
        6 => Value::Bytes(bytes::Bytes::from(Vec::<u8>::arbitrary(u)?)),
        7 => {
            let data = String::arbitrary(u)?;
            if bool::arbitrary(u)? {
                Value::Opaque(Arc::new(Outgoing::text(data)))
            } else {
                Value::Opaque(Arc::new(Outgoing::binary(data.into_bytes())))
            }
        }
        8 => {
            let len = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(value(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => Value::Map(map(u, depth)?),
    })
}
