//! The `store` module: key-value stores of the `store.memory` kind (Wippy's `store`).
//!
//! `store.get(id)` → a store handle; its methods `get`, `set`, `has`, `delete`, `entry`,
//! `list`, `put`, `info` and `release` work on one [`MemoryStore`] that every process of the
//! engine shares (one map behind a mutex: a store is for tickets, sessions and nonces, not a
//! hot path, and one lock makes `put`'s conditions atomic across shards).
//!
//! Stores are registered on the engine by id ([`crate::LuaEngine::register_memory_store`]).
//! Keys are text of 1..[`MAX_KEY`] bytes; values are any value a message can carry (within
//! `max_value_size`) and come back as copies. Every write gives the key a new version (one
//! counter per store), which `put{if_version = v}` checks.
//!
//! Expiry: an entry whose TTL passed is missing for every read (`get` gives NOT_FOUND, `has`
//! false, `list` skips it) at once. Its memory is reclaimed by a sweep that runs every
//! [`SWEEP_EVERY`] writes and whenever the store is full, so expired entries cannot hold
//! `max_size` slots against new ones. A store holds at most `max_size` live entries; a write
//! of a new key past that is UNAVAILABLE (retryable: entries expire or get deleted).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};
use wsrelay_process::Value;

use super::errors::{Kind, WippyError};
use super::{text_arg, wippy_function, WippyFail};
use crate::convert;

/// The longest key, in bytes.
pub(crate) const MAX_KEY: usize = 1024;
/// The default `max_size` (Wippy's).
pub const DEFAULT_MAX_SIZE: usize = 10_000;
/// Writes between two sweeps of expired entries.
pub(crate) const SWEEP_EVERY: u64 = 1024;
/// The most items one `list` returns (and its default limit).
pub(crate) const MAX_LIST: usize = 1000;
/// The default `limit` of `list`.
pub(crate) const DEFAULT_LIST: usize = 100;
/// The most stores one engine holds (ids come from the config, not from Lua; a bound all
/// the same, since each is a map).
pub(crate) const MAX_STORES: usize = 1024;
/// The longest TTL, in seconds (about ten years): an `Instant` past the clock's range would
/// panic on addition.
const MAX_TTL_S: f64 = 315_360_000.0;

/// One entry.
#[derive(Debug, Clone)]
struct Item {
    value: Value,
    version: u64,
    expires: Option<Instant>,
}

impl Item {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
struct Inner {
    items: BTreeMap<String, Item>,
    version: u64,
    writes: u64,
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        self.items.retain(|_, item| item.live(now));
    }

    /// Counts a write and sweeps every [`SWEEP_EVERY`] of them.
    fn wrote(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes % SWEEP_EVERY == 0 {
            self.sweep(now);
        }
    }
}

/// A `store.memory` store: bounded, in process memory, lost on restart.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    id: String,
    max_size: usize,
    inner: Mutex<Inner>,
}

/// What `put` requires of the key's current state.
#[derive(Debug, Clone, Copy)]
enum Condition {
    None,
    Absent,
    Version(u64),
}

