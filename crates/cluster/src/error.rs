//! Why a cluster node could not start.

use std::path::PathBuf;

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node or cluster name is not a valid subject token.
    #[error("invalid {what} name {name:?}: use letters, digits, '-' and '_'")]
    InvalidName {
        /// `node` or `cluster`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The credentials file is unusable.
    #[error("credentials file {file}: {problem}")]
    Credentials {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The cluster secret is unusable.
    #[error("cluster secret {origin}: {problem}")]
    Secret {
        /// Where the secret came from (its file, or `ClusterSecret::new`).
        origin: String,
        /// What is wrong.
        problem: String,
    },
    /// A setting has a value that cannot be used.
    #[error("cluster setting {setting} = {value:?}: {problem}")]
    InvalidSetting {
        /// The setting (an option or environment variable name).
        setting: String,
        /// The value given.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// NATS could not be reached.
    #[error("cannot connect to NATS at {urls}: {problem}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// Why.
        problem: String,
    },
    /// The names bucket could not be opened.
    #[error("cluster names: {0}")]
    Names(String),
    /// The cluster runtime could not start.
    #[error("cannot start the cluster runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
