//! The `env` module: `env.get(key)`, `env.set(key, value)`, `env.get_all()`.
//!
//! What Lua can read is two layers, both per engine:
//!
//! - The **OS variables the engine config lets through** (`EngineConfig::env_readable`,
//!   default `WSRELAY_APP_*`), read once when the engine starts. The process environment also
//!   holds what the operator gave wsrelay itself (NATS credentials, `RUST_LOG`, cloud tokens
//!   of the host): an app that echoes `env.get_all()` to a client, or a dependency that logs
//!   it, must not be able to leak those. Wippy, too, reads only variables declared in its
//!   `env` system.
//! - An **overlay** that `env.set` writes, shared by every process of the engine and never
//!   written to the OS environment (changing it at run time is unsound in a threaded program,
//!   and would leak into child processes). It shadows an OS variable of the same name.
//!
//! `env.get` of a name in neither gives `nil, err` (NOT_FOUND); an empty key is INVALID.
//! Bounds: keys up to [`MAX_KEY`] bytes, values up to [`MAX_VALUE`] bytes, at most
//! [`MAX_OVERLAY`] names and [`MAX_OVERLAY_BYTES`] bytes set (INVALID past any of them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::errors::{Kind, WippyError};
use super::{text_arg, wippy_function};

/// The longest key `env.set` accepts, in bytes.
pub(crate) const MAX_KEY: usize = 256;
/// The longest value `env.set` accepts, in bytes.
pub(crate) const MAX_VALUE: usize = 64 << 10;
/// The most names the overlay holds.
pub(crate) const MAX_OVERLAY: usize = 1024;
/// The most bytes (keys and values together) the overlay holds: it is Rust memory outside
/// the Lua limits, and `env.get_all` copies all of it into the caller's state.
pub(crate) const MAX_OVERLAY_BYTES: usize = 1 << 20;

/// The variables of one engine: the readable OS variables and the overlay.
#[derive(Debug, Default)]
pub(crate) struct EnvStore {
    os: HashMap<String, String>,
    overlay: RwLock<HashMap<String, String>>,
}

/// Whether `name` matches one of `patterns` (an exact name, or a prefix ending in `*`).
fn readable(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

impl EnvStore {
    /// Takes the OS variables matching `patterns` (variables that are not UTF-8 are skipped:
    /// Lua code could not tell them from their lossy form).
    pub(crate) fn from_os(patterns: &[String]) -> EnvStore {
        let os = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| readable(k, patterns))
            .collect();
        EnvStore {
            os,
            overlay: RwLock::default(),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        // A panic while holding the lock cannot leave the map half-changed (inserts are
        // single calls), so a poisoned lock is still usable.
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        overlay.get(key).or_else(|| self.os.get(key)).cloned()
    }

    fn set(&self, key: String, value: String) -> Result<(), WippyError> {
        let mut overlay = self.overlay.write().unwrap_or_else(|e| e.into_inner());
        if overlay.len() >= MAX_OVERLAY && !overlay.contains_key(&key) {
            return Err(WippyError::invalid(format!(
                "env.set: {MAX_OVERLAY} variables are set already"
            )));
        }
        let replaced = overlay.get(&key).map_or(0, |old| key.len() + old.len());
        let total: usize = overlay.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total - replaced + key.len() + value.len() > MAX_OVERLAY_BYTES {
            return Err(WippyError::invalid(format!(
                "env.set: the variables set would exceed {MAX_OVERLAY_BYTES} bytes"
            )));
        }
        overlay.insert(key, value);
        Ok(())
    }

    fn all(&self) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = self
            .os
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        all.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }
}

/// The key argument: text, not empty, at most [`MAX_KEY`] bytes.
fn key_arg(args: &MultiValue, what: &str) -> Result<String, WippyError> {
    let key = text_arg(args, 0, what, MAX_KEY)?;
    if key.is_empty() {
        return Err(WippyError::invalid(format!("{what} must not be empty")));
    }
    Ok(key)
}

/// Builds the `env` module table over `store`.
pub(crate) fn module(lua: &Lua, store: Arc<EnvStore>) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let s = store.clone();
    m.raw_set(
        "get",
        wippy_function(lua, move |lua, args: MultiValue| {
            let key = key_arg(&args, "env.get: key")?;
            match s.get(&key) {
                Some(v) => Ok(LuaValue::String(lua.create_string(v)?)),
                None => Err(WippyError::new(
                    Kind::NotFound,
                    format!("env.get: variable {key:?} is not set or not readable"),
                )
                .into()),
            }
        })?,
    )?;
    let s = store.clone();
    m.raw_set(
        "set",
        wippy_function(lua, move |_, args: MultiValue| {
            let key = key_arg(&args, "env.set: key")?;
            let value = text_arg(&args, 1, "env.set: value", MAX_VALUE)?;
            s.set(key, value)?;
            Ok(LuaValue::Boolean(true))
        })?,
    )?;
    m.raw_set(
        "get_all",
        wippy_function(lua, move |lua, ()| {
            let all = store.all();
            let t = lua.create_table_with_capacity(0, all.len())?;
            for (k, v) in all {
                t.raw_set(k, v)?;
            }
            Ok(LuaValue::Table(t))
        })?,
    )?;
    Ok(m)
}