impl MemoryStore {
    /// An empty store named `id` holding at most `max_size` live entries.
    pub(crate) fn new(id: &str, max_size: usize) -> MemoryStore {
        MemoryStore {
            id: id.to_owned(),
            max_size,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is one map call, so a panic elsewhere cannot leave the map half-done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<Item> {
        let now = Instant::now();
        self.lock().items.get(key).filter(|i| i.live(now)).cloned()
    }

    /// Writes `key` if `condition` holds; the new version.
    fn write(
        &self,
        key: String,
        value: Value,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<u64, WippyError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let current = inner.items.get(&key).filter(|i| i.live(now));
        match (condition, current) {
            (Condition::Absent, Some(_)) => {
                return Err(WippyError::new(
                    Kind::AlreadyExists,
                    format!("store {}: key {key:?} exists", self.id),
                ))
            }
            (Condition::Version(v), Some(item)) if item.version != v => {
                return Err(WippyError::new(
                    Kind::Conflict,
                    format!(
                        "store {}: key {key:?} is at version {}, not {v}",
                        self.id, item.version
                    ),
                ))
            }
            (Condition::Version(v), None) => {
                return Err(WippyError::new(
                    Kind::Conflict,
                    format!(
                        "store {}: key {key:?} is absent, not at version {v}",
                        self.id
                    ),
                ))
            }
            _ => {}
        }
        let present = current.is_some();
        if !present && inner.items.len() >= self.max_size {
            inner.sweep(now);
            if inner.items.len() >= self.max_size {
                return Err(WippyError::new(
                    Kind::Unavailable,
                    format!("store {} is full ({} keys)", self.id, self.max_size),
                ));
            }
        }
        inner.version += 1;
        let version = inner.version;
        inner.items.insert(
            key,
            Item {
                value,
                version,
                expires: ttl.map(|t| now + t),
            },
        );
        inner.wrote(now);
        Ok(version)
    }

    fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        let removed = inner.items.remove(key).is_some_and(|i| i.live(now));
        inner.wrote(now);
        removed
    }

    /// Up to `limit` live entries with `prefix`, after the key `after`, in key order; and
    /// whether more follow.
    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> (Vec<(String, Item)>, bool) {
        let now = Instant::now();
        let inner = self.lock();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut live = inner
            .items
            .range::<String, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, i)| i.live(now));
        let items: Vec<(String, Item)> = live
            .by_ref()
            .take(limit)
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect();
        let more = live.next().is_some();
        (items, more)
    }

    fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().items.values().filter(|i| i.live(now)).count()
    }
}

/// The stores of one engine, by id.
#[derive(Debug, Default)]
pub(crate) struct Stores(RwLock<BTreeMap<String, Arc<MemoryStore>>>);

/// Why a store could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id is taken.
    #[error("store {0:?} is registered already")]
    Duplicate(String),
    /// The engine holds the most stores it takes (1024) already.
    #[error("store {0:?}: the engine holds {MAX_STORES} stores already")]
    Full(String),
    /// `max_size` is 0.
    #[error("store {0:?}: max_size must be at least 1")]
    Size(String),
}

impl Stores {
    /// Adds a memory store.
    pub(crate) fn register(&self, id: &str, max_size: usize) -> Result<(), StoreError> {
        if max_size == 0 {
            return Err(StoreError::Size(id.to_owned()));
        }
        let mut stores = self.0.write().unwrap_or_else(|e| e.into_inner());
        if stores.contains_key(id) {
            return Err(StoreError::Duplicate(id.to_owned()));
        }
        if stores.len() >= MAX_STORES {
            return Err(StoreError::Full(id.to_owned()));
        }
        stores.insert(id.to_owned(), Arc::new(MemoryStore::new(id, max_size)));
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<MemoryStore>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// A store as Lua holds it (`store.get`); `release` ends the handle, not the store.
struct Handle {
    store: Arc<MemoryStore>,
    released: std::cell::Cell<bool>,
}

impl Handle {
    fn store(&self, method: &str) -> Result<&MemoryStore, WippyError> {
        if self.released.get() {
            return Err(WippyError::invalid(format!(
                "store:{method}: the store was released"
            )));
        }
        Ok(&self.store)
    }
}

/// The key argument at `index`: text, not empty, at most [`MAX_KEY`] bytes.
fn key_arg(args: &MultiValue, index: usize, what: &str) -> Result<String, WippyError> {
    let key = text_arg(args, index, what, MAX_KEY)?;
    if key.is_empty() {
        return Err(WippyError::invalid(format!("{what} must not be empty")));
    }
    Ok(key)
}

/// A TTL in seconds: nil or 0 is none; negative, non-number or past [`MAX_TTL_S`] INVALID.
fn ttl(value: Option<&LuaValue>, what: &str) -> Result<Option<Duration>, WippyError> {
    let s = match value {
        None | Some(LuaValue::Nil) => return Ok(None),
        Some(LuaValue::Integer(n)) => *n as f64,
        Some(LuaValue::Number(n)) => *n,
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "{what} must be a number of seconds, got {}",
                other.type_name()
            )))
        }
    };
    if !(0.0..=MAX_TTL_S).contains(&s) {
        return Err(WippyError::invalid(format!(
            "{what} must be between 0 and {MAX_TTL_S} seconds, got {s}"
        )));
    }
    Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
}

