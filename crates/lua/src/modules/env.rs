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
//! - **Declared variables** (`env.variable` entries, registered with
//!   [`crate::LuaEngine::register_env_variable`]), each read from and written to its
//!   storage ([`EnvStorageSpec`]: the OS environment, memory, fixed values, or a router
//!   over other storages), with a default and a read-only flag. A declared name is
//!   resolved only through its storage: the layers above do not apply to it.
//!
//! `env.get` of a name in none gives `nil, err` (NOT_FOUND); an empty key is INVALID.
//! `env.set` of a read-only declared variable, or of one whose storage cannot be written
//! (OS, static, file), is PERMISSION_DENIED.
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

/// The most storages and the most declared variables one engine holds (they come from
/// the config, not from Lua; a bound all the same).
pub(crate) const MAX_DECLARED: usize = 4096;

/// A storage of declared variables, as the embedder describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvStorageSpec {
    /// The process environment (read at each `env.get`; never written).
    Os,
    /// Values in memory, starting empty; `env.set` writes them.
    Memory,
    /// Fixed values (a static list or a file read at load time); never written.
    Values(BTreeMap<String, String>),
    /// The storages registered under these ids, in order: a read takes the first that has
    /// the variable, a write goes to the first that can be written.
    Router(Vec<String>),
}

/// A declared variable, as the embedder describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVariableSpec {
    /// The id of the storage that holds it.
    pub storage: String,
    /// What `env.get` reads when the storage has no value.
    pub default: Option<String>,
    /// Whether `env.set` is refused.
    pub read_only: bool,
}

/// Why a storage or variable could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The id or name is taken.
    #[error("{0:?} is registered already")]
    Duplicate(String),
    /// A router or variable names a storage that is not registered (yet).
    #[error("no env storage {0:?}")]
    NoStorage(String),
    /// Routers that read through each other (found by the embedder, which registers
    /// storages in dependency order).
    #[error("env storage {0:?}: routers read through each other in a cycle")]
    Cycle(String),
    /// The engine holds the most storages or variables it takes.
    #[error("{0:?}: the engine holds {MAX_DECLARED} already")]
    Full(String),
}

#[derive(Debug)]
enum Storage {
    Os,
    Memory(RwLock<HashMap<String, String>>),
    Values(BTreeMap<String, String>),
    Router(Vec<Arc<Storage>>),
}

impl Storage {
    fn get(&self, key: &str) -> Option<String> {
        match self {
            Storage::Os => std::env::var(key).ok(),
            Storage::Memory(map) => map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned(),
            Storage::Values(map) => map.get(key).cloned(),
            Storage::Router(routes) => routes.iter().find_map(|s| s.get(key)),
        }
    }

    /// Writes to the first memory storage; `false` if there is none.
    fn set(&self, key: &str, value: &str) -> bool {
        match self {
            Storage::Memory(map) => {
                map.write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_owned(), value.to_owned());
                true
            }
            Storage::Router(routes) => routes.iter().any(|s| s.set(key, value)),
            Storage::Os | Storage::Values(_) => false,
        }
    }
}

#[derive(Debug)]
struct Declared {
    storage: Arc<Storage>,
    default: Option<String>,
    read_only: bool,
}

#[derive(Debug, Default)]
struct Registry {
    storages: HashMap<String, Arc<Storage>>,
    variables: HashMap<String, Declared>,
}

/// The variables of one engine: the readable OS variables, the overlay and the declared
/// variables.
#[derive(Debug, Default)]
pub(crate) struct EnvStore {
    os: HashMap<String, String>,
    overlay: RwLock<HashMap<String, String>>,
    declared: RwLock<Registry>,
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
            declared: RwLock::default(),
        }
    }

    /// Registers a storage under `id`.
    pub(crate) fn register_storage(&self, id: &str, spec: EnvStorageSpec) -> Result<(), EnvError> {
        let mut reg = self.declared.write().unwrap_or_else(|e| e.into_inner());
        if reg.storages.contains_key(id) {
            return Err(EnvError::Duplicate(id.to_owned()));
        }
        if reg.storages.len() >= MAX_DECLARED {
            return Err(EnvError::Full(id.to_owned()));
        }
        let storage = match spec {
            EnvStorageSpec::Os => Storage::Os,
            EnvStorageSpec::Memory => Storage::Memory(RwLock::default()),
            EnvStorageSpec::Values(map) => Storage::Values(map),
            EnvStorageSpec::Router(ids) => Storage::Router(
                ids.iter()
                    .map(|r| {
                        reg.storages
                            .get(r)
                            .cloned()
                            .ok_or_else(|| EnvError::NoStorage(r.clone()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        reg.storages.insert(id.to_owned(), Arc::new(storage));
        Ok(())
    }

    /// Declares the variable `name`, held by the storage `spec.storage`.
    pub(crate) fn register_variable(
        &self,
        name: &str,
        spec: EnvVariableSpec,
    ) -> Result<(), EnvError> {
        let mut reg = self.declared.write().unwrap_or_else(|e| e.into_inner());
        if reg.variables.contains_key(name) {
            return Err(EnvError::Duplicate(name.to_owned()));
        }
        if reg.variables.len() >= MAX_DECLARED {
            return Err(EnvError::Full(name.to_owned()));
        }
        let storage = reg
            .storages
            .get(&spec.storage)
            .cloned()
            .ok_or(EnvError::NoStorage(spec.storage))?;
        reg.variables.insert(
            name.to_owned(),
            Declared {
                storage,
                default: spec.default,
                read_only: spec.read_only,
            },
        );
        Ok(())
    }

    /// `Some(value or None)` for a declared variable, `None` for an undeclared one.
    fn declared(&self, key: &str) -> Option<Option<String>> {
        let reg = self.declared.read().unwrap_or_else(|e| e.into_inner());
        let d = reg.variables.get(key)?;
        Some(d.storage.get(key).or_else(|| d.default.clone()))
    }

    fn get(&self, key: &str) -> Option<String> {
        if let Some(value) = self.declared(key) {
            return value;
        }
        // A panic while holding the lock cannot leave the map half-changed (inserts are
        // single calls), so a poisoned lock is still usable.
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        overlay.get(key).or_else(|| self.os.get(key)).cloned()
    }

    fn set(&self, key: String, value: String) -> Result<(), WippyError> {
        {
            let reg = self.declared.read().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = reg.variables.get(&key) {
                let denied = |why: &str| {
                    Err(WippyError::new(
                        Kind::PermissionDenied,
                        format!("env.set: variable {key:?} {why}"),
                    ))
                };
                if d.read_only {
                    return denied("is read-only");
                }
                if !d.storage.set(&key, &value) {
                    return denied("lives in a storage that cannot be written");
                }
                return Ok(());
            }
        }
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
        drop(overlay);
        let reg = self.declared.read().unwrap_or_else(|e| e.into_inner());
        for (name, d) in &reg.variables {
            match d.storage.get(name).or_else(|| d.default.clone()) {
                Some(v) => all.insert(name.clone(), v),
                // A declared name is resolved only through its storage.
                None => all.remove(name),
            };
        }
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
