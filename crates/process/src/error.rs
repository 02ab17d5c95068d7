//! Errors of the process runtime.

use thiserror::Error;

/// Why a message could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The PID names no live process of this node.
    #[error("no process {0}")]
    NoProcess(String),
    /// No process is registered under the name.
    #[error("no process registered as {0:?}")]
    NoName(String),
    /// The text is neither a PID nor a name.
    #[error("invalid destination {0:?}: {1}")]
    BadDestination(String, String),
    /// Topics starting with `@` are reserved for the runtime.
    #[error("topic {0:?} is reserved (topics starting with '@' are)")]
    ReservedTopic(String),
    /// The PID belongs to another node that cannot be reached now.
    #[error("node unreachable: {0}")]
    NodeUnreachable(String),
    /// The message is larger than another node accepts (`message_too_big`).
    #[error("message_too_big: {0} bytes exceed the limit between nodes")]
    TooBig(usize),
}

/// Why a process could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No host with that id was added to the node.
    #[error("unknown process host {0:?}")]
    UnknownHost(String),
    /// The host already runs its maximum number of processes.
    #[error("process host {host:?} is full ({max} processes)")]
    HostFull {
        /// The host id.
        host: String,
        /// Its limit.
        max: usize,
    },
    /// No process factory is registered for the entry id.
    #[error("unknown process entry {0:?}")]
    UnknownEntry(String),
    /// The requested name is taken.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The parent to monitor or link to is not alive.
    #[error("parent process {0} is not alive")]
    ParentGone(String),
    /// The factory refused to start the process.
    #[error("cannot start {entry}: {message}")]
    Factory {
        /// The entry id.
        entry: String,
        /// What went wrong.
        message: String,
    },
    /// The node is shutting down and starts no new processes.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// Another process holds the name.
    #[error("name {0:?} is already registered")]
    Taken(String),
    /// Names must be non-empty, at most 255 bytes, and must not look like a PID.
    #[error("invalid name {0:?}: names are 1-255 bytes and do not start with '{{'")]
    Invalid(String),
    /// The process to register is not alive.
    #[error("process {0} is not alive")]
    NotAlive(String),
    /// The name is not held by the process.
    #[error("name {0:?} is not registered to this process")]
    NotOwner(String),
    /// The cluster name store cannot be reached (cluster-scope names only).
    #[error("name {0:?}: cluster name store unavailable: {1}")]
    Unavailable(String, String),
}

/// Why a monitor or link could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The other process is not alive (links to dead processes fail at once).
    #[error("noproc: process {0} is not alive")]
    NoProc(String),
    /// The calling process is no longer alive.
    #[error("the calling process has exited")]
    SelfDead,
    /// A process cannot link to or monitor itself.
    #[error("a process cannot link to or monitor itself")]
    SelfReference,
    /// The other process is on a node that cannot be reached.
    #[error("node unreachable: {0}")]
    NodeUnreachable(String),
}