/// The value argument at `index`, converted within the engine's budget.
fn value_arg(lua: &Lua, args: &MultiValue, index: usize, what: &str) -> Result<Value, WippyError> {
    let v = args.get(index).cloned().unwrap_or(LuaValue::Nil);
    if v.is_nil() {
        return Err(WippyError::invalid(format!("{what} is required")));
    }
    convert::to_value(lua, &v).map_err(|e| WippyError::invalid(format!("{what}: {e}")))
}

/// The entry table `{key, value, version}`.
fn entry_table(lua: &Lua, key: &str, item: &Item) -> mlua::Result<LuaValue> {
    let t = lua.create_table_with_capacity(0, 3)?;
    t.raw_set("key", key)?;
    t.raw_set("value", convert::to_lua(lua, &item.value)?)?;
    t.raw_set("version", item.version as i64)?;
    Ok(LuaValue::Table(t))
}

fn not_found(store: &MemoryStore, key: &str) -> WippyError {
    WippyError::new(
        Kind::NotFound,
        format!("store {}: key {key:?} not found", store.id),
    )
}

/// A method: `self` is the handle, the rest of `args` as for a module function.
fn method(
    methods: &mut impl UserDataMethods<Handle>,
    name: &'static str,
    body: impl Fn(&Lua, &MemoryStore, &MultiValue) -> Result<LuaValue, WippyFail> + 'static,
) {
    methods.add_method(name, move |lua, handle, args: MultiValue| {
        let outcome = handle
            .store(name)
            .map_err(WippyFail::from)
            .and_then(|store| body(lua, store, &args));
        match outcome {
            Ok(v) => Ok((v, None)),
            Err(WippyFail::Soft(e)) => Ok((LuaValue::Nil, Some(e))),
            Err(WippyFail::Raise(e)) => Err(e),
        }
    });
}

/// An optional table argument (INVALID if another type).
fn options(args: &MultiValue, index: usize, what: &str) -> Result<Option<Table>, WippyError> {
    match args.get(index) {
        None | Some(LuaValue::Nil) => Ok(None),
        Some(LuaValue::Table(t)) => Ok(Some(t.clone())),
        Some(other) => Err(WippyError::invalid(format!(
            "{what} must be a table, got {}",
            other.type_name()
        ))),
    }
}

