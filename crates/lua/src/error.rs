//! Errors of the Lua engine.

use std::time::Duration;

use thiserror::Error;

/// Why a Lua entry could not be registered, started or called.
///
/// Every variant names the entry (or chunk) it is about.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LuaError {
    /// The source does not compile; `message` has the line number.
    #[error("{chunk}: syntax error: {message}")]
    Syntax {
        /// The chunk (entry id).
        chunk: String,
        /// Lua's message, `chunk:line: ...`.
        message: String,
    },
    /// The chunk did not return a function nor a table holding `method`.
    #[error("{entry}: method \"{method}\" not found in the table returned by the chunk")]
    MethodNotFound {
        /// The entry id.
        entry: String,
        /// The method named by the entry.
        method: String,
    },
    /// The Lua code raised an error; `message` includes the Lua traceback.
    #[error("{entry}: {message}")]
    Runtime {
        /// The entry id.
        entry: String,
        /// The error and its traceback.
        message: String,
    },
    /// The call did not finish in time and was stopped.
    #[error("{entry}: timed out after {after:?}")]
    Timeout {
        /// The entry id.
        entry: String,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The engine (or the worker that ran the call) has stopped.
    #[error("the Lua engine has stopped")]
    Stopped,
    /// The engine could not be set up (a worker thread or Lua state failed to start).
    #[error("cannot start the Lua engine: {0}")]
    Init(String),
}

/// The text of the error that ends the process when a method is missing (shared by processes
/// and function calls so both say the same).
pub(crate) fn method_not_found(entry: &str, method: &str) -> String {
    LuaError::MethodNotFound {
        entry: entry.to_owned(),
        method: method.to_owned(),
    }
    .to_string()
}
