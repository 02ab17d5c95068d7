//! [`Error`]: why a [`Runtime`](crate::Runtime) could not start or a route could not be built.

/// Why the runtime could not start, or a relay route or a Lua handler could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Lua app did not load, or did not assemble (every problem names its entry);
    /// or the runtime failed to start (see [`wsrelay_app::AppError::is_config`]).
    #[error(transparent)]
    App(#[from] wsrelay_app::AppError),
    /// A Lua file name given to [`RuntimeBuilder::lua_file`](crate::RuntimeBuilder::lua_file)
    /// is absolute or leaves the app directory.
    #[error("Lua app file name {0:?} must be a relative path inside the app")]
    BadFileName(String),
    /// The runtime was given both an app directory and app files.
    #[error("give the runtime an app directory or app files, not both")]
    DirAndFiles,
    /// A relay option (the `wsrelay.*` names of `post_options`) is unknown or has a bad value.
    #[error("relay options: {0}")]
    RelayOptions(String),
    /// No `function.lua` entry has this id.
    #[error("no function.lua entry {0:?} in the Lua app")]
    NoHandler(String),
}
