//! Subscriptions to the membership changes of a scope (Wippy's `g:monitor` and `g:events`).
//!
//! A [`GroupWatch`] is created under the scope's group lock together with a snapshot of the
//! members, and every join and leave is reported under that same lock (from the scope's
//! internal add and remove, so joins made on behalf of other processes, exits and remote
//! changes all show up): a change is either in the snapshot or in the events, never in both
//! and never in neither.
//!
//! **Bounds.** A watch buffers at most [`WATCH_BUFFER`] events (a [`Feed`]): a join or leave
//! never waits for a slow subscriber; the subscriber gets one [`GroupEvent::Overflow`] marker
//! with the count of what it lost, in the place of the gap. A scope has at most
//! [`MAX_WATCHES`] open watches.

use std::sync::{Arc, Weak};

use super::ScopeInner;
use crate::feed::{Fed, Feed, Subscribers, FEED_BUFFER};
use crate::Pid;

/// The most events a watch buffers before it drops and counts.
pub const WATCH_BUFFER: usize = FEED_BUFFER;

/// The most open watches (monitors and scope-wide subscriptions) of one scope.
pub const MAX_WATCHES: usize = 10_000;

/// A membership change, or the mark of changes a slow subscriber lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupEvent {
    /// `pids` joined `group` (a process listed once per join).
    Joined {
        /// The group.
        group: Arc<str>,
        /// The processes that joined.
        pids: Vec<Pid>,
    },
    /// `pids` left `group` (a process listed once per membership it lost, by a leave or its
    /// exit).
    Left {
        /// The group.
        group: Arc<str>,
        /// The processes that left.
        pids: Vec<Pid>,
    },
    /// `dropped` changes were lost here because the buffer was full.
    Overflow {
        /// How many.
        dropped: u64,
    },
}

/// Why a watch could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The group name is empty.
    #[error("the group name is empty")]
    EmptyName,
    /// The scope has [`MAX_WATCHES`] open watches.
    #[error("scope {scope:?} has reached its limit of {limit} subscriptions")]
    TooManyWatches {
        /// The scope.
        scope: String,
        /// The limit.
        limit: usize,
    },
}

/// The open watches of a scope: per group, and scope-wide.
#[derive(Default)]
pub(super) struct Watches(Subscribers<WatchInner>);

/// One subscription: what it watches, its buffer and wake-up.
struct WatchInner {
    /// The group watched; `None`: the whole scope.
    group: Option<Arc<str>>,
    feed: Feed<GroupEvent>,
}

/// A subscription to membership changes ([`GroupScope::monitor`](super::GroupScope::monitor),
/// [`GroupScope::watch_all`](super::GroupScope::watch_all)). Dropping it closes it.
pub struct GroupWatch {
    inner: Arc<WatchInner>,
    scope: Weak<ScopeInner>,
}

impl std::fmt::Debug for GroupWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWatch")
            .field("group", &self.inner.group)
            .finish()
    }
}

impl Watches {
    /// Registers a watch of `group` (`None`: every group). The caller holds the scope's group
    /// lock, which makes the registration atomic with its snapshot.
    pub(super) fn open(
        &self,
        scope: &Arc<ScopeInner>,
        group: Option<Arc<str>>,
    ) -> Result<GroupWatch, WatchError> {
        let inner = Arc::new(WatchInner {
            group,
            feed: Feed::new(),
        });
        if !self.0.add(inner.clone(), MAX_WATCHES) {
            return Err(WatchError::TooManyWatches {
                scope: scope.name.to_string(),
                limit: MAX_WATCHES,
            });
        }
        Ok(GroupWatch {
            inner,
            scope: Arc::downgrade(scope),
        })
    }

    /// Whether any watch is open (read without the lock): a caller that must build the
    /// group's name for [`emit`](Watches::emit) checks this first.
    pub(super) fn any(&self) -> bool {
        self.0.any()
    }

    /// Reports a change of `group` to its watches. Called with the scope's group lock held.
    pub(super) fn emit(&self, group: &Arc<str>, joined: bool, pid: &Pid, times: usize) {
        if times == 0 || !self.any() {
            return;
        }
        for watch in self.0.lock().iter() {
            if watch.group.as_ref().is_some_and(|g| g != group) {
                continue;
            }
            let pids = vec![pid.clone(); times];
            let event = if joined {
                GroupEvent::Joined {
                    group: group.clone(),
                    pids,
                }
            } else {
                GroupEvent::Left {
                    group: group.clone(),
                    pids,
                }
            };
            watch.feed.push(event);
        }
    }
}

impl GroupWatch {
    /// The next change, or the overflow marker, if one is ready.
    pub fn try_next(&self) -> Option<GroupEvent> {
        match self.inner.feed.try_next()? {
            Fed::Event(event) => Some(event),
            Fed::Lost(dropped) => Some(GroupEvent::Overflow { dropped }),
        }
    }

    /// Whether the watch is closed and has nothing left to read.
    pub fn is_finished(&self) -> bool {
        self.inner.feed.is_finished()
    }

    /// Completes when an event may be ready (or the watch was closed) after the last
    /// [`try_next`](GroupWatch::try_next) found none. One task should wait at a time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a wake-up that comes while nobody waits is kept for the next wait.
    pub async fn changed(&self) {
        self.inner.feed.changed().await;
    }

    /// Stops the watch. With `flush`, the events already buffered stay readable; without, they
    /// are discarded. Later changes are not reported. Closing twice does nothing more.
    pub fn close(&self, flush: bool) {
        self.inner.feed.close(flush);
        if let Some(scope) = self.scope.upgrade() {
            scope.watches.0.remove(&self.inner);
        }
    }
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.close(false);
    }
}
