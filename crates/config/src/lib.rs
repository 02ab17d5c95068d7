//! `wsrelay-config` loads a wsrelay app directory into a validated, typed
//! [`AppConfig`]. It is the only crate that reads YAML.
//!
//! An app is a directory of `*.yaml`/`*.yml` files in the Wippy registry
//! format (docs/spec.md §11): each file has a `namespace` and a list of `entries`;
//! each entry has a `name`, a `kind`, an optional `meta` map and the fields of
//! its kind. Entry ids are `namespace:name` ([`EntryId`]); a reference without
//! `:` is relative to the namespace of the entry it appears in.
//!
//! ```yaml
//! namespace: app
//! entries:
//!   - name: gateway
//!     kind: http.service
//!     addr: ":8080"
//!   - name: ws_router
//!     kind: http.router
//!     meta: { server: gateway }
//!     prefix: /ws
//!     post_middleware: [websocket_relay]
//!     post_options:
//!       wsrelay.allowed.origins: "https://app.example.com"
//! ```
//!
//! # A tour
//!
//! - [`AppConfig::load`] reads a directory; [`AppConfig::from_sources`] and
//!   [`AppConfig::from_sources_with`] take YAML text (e.g. from
//!   `include_str!`) and, for `file://` sources, a [`FileSource`] such as
//!   [`MemoryFiles`].
//! - [`LoadOptions`] injects what this crate must not depend on: the
//!   registered middleware names (HTTP crate) and a Lua syntax check (Lua
//!   crate), and whether unknown fields are errors ([`LoadOptions::strict`]) or,
//!   by default, warnings: Wippy entries may carry fields wsrelay ignores.
//! - Every problem becomes a [`ConfigError`] naming the file, the entry and
//!   the field; a load returns all of them at once in [`ConfigErrors`].
//! - [`parse_duration`] reads `500ms`/`30s`/`1m30s`; the relay reuses it.
//! - [`limits`] lists what the loader refuses to read (files over 1 MiB of
//!   YAML, flow nesting past 64, anything but regular files, symlink loops),
//!   so a broken app fails fast with an error naming the file.
//!
//! # Design
//!
//! YAML is parsed into a generic value first and validated field by field,
//! so each error names its field path (`meta.server`, `post_middleware[0]`)
//! rather than surfacing a deserializer message. The pipeline (discover,
//! parse, index, build, check references) is described in the `load`
//! module. Nothing here touches the network, Lua or the runtime.
//!
//! # Examples
//!
//! ```
//! use std::path::Path;
//! use wsrelay_config::{AppConfig, LoadOptions};
//!
//! let yaml = r#"
//! namespace: app
//! entries:
//!   - name: gateway
//!     kind: http.service
//!     addr: "127.0.0.1:0"
//! "#;
//! let app = AppConfig::from_sources(vec![("app.yaml".into(), yaml.into())], Path::new("demo"), &LoadOptions::new())
//!     .unwrap();
//! assert_eq!(app.services[0].id.to_string(), "app:gateway");
//! assert!(app.services[0].auto_start);
//! ```

mod duration;
mod error;
mod files;
mod id;
pub mod limits;
mod load;
mod model;
mod options;

use std::path::{Path, PathBuf};

pub use duration::{format_duration, parse_duration, parse_positive_duration, DurationError};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use files::{DiskFiles, FileError, FileSource, MemoryFiles};
pub use id::{EntryId, IdError};
pub use model::{
    kind, AdminConfig, AppConfig, ClusterConfig, ClusterTls, EnvStorage, EnvStorageKind,
    EnvVariable, HttpClientConfig, HttpEndpoint, HttpRouter, HttpService, HttpStatic, LuaEntry,
    LuaKind, MemoryStore, Method, OpsConfig, PgScope, ProcessHost, ProcessService, RestartPolicy,
    ServiceTls, SourceOrigin, StaticMount, KNOWN_KINDS, KNOWN_LUA_MODULES,
};
pub use options::{LoadOptions, LuaChecker};

impl AppConfig {
    /// Loads every `*.yaml`/`*.yml` file under `dir` (recursively, sorted by
    /// path, hidden files and directories skipped, each directory entered
    /// once). `file://` sources and static directories are read from disk,
    /// relative to each YAML file; only regular files are read, within the
    /// [`limits`].
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its file, entry and field; including
    /// an unreadable `dir` or a `dir` without YAML files, a YAML file that is
    /// not a regular file or is over a limit, and a directory symlink loop.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self, ConfigErrors> {
        load::load_dir(dir, opts)
    }

    /// Loads an app from YAML texts. Each path is relative to `base_dir` and
    /// is what errors show (joined to `base_dir`); `file://` sources and
    /// static directories are read from disk under `base_dir`.
    ///
    /// # Errors
    ///
    /// As [`AppConfig::load`].
    pub fn from_sources(
        sources: Vec<(PathBuf, String)>,
        base_dir: &Path,
        opts: &LoadOptions,
    ) -> Result<Self, ConfigErrors> {
        Self::from_sources_with(sources, base_dir, &DiskFiles, opts)
    }

    /// Like [`AppConfig::from_sources`], reading `file://` sources and static
    /// directories from `files` (e.g. a [`MemoryFiles`] built with
    /// `include_str!`). Paths given to `files` are `base_dir` joined with the
    /// path relative to the app root.
    ///
    /// # Errors
    ///
    /// As [`AppConfig::load`].
    pub fn from_sources_with(
        sources: Vec<(PathBuf, String)>,
        base_dir: &Path,
        files: &dyn FileSource,
        opts: &LoadOptions,
    ) -> Result<Self, ConfigErrors> {
        load::load_sources(sources, base_dir, files, opts, Vec::new())
    }
}
