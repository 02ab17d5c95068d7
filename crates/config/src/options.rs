//! Hooks that let other crates take part in validation without this crate
//! depending on them.
//!
//! The set of middleware names lives in the HTTP crate and the Lua compiler in
//! the Lua crate; the app crate passes both here. With the default options
//! every middleware name is unknown (none are registered) and Lua sources are
//! not compiled, only read.

use std::fmt;

/// Compiles a Lua chunk without running it: `(chunk name, source)` →
/// `Err(message)` on a syntax error.
pub type LuaChecker = Box<dyn Fn(&str, &str) -> Result<(), String> + Send + Sync>;

/// Options for [`AppConfig::load`](crate::AppConfig::load) and friends.
///
/// # Examples
///
/// ```
/// use wsrelay_config::LoadOptions;
///
/// let opts = LoadOptions::new()
///     .with_middleware(["websocket_relay", "cors"])
///     .with_lua_checker(|_chunk, source| {
///         if source.contains("syntax error") { Err("boom".into()) } else { Ok(()) }
///     });
/// assert!(opts.known_middleware.contains(&"cors".to_owned()));
/// ```
#[derive(Default)]
pub struct LoadOptions {
    /// Middleware names a router may list in `middleware`/`post_middleware`.
    pub known_middleware: Vec<String>,
    /// Called once per `function.lua`/`process.lua` source. The chunk name is
    /// the `file://` path as resolved (e.g. `app/handler.lua`) or, for inline
    /// sources, the entry id (e.g. `app:handler`). `None` skips the check.
    pub lua_checker: Option<LuaChecker>,
    /// Fields an entry's kind does not have are errors instead of warnings (the CLI's
    /// `--strict`). Off by default: Wippy apps may carry fields wsrelay ignores.
    pub strict: bool,
    /// The variables `${env:NAME}` placeholders read; `None` (the default) reads the
    /// process environment.
    pub env: Option<std::collections::HashMap<String, String>>,
}

impl LoadOptions {
    /// Options with no middleware registered and no Lua check.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds middleware names to [`known_middleware`](Self::known_middleware).
    #[must_use]
    pub fn with_middleware<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.known_middleware
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Sets [`strict`](Self::strict).
    #[must_use]
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Makes placeholders read `vars` instead of the process environment.
    #[must_use]
    pub fn with_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Sets the Lua syntax checker.
    #[must_use]
    pub fn with_lua_checker<F>(mut self, checker: F) -> Self
    where
        F: Fn(&str, &str) -> Result<(), String> + Send + Sync + 'static,
    {
        self.lua_checker = Some(Box::new(checker));
        self
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("known_middleware", &self.known_middleware)
            .field("lua_checker", &self.lua_checker.as_ref().map(|_| "<fn>"))
            .field("strict", &self.strict)
            .field("env", &self.env.as_ref().map(|vars| vars.len()))
            .finish()
    }
}
