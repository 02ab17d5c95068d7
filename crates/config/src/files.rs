//! Where `file://` sources and `http.static` directories are read from.
//!
//! An app loaded from disk reads them from disk ([`DiskFiles`]). An app
//! compiled into the binary (the built-in demo, with `include_str!`) has no
//! directory to read from, so it hands the loader a [`MemoryFiles`] map
//! instead. Both sit behind the small [`FileSource`] trait.
//!
//! Only regular files are read from disk: opening a FIFO named `x.yaml` or
//! `handler.lua` would block the loader forever, and a device could stream
//! without end. Sizes are capped (see [`limits`](crate::limits)).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::FileType;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};

use crate::limits::{fmt_bytes, MAX_SOURCE_BYTES};

/// Why a file an app refers to could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused (missing file, permissions, not UTF-8).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path names a FIFO, socket, device or directory.
    #[error("not a regular file (it is {found})")]
    NotRegular {
        /// What it is instead, e.g. `a FIFO`.
        found: &'static str,
    },
    /// The file is larger than the loader reads.
    #[error("the file is {size} bytes, over the limit of {}", fmt_bytes(*.limit))]
    TooLarge {
        /// Its size in bytes (at least `limit + 1` when it grew while read).
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
}

/// Reads the files an app refers to. Paths are already resolved (the YAML
/// file's directory joined with the relative path) and lexically normalized.
pub trait FileSource: fmt::Debug + Send + Sync {
    /// Reads a whole UTF-8 file.
    ///
    /// # Errors
    ///
    /// Any I/O error (missing file, permissions, not UTF-8), and for
    /// [`DiskFiles`] a path that is not a regular file or is larger than
    /// [`MAX_SOURCE_BYTES`].
    fn read_to_string(&self, path: &Path) -> Result<String, FileError>;

    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
}

/// Reads from the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFiles;

impl FileSource for DiskFiles {
    fn read_to_string(&self, path: &Path) -> Result<String, FileError> {
        read_regular_file(path, MAX_SOURCE_BYTES)
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
    fn read_to_string(&self, path: &Path) -> Result<String, FileError> {
        self.files.get(&normalize(path)).cloned().ok_or_else(|| {
            FileError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                "no such embedded file",
            ))
        })
    }

    fn is_dir(&self, path: &Path) -> bool {
        let dir = normalize(path);
        self.files
            .keys()
            .any(|file| file != &dir && file.starts_with(&dir))
    }
}

/// Reads a whole UTF-8 file of at most `limit` bytes, refusing anything but a
/// regular file (symlinks are followed).
///
/// The type and size come from `stat` before the file is opened, because
/// opening a FIFO blocks until a writer appears. The read stops one byte past
/// the limit, so a file that grows in between is refused too. (A file swapped
/// for a FIFO between the `stat` and the `open` would still block: that needs
/// write access to the app directory during the load.)
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> Result<String, FileError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            found: type_name(meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_string(&mut text)?;
    let size = text.len() as u64;
    if size > limit {
        return Err(FileError::TooLarge { size, limit });
    }
    Ok(text)
}

/// A phrase naming a file type that is not a regular file.
fn type_name(file_type: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "neither a file nor a directory"
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
