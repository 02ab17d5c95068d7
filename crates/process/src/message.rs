//! What processes receive: inbox [`Message`]s and system [`Event`]s.

use std::fmt;
use std::sync::Arc;

use crate::{Pid, Value};

/// A message in a process's inbox: a topic, the sender and one or more payloads.
#[derive(Clone, Debug)]
pub struct Message {
    from: Option<Pid>,
    topic: Arc<str>,
    payload: Value,
    extra: Vec<Value>,
}

impl Message {
    /// A message with one payload.
    pub fn new(
        from: Option<Pid>,
        topic: impl Into<Arc<str>>,
        payload: impl Into<Value>,
    ) -> Message {
        Message {
            from,
            topic: topic.into(),
            payload: payload.into(),
            extra: Vec::new(),
        }
    }

    /// Appends payloads after the first one (`process.send(pid, topic, a, b, c)`).
    pub fn with_extra(mut self, extra: Vec<Value>) -> Message {
        self.extra = extra;
        self
    }

    /// The sender, if the message was sent by a process.
    pub fn from(&self) -> Option<&Pid> {
        self.from.as_ref()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic as a shared string (no allocation to keep it).
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The first payload.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payloads after the first one.
    pub fn extra(&self) -> &[Value] {
        &self.extra
    }

    /// Takes the message apart: sender, topic, first payload, further payloads.
    pub fn into_parts(self) -> (Option<Pid>, Arc<str>, Value, Vec<Value>) {
        (self.from, self.topic, self.payload, self.extra)
    }
}

/// How a process ended: a value, and an error when it ended abnormally.
///
/// Links propagate only exits with an error (docs/spec.md §2).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExitResult {
    /// The value the process returned (or the reason a connection ended).
    pub value: Value,
    /// The error, if the exit was abnormal.
    pub error: Option<Arc<str>>,
}

impl ExitResult {
    /// A normal exit with `value`.
    pub fn normal(value: impl Into<Value>) -> ExitResult {
        ExitResult {
            value: value.into(),
            error: None,
        }
    }

    /// An abnormal exit with `error`.
    pub fn error(error: impl fmt::Display) -> ExitResult {
        ExitResult {
            value: Value::Null,
            error: Some(error.to_string().into()),
        }
    }

    /// An abnormal exit with both a value and an error.
    pub fn error_with_value(value: impl Into<Value>, error: impl fmt::Display) -> ExitResult {
        ExitResult {
            value: value.into(),
            error: Some(error.to_string().into()),
        }
    }

    /// Whether the exit was abnormal.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// The error text, if any.
    pub fn error_text(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl From<()> for ExitResult {
    fn from(_: ()) -> ExitResult {
        ExitResult::normal(Value::Null)
    }
}

impl From<Value> for ExitResult {
    fn from(value: Value) -> ExitResult {
        ExitResult::normal(value)
    }
}

impl<T: Into<Value>, E: fmt::Display> From<Result<T, E>> for ExitResult {
    fn from(result: Result<T, E>) -> ExitResult {
        match result {
            Ok(v) => ExitResult::normal(v),
            Err(e) => ExitResult::error(e),
        }
    }
}

/// Error texts the runtime itself uses in exit results (docs/spec.md §2).
pub mod reason {
    /// The monitored process did not exist (already dead or never existed).
    pub const NOPROC: &str = "noproc";
    /// The process was stopped by `terminate`.
    pub const TERMINATED: &str = "terminated";
    /// A linked process failed and this process did not trap links.
    pub const LINKED_FAILED: &str = "linked process failed";
    /// The node stopped while the process was running.
    pub const SHUTDOWN: &str = "shutdown";
    /// The remote node of the process became unreachable.
    pub const NOCONNECTION: &str = "noconnection";
}

/// A system event delivered to a process's events stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A monitored process exited (`pid.exit`).
    Exit {
        /// The process that exited.
        from: Pid,
        /// How it ended.
        result: ExitResult,
    },
    /// A linked process exited with an error and this process traps links (`pid.link.down`).
    LinkDown {
        /// The process that exited.
        from: Pid,
        /// How it ended.
        result: ExitResult,
    },
    /// Somebody asked this process to stop (`pid.cancel`).
    Cancel {
        /// Who asked, if a process did.
        from: Option<Pid>,
        /// Why.
        reason: Value,
    },
}

impl Event {
    /// The event kind as named in the Lua API: `pid.exit`, `pid.link.down` or `pid.cancel`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exit { .. } => "pid.exit",
            Event::LinkDown { .. } => "pid.link.down",
            Event::Cancel { .. } => "pid.cancel",
        }
    }

    /// The process the event is about (the sender of a cancel).
    pub fn from(&self) -> Option<&Pid> {
        match self {
            Event::Exit { from, .. } | Event::LinkDown { from, .. } => Some(from),
            Event::Cancel { from, .. } => from.as_ref(),
        }
    }
}
