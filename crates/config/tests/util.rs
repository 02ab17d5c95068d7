//! Test helpers: an app directory builder on a temp dir and error matchers.

use std::path::{Path, PathBuf};

use wsrelay_config::{AppConfig, ConfigErrors, LoadOptions};

/// An app directory `<tmp>/app` that tests fill with files.
pub(crate) struct App {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl App {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("app");
        std::fs::create_dir(&root).expect("app dir");
        Self { _tmp: tmp, root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a file (creating parent directories) relative to the app root.
    pub(crate) fn file(self, rel: &str, text: &str) -> Self {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Creates a directory relative to the app root.
    pub(crate) fn dir(self, rel: &str) -> Self {
        std::fs::create_dir_all(self.root.join(rel)).unwrap();
        self
    }

    pub(crate) fn load(&self) -> Result<AppConfig, ConfigErrors> {
        AppConfig::load(&self.root, &opts())
    }

    pub(crate) fn load_ok(&self) -> AppConfig {
        self.load()
            .unwrap_or_else(|errs| panic!("expected a valid app, got:\n{errs}"))
    }

    pub(crate) fn load_err(&self) -> ConfigErrors {
        match self.load() {
            Ok(app) => panic!("expected errors, got {app:#?}"),
            Err(errs) => errs,
        }
    }
}

/// The options the app crate would pass: two middleware and a fake Lua
/// checker that rejects any source containing `@@`.
pub(crate) fn opts() -> LoadOptions {
    LoadOptions::new()
        .with_middleware(["websocket_relay", "cors"])
        .with_lua_checker(|chunk, source| {
            if source.contains("@@") {
                Err(format!("{chunk}:1: unexpected symbol near '@@'"))
            } else {
                Ok(())
            }
        })
}

/// Asserts that exactly one error line contains every part, and returns it.
#[track_caller]
pub(crate) fn find_error(errs: &ConfigErrors, parts: &[&str]) -> String {
    let matching: Vec<String> = errs
        .iter()
        .map(ToString::to_string)
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one error containing {parts:?}, all errors:\n{errs}"
    );
    matching.into_iter().next().unwrap()
}

/// A minimal valid HTTP stack in namespace `app`: server `gateway`, router
/// `api`, function `handler` (inline).
pub(crate) const BASE: &str = r#"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:0"
  - name: api
    kind: http.router
    meta:
      server: gateway
    prefix: /api
  - name: handler
    kind: function.lua
    source: |
      return { handler = function() end }
    method: handler
    modules: [http]
  - name: processes
    kind: process.host
  - name: worker
    kind: process.lua
    source: "return function() end"
"#;
