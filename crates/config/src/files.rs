//! Where `file://` sources and `http.static` directories are read from.
//!
//! An app loaded from disk reads them from disk ([`DiskFiles`]). An app
//! compiled into the binary (the built-in demo, with `include_str!`) has no
//! directory to read from, so it hands the loader a [`MemoryFiles`] map
//! instead. Both sit behind the small [`FileSource`] trait.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Reads the files an app refers to. Paths are already resolved (the YAML
/// file's directory joined with the relative path) and lexically normalized.
pub trait FileSource: fmt::Debug + Send + Sync {
    /// Reads a whole UTF-8 file.
    ///
    /// # Errors
    ///
    /// Any I/O error (missing file, permissions, not UTF-8).
    fn read_to_string(&self, path: &Path) -> io::Result<String>;

    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
}

/// Reads from the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFiles;

impl FileSource for DiskFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// An in-memory file tree, for apps embedded in the binary.
///
/// A directory exists when at least one file lies under it.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use wsrelay_config::{FileSource, MemoryFiles};
///
/// let files = MemoryFiles::new().with_file("demo/handler.lua", "return {}");
/// assert_eq!(files.read_to_string(Path::new("demo/./handler.lua")).unwrap(), "return {}");
/// assert!(files.is_dir(Path::new("demo")));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, String>,
}

impl MemoryFiles {
    /// An empty file tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    #[must_use]
    pub fn with_file(mut self, path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        self.insert(path, text);
        self
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl AsRef<Path>, text: impl Into<String>) {
        self.files.insert(normalize(path.as_ref()), text.into());
    }
}

impl FileSource for MemoryFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such embedded file"))
    }

    fn is_dir(&self, path: &Path) -> bool {
        let dir = normalize(path);
        self.files
            .keys()
            .any(|file| file != &dir && file.starts_with(&dir))
    }
}

/// Removes `.` components and folds `..` into its parent, without touching
/// the file system (so symlinks are not followed). A leading `..` that has no
/// parent to fold into is kept.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
