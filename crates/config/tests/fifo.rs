//! Makes a FIFO: a file the loader must refuse to open, since opening one blocks until a
//! writer comes. Shared with the end-to-end tests of `wsrelay check` (tests/support), which
//! include this file.

use std::path::Path;
use std::process::Command;

/// Makes a FIFO at `path` with the `mkfifo` command (the library call needs `unsafe`).
pub(crate) fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}
