//! Finding an app's YAML files on disk and reading them.
//!
//! The walk is sorted by path, skips hidden files and directories (`.git`),
//! follows symlinks, and enters each directory once, by canonical path:
//!
//! - a symlink to a directory on the way down (an ancestor) is a loop,
//!   reported once, on the symlink;
//! - a second way into a directory already walked (two symlinks to one
//!   shared directory) is skipped with a warning: loading its files twice
//!   would only report every entry id as a duplicate;
//! - subdirectories deeper than [`MAX_DIR_DEPTH`] are reported, not entered.
//!
//! Only regular files are read, and at most [`MAX_YAML_BYTES`] of each: a
//! FIFO named `x.yaml` is an error naming it, not a hang.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ConfigErrorKind};
use crate::files::read_regular_file;
use crate::limits::{MAX_DIR_DEPTH, MAX_YAML_BYTES};

/// Reads every YAML file under `root`: `(path relative to root, text)`, in
/// path order, and the problems met on the way.
pub(super) fn read_yaml_files(root: &Path) -> (Vec<(PathBuf, String)>, Vec<ConfigError>) {
    let mut walk = Walk {
        root,
        ancestors: Vec::new(),
        visited: HashSet::new(),
        files: Vec::new(),
        errors: Vec::new(),
    };
    walk.dir(Path::new(""), 0);
    let mut sources = Vec::with_capacity(walk.files.len());
    for rel in walk.files {
        let path = root.join(&rel);
        match read_regular_file(&path, MAX_YAML_BYTES) {
            Ok(text) => sources.push((rel, text)),
            Err(error) => walk.errors.push(ConfigError::in_file(
                path.clone(),
                None,
                ConfigErrorKind::unreadable(path, error),
            )),
        }
    }
    (sources, walk.errors)
}

/// The state of one walk.
struct Walk<'a> {
    root: &'a Path,
    /// Canonical paths of the directories from the root down to the current one.
    ancestors: Vec<PathBuf>,
    /// Canonical paths of every directory entered.
    visited: HashSet<PathBuf>,
    /// YAML files found, relative to the root.
    files: Vec<PathBuf>,
    errors: Vec<ConfigError>,
}

impl Walk<'_> {
    /// Walks `root/rel`, `depth` levels below the root.
    fn dir(&mut self, rel: &Path, depth: usize) {
        let path = self.root.join(rel);
        let canonical = match std::fs::canonicalize(&path) {
            Ok(canonical) => canonical,
            Err(error) => return self.unreadable(path, &error),
        };
        if self.ancestors.contains(&canonical) {
            let kind = ConfigErrorKind::SymlinkLoop { target: canonical };
            return self.errors.push(ConfigError::in_file(path, None, kind));
        }
        if !self.visited.insert(canonical.clone()) {
            tracing::warn!(
                path = %path.display(),
                target = %canonical.display(),
                "directory already loaded through another path; skipped"
            );
            return;
        }
        if depth > MAX_DIR_DEPTH {
            let kind = ConfigErrorKind::DirTooDeep {
                limit: MAX_DIR_DEPTH,
            };
            return self.errors.push(ConfigError::in_file(path, None, kind));
        }
        let names = match sorted_names(&path) {
            Ok(names) => names,
            Err(error) => return self.unreadable(path, &error),
        };
        self.ancestors.push(canonical);
        for name in names {
            self.child(&rel.join(&name), depth);
        }
        self.ancestors.pop();
    }

    /// Enters a subdirectory or keeps a YAML file (of any type: reading
    /// refuses what is not a regular file, naming it).
    fn child(&mut self, rel: &Path, depth: usize) {
        let path = self.root.join(rel);
        let yaml = is_yaml(&path);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => self.dir(rel, depth + 1),
            Ok(_) if yaml => self.files.push(rel.to_path_buf()),
            Ok(_) => {}
            // A dangling symlink named x.yaml is a broken app; any other is not ours.
            Err(error) if yaml => self.unreadable(path, &error),
            Err(_) => {}
        }
    }

    fn unreadable(&mut self, path: PathBuf, error: &io::Error) {
        let kind = ConfigErrorKind::Unreadable {
            path: path.clone(),
            reason: error.to_string(),
        };
        self.errors.push(ConfigError::in_file(path, None, kind));
    }
}

/// The names in a directory, hidden ones left out, sorted.
fn sorted_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for child in std::fs::read_dir(dir)? {
        let name = child?.file_name();
        if !name.to_string_lossy().starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(OsStr::to_str),
        Some("yaml" | "yml")
    )
}
