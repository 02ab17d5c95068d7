//! Watching an app directory for edits (`wsrelay run --watch`): a [`Watcher`] reports each
//! burst of changes to `*.lua`, `*.yaml` and `*.yml` files under the directory once, after
//! [`DEBOUNCE`] without a further change, so an editor's save (write, rename, chmod) gives
//! one reload. What to do then is [`RunningApp::reload_dir`](crate::RunningApp::reload_dir).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How long a directory must stay unchanged before a change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why a directory cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", dir.display())]
pub struct WatchError {
    /// The directory.
    pub dir: PathBuf,
    /// What the file-system notification said.
    #[source]
    pub source: notify::Error,
}

/// Watches a directory, recursively, for changes to app files.
#[derive(Debug)]
pub struct Watcher {
    /// Kept for its drop: the notifications stop with it.
    _watcher: notify::RecommendedWatcher,
    /// One slot: a change already waiting says all a later one would.
    changes: mpsc::Receiver<()>,
    /// A change was seen and its burst is not over yet (kept across a cancelled
    /// [`changed`](Self::changed)).
    pending: bool,
}

impl Watcher {
    /// Starts watching `dir` and every directory below it.
    ///
    /// # Errors
    ///
    /// [`WatchError`] naming `dir` when the system refuses the watch (no such directory,
    /// the inotify limit reached).
    pub fn start(dir: &Path) -> Result<Watcher, WatchError> {
        let (tx, changes) = mpsc::channel(1);
        let error = |source| WatchError {
            dir: dir.to_path_buf(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_app_change(&event) => {
                    // Full: a change is already waiting, which says the same.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "watch: file-system notification failed"),
            })
            .map_err(error)?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(error)?;
        Ok(Watcher {
            _watcher: watcher,
            changes,
            pending: false,
        })
    }

    /// Waits until app files changed and then stayed unchanged for [`DEBOUNCE`]. Returns
    /// `false` if the watch ended (it does not while the `Watcher` lives).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change seen before the cancellation is reported by the next call.
    pub async fn changed(&mut self) -> bool {
        if !self.pending {
            if self.changes.recv().await.is_none() {
                return false;
            }
            self.pending = true;
        }
        // The burst ends when DEBOUNCE passes without a change.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.changes.recv()).await {}
        self.pending = false;
        true
    }
}

/// Whether `event` changed a Lua or YAML file (reads are not changes).
fn is_app_change(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|path| {
            path.extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "lua" | "yaml" | "yml"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hang detector, not a timing assertion.
    const PATIENCE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_lua_edit_in_a_subdirectory_is_reported_once_the_burst_ends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lua")).unwrap();
        let mut watcher = Watcher::start(dir.path()).unwrap();
        let file = dir.path().join("lua/handler.lua");
        for version in 1..=3 {
            std::fs::write(&file, format!("return {version}")).unwrap();
        }
        let changed = tokio::time::timeout(PATIENCE, watcher.changed()).await;
        assert_eq!(changed.ok(), Some(true));
    }

    #[test]
    fn only_lua_and_yaml_files_are_app_changes() {
        let event = |path: &str, kind| notify::Event::new(kind).add_path(PathBuf::from(path));
        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(is_app_change(&event("/app/handler.lua", modify)));
        assert!(is_app_change(&event("/app/app.yaml", modify)));
        assert!(is_app_change(&event("/app/app.yml", EventKind::Any)));
        assert!(!is_app_change(&event("/app/.app.yaml.swp", modify)));
        assert!(!is_app_change(&event("/app/notes.txt", modify)));
        assert!(!is_app_change(&event("/app/handler.lua", read)));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let error = Watcher::start(Path::new("/nonexistent/wsrelay-app")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/wsrelay-app"),
            "{error}"
        );
    }
}