/// Field `name` of an options table, as a one-element argument list for the readers above.
fn field(t: &Option<Table>, name: &str) -> Result<MultiValue, WippyError> {
    let v = match t {
        Some(t) => t
            .raw_get::<LuaValue>(name)
            .map_err(|e| WippyError::invalid(format!("{name}: {e}")))?,
        None => LuaValue::Nil,
    };
    Ok(MultiValue::from_iter([v]))
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "get", |lua, s, args| {
            let key = key_arg(args, 0, "store:get: key")?;
            match s.get(&key) {
                Some(item) => Ok(convert::to_lua(lua, &item.value)?),
                None => Err(not_found(s, &key).into()),
            }
        });
        method(methods, "set", |lua, s, args| {
            let key = key_arg(args, 0, "store:set: key")?;
            let value = value_arg(lua, args, 1, "store:set: value")?;
            let ttl = ttl(args.get(2), "store:set: ttl")?;
            s.write(key, value, ttl, Condition::None)?;
            Ok(LuaValue::Boolean(true))
        });
        method(methods, "has", |_, s, args| {
            let key = key_arg(args, 0, "store:has: key")?;
            Ok(LuaValue::Boolean(s.get(&key).is_some()))
        });
        method(methods, "delete", |_, s, args| {
            let key = key_arg(args, 0, "store:delete: key")?;
            Ok(LuaValue::Boolean(s.delete(&key)))
        });
        method(methods, "entry", |lua, s, args| {
            let key = key_arg(args, 0, "store:entry: key")?;
            match s.get(&key) {
                Some(item) => Ok(entry_table(lua, &key, &item)?),
                None => Err(not_found(s, &key).into()),
            }
        });
        method(methods, "put", |lua, s, args| {
            let key = key_arg(args, 0, "store:put: key")?;
            let value = value_arg(lua, args, 1, "store:put: value")?;
            let opts = options(args, 2, "store:put: options")?;
            let ttl = ttl(field(&opts, "ttl")?.front(), "store:put: ttl")?;
            let absent = super::flag_arg(&field(&opts, "only_if_absent")?, 0, "only_if_absent")?;
            let version = match field(&opts, "if_version")?.front() {
                None | Some(LuaValue::Nil) => None,
                Some(_) => Some(super::int_arg(
                    &field(&opts, "if_version")?,
                    0,
                    "store:put: if_version",
                    0..=i64::MAX,
                )? as u64),
            };
            let condition = match (absent, version) {
                (true, Some(_)) => {
                    return Err(WippyError::invalid(
                        "store:put: only_if_absent and if_version exclude each other",
                    )
                    .into())
                }
                (true, None) => Condition::Absent,
                (false, Some(v)) => Condition::Version(v),
                (false, None) => Condition::None,
            };
            let version = s.write(key.clone(), value.clone(), ttl, condition)?;
            let item = Item {
                value,
                version,
                expires: None,
            };
            Ok(entry_table(lua, &key, &item)?)
        });
        method(methods, "list", |lua, s, args| {
            let opts = options(args, 0, "store:list: options")?;
            let prefix = match field(&opts, "prefix")?.front() {
                None | Some(LuaValue::Nil) => String::new(),
                Some(_) => text_arg(&field(&opts, "prefix")?, 0, "store:list: prefix", MAX_KEY)?,
            };
            let after = match field(&opts, "after")?.front() {
                None | Some(LuaValue::Nil) => None,
                Some(_) => Some(text_arg(
                    &field(&opts, "after")?,
                    0,
                    "store:list: after",
                    MAX_KEY,
                )?),
            };
            let limit = match field(&opts, "limit")?.front() {
                None | Some(LuaValue::Nil) => DEFAULT_LIST,
                Some(_) => super::int_arg(
                    &field(&opts, "limit")?,
                    0,
                    "store:list: limit",
                    1..=MAX_LIST as i64,
                )? as usize,
            };
            let (items, more) = s.list(&prefix, after.as_deref(), limit);
            let list = lua.create_table_with_capacity(items.len(), 0)?;
            for (key, item) in &items {
                list.raw_push(entry_table(lua, key, item)?)?;
            }
            let out = lua.create_table_with_capacity(0, 3)?;
            out.raw_set("items", list)?;
            // The cursor is the last key returned: pass it as `after` for the next page.
            if let Some((last, _)) = items.last() {
                out.raw_set("cursor", last.as_str())?;
            }
            out.raw_set("has_more", more)?;
            Ok(LuaValue::Table(out))
        });
        method(methods, "info", |lua, s, _| {
            let flags = lua.create_table()?;
            for flag in ["ttl", "put", "only_if_absent", "if_version", "list"] {
                flags.raw_set(flag, true)?;
            }
            let t = lua.create_table()?;
            t.raw_set("id", s.id.as_str())?;
            t.raw_set("backend", "memory")?;
            t.raw_set("consistency", "strong")?;
            t.raw_set("flags", flags)?;
            t.raw_set("size", s.len() as i64)?;
            t.raw_set("max_size", s.max_size as i64)?;
            Ok(LuaValue::Table(t))
        });
        methods.add_method("release", |_, handle, ()| {
            handle.released.set(true);
            Ok(true)
        });
    }
}

/// Builds the `store` module table over the engine's `stores`.
pub(crate) fn module(lua: &Lua, stores: Arc<Stores>) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "get",
        wippy_function(lua, move |lua, args: MultiValue| {
            let id = text_arg(&args, 0, "store.get: id", MAX_KEY)?;
            let store = stores.get(&id).ok_or_else(|| {
                WippyError::new(Kind::NotFound, format!("store.get: no store {id:?}"))
            })?;
            let handle = Handle {
                store,
                released: std::cell::Cell::new(false),
            };
            Ok(LuaValue::UserData(lua.create_userdata(handle)?))
        })?,
    )?;
    Ok(m)
}
