//! The node's event bus (Wippy's `events` module): best-effort notifications
//! `{system, kind, path, data}` from any process to this node's subscribers whose pattern
//! matches the event's system (and whose kind, if they gave one, is the event's).
//!
//! Sending never waits: each matching subscription gets the event in its buffer (a
//! [`Feed`]; a slow subscriber loses events and is told how many) or not at all once closed.
//! The bus is per node: events do not cross to other cluster nodes. A node has at most
//! [`MAX_BUS_SUBSCRIPTIONS`] open subscriptions.

use std::sync::{Arc, Weak};

use crate::feed::{Fed, Feed, Subscribers};
use crate::Value;

/// The most open event bus subscriptions of one node.
pub const MAX_BUS_SUBSCRIPTIONS: usize = 10_000;

/// One notification on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    /// The system it concerns (`"orders"`), what subscriptions match their pattern against.
    pub system: Arc<str>,
    /// What happened (`"created"`).
    pub kind: Arc<str>,
    /// What it happened to (`"orders/42"`); may be empty.
    pub path: Arc<str>,
    /// Anything more; `Value::Null` for none.
    pub data: Value,
}

/// Why a subscription could not be opened or an event not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The system pattern of a subscription is empty.
    #[error("the system pattern is empty")]
    EmptyPattern,
    /// The system or the kind of an event is empty.
    #[error("the event's {0} is empty")]
    EmptyField(&'static str),
    /// The node has [`MAX_BUS_SUBSCRIPTIONS`] open subscriptions.
    #[error("the node has reached its limit of {limit} event subscriptions")]
    TooManySubscriptions {
        /// The limit.
        limit: usize,
    },
}

/// The subscriptions of a node.
#[derive(Default)]
pub(crate) struct EventBus(Subscribers<Subscriber>);

/// One subscription: what it matches, its buffer and wake-up.
struct Subscriber {
    pattern: Box<str>,
    kind: Option<Box<str>>,
    feed: Feed<Arc<BusEvent>>,
}

/// A subscription to the node's event bus ([`Node::subscribe_events`](crate::Node::subscribe_events)).
/// Dropping it closes it.
pub struct BusWatch {
    inner: Arc<Subscriber>,
    bus: Weak<EventBus>,
}

impl std::fmt::Debug for BusWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusWatch")
            .field("pattern", &self.inner.pattern)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

impl EventBus {
    /// Opens a subscription to the systems matching `pattern` (`*` stands for any run of
    /// characters), of kind `kind` only if given.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        pattern: &str,
        kind: Option<&str>,
    ) -> Result<BusWatch, BusError> {
        if pattern.is_empty() {
            return Err(BusError::EmptyPattern);
        }
        let inner = Arc::new(Subscriber {
            pattern: pattern.into(),
            kind: kind.filter(|k| !k.is_empty()).map(Into::into),
            feed: Feed::new(),
        });
        if !self.0.add(inner.clone(), MAX_BUS_SUBSCRIPTIONS) {
            return Err(BusError::TooManySubscriptions {
                limit: MAX_BUS_SUBSCRIPTIONS,
            });
        }
        Ok(BusWatch {
            inner,
            bus: Arc::downgrade(self),
        })
    }

    /// Hands `event` to every matching subscription; how many got it.
    pub(crate) fn send(&self, event: BusEvent) -> Result<usize, BusError> {
        if event.system.is_empty() {
            return Err(BusError::EmptyField("system"));
        }
        if event.kind.is_empty() {
            return Err(BusError::EmptyField("kind"));
        }
        if !self.0.any() {
            return Ok(0);
        }
        let event = Arc::new(event);
        let mut matched = 0;
        for sub in self.0.lock().iter() {
            if sub.kind.as_deref().is_some_and(|k| k != &*event.kind)
                || !glob_match(&sub.pattern, &event.system)
            {
                continue;
            }
            sub.feed.push(event.clone());
            matched += 1;
        }
        Ok(matched)
    }
}

impl BusWatch {
    /// The next event, or the count of those lost, if one is ready.
    pub fn try_next(&self) -> Option<Fed<Arc<BusEvent>>> {
        self.inner.feed.try_next()
    }

    /// Whether the subscription is closed and has nothing left to read.
    pub fn is_finished(&self) -> bool {
        self.inner.feed.is_finished()
    }

    /// Completes when an event may be ready (or the subscription was closed) after the last
    /// [`try_next`](BusWatch::try_next) found none. One task should wait at a time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a wake-up that comes while nobody waits is kept for the next wait.
    pub async fn changed(&self) {
        self.inner.feed.changed().await;
    }

    /// Stops the subscription. With `flush`, the events already buffered stay readable;
    /// without, they are discarded. Closing twice does nothing more.
    pub fn close(&self, flush: bool) {
        self.inner.feed.close(flush);
        if let Some(bus) = self.bus.upgrade() {
            bus.0.remove(&self.inner);
        }
    }
}

impl Drop for BusWatch {
    fn drop(&mut self) {
        self.close(false);
    }
}

impl crate::Node {
    /// Subscribes to this node's event bus: events whose system matches `pattern` (`*`
    /// stands for any run of characters: `"orders.*"`, `"*"`), of kind `kind` only if given.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`], [`BusError::TooManySubscriptions`].
    pub fn subscribe_events(
        &self,
        pattern: &str,
        kind: Option<&str>,
    ) -> Result<BusWatch, BusError> {
        self.inner.bus.subscribe(pattern, kind)
    }

    /// Hands `event` to this node's matching subscriptions without waiting for any (best
    /// effort: a full or closed subscription does not get it); how many got it.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyField`] for an empty system or kind.
    pub fn send_event(&self, event: BusEvent) -> Result<usize, BusError> {
        self.inner.bus.send(event)
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none
/// included) and every other character for itself: the event bus's system patterns, and the
/// relay's origin patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in the text its run ends for now: on a mismatch the
    // run grows by one and matching resumes after the star.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match as matches;

    #[test]
    fn patterns_match_as_globs() {
        for (pattern, text, expected) in [
            ("orders", "orders", true),
            ("orders", "orders.created", false),
            ("orders.*", "orders.created", true),
            ("orders.*", "orders.eu.created", true),
            ("orders.*", "orders", false),
            ("orders.*", "orders.", true),
            ("*", "anything", true),
            ("*.audit", "users.audit", true),
            ("*.audit", "users.audit.x", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("a**", "a", true),
            ("", "", true),
            ("x", "", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }
}
