//! The built-in demo app (`examples/chat`), compiled into the binary.
//!
//! Its YAML and Lua are loaded from memory ([`MemoryFiles`]); because static
//! files are served from disk, the files are also unpacked into a temporary
//! directory that lives as long as the returned [`DemoApp`].

use std::path::{Path, PathBuf};

use wsrelay_config::{AppConfig, LoadOptions, MemoryFiles};

use crate::AppError;

/// The demo's files, relative to the app directory.
pub const FILES: &[(&str, &str)] = &[
    ("app.yaml", include_str!("../../../examples/chat/app.yaml")),
    ("join.lua", include_str!("../../../examples/chat/join.lua")),
    ("room.lua", include_str!("../../../examples/chat/room.lua")),
    (
        "public/index.html",
        include_str!("../../../examples/chat/public/index.html"),
    ),
];

/// The loaded demo app and the temporary directory holding its files.
#[derive(Debug)]
pub struct DemoApp {
    /// The validated config.
    pub config: AppConfig,
    dir: tempfile::TempDir,
}

impl DemoApp {
    /// Where the demo's files were unpacked.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Loads the built-in demo app with `opts`.
///
/// # Errors
///
/// [`AppError::Demo`] if the temporary directory cannot be written, and
/// [`AppError::Config`] if the embedded app does not validate (a bug).
pub fn load(opts: &LoadOptions) -> Result<DemoApp, AppError> {
    let dir = tempfile::Builder::new()
        .prefix("wsrelay-demo-")
        .tempdir()
        .map_err(AppError::Demo)?;
    let mut files = MemoryFiles::new();
    let mut sources: Vec<(PathBuf, String)> = Vec::new();
    for (name, text) in FILES {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(AppError::Demo)?;
        }
        std::fs::write(&path, text).map_err(AppError::Demo)?;
        files.insert(&path, *text);
        if name.ends_with(".yaml") {
            sources.push((PathBuf::from(name), (*text).to_owned()));
        }
    }
    let config = AppConfig::from_sources_with(sources, dir.path(), &files, opts)?;
    Ok(DemoApp { config, dir })
}
