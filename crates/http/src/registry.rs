//! The registry of middleware by name, as config names them.
//!
//! It lives apart from the [`Middleware`] trait so that the built-in
//! middleware (`cors`) can implement the trait without the trait's module
//! knowing them: the registry is the one place that knows both.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::cors::{self, Cors};
use crate::middleware::{Middleware, MiddlewareFactory, Options};

/// Maps middleware names (as written in config) to factories.
///
/// [`MiddlewareRegistry::with_builtins`] knows the middleware this crate
/// ships (`cors`); other crates add theirs with
/// [`register`](Self::register) (the relay registers `websocket_relay`).
///
/// ```
/// use std::sync::Arc;
/// use wsrelay_http::{middleware_fn, MiddlewareRegistry, Options};
///
/// let mut registry = MiddlewareRegistry::with_builtins();
/// registry.register("noop", |_options: &Options| {
///     Ok(Arc::new(middleware_fn(|req, next| next.run(req))) as _)
/// });
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["cors", "noop"]);
/// assert!(registry.build("cors", &Options::new()).is_ok());
/// ```
#[derive(Clone, Default)]
pub struct MiddlewareRegistry {
    factories: BTreeMap<String, MiddlewareFactory>,
}

impl MiddlewareRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that knows this crate's built-in middleware: `cors`
    /// (see [`Cors`](crate::Cors)).
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register(cors::NAME, |options: &Options| {
            Ok(Arc::new(Cors::from_options(options)?) as Arc<dyn Middleware>)
        });
        registry
    }

    /// Registers `factory` under `name`, replacing any factory of that name.
    pub fn register<F>(&mut self, name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&Options) -> Result<Arc<dyn Middleware>, String> + Send + Sync + 'static,
    {
        self.factories.insert(name.into(), Arc::new(factory));
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the middleware `name` from `options`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownMiddleware`](crate::Error::UnknownMiddleware) when
    /// `name` is not registered, and
    /// [`Error::MiddlewareOptions`](crate::Error::MiddlewareOptions) with the
    /// factory's message when it rejects the options.
    pub fn build(
        &self,
        name: &str,
        options: &Options,
    ) -> Result<Arc<dyn Middleware>, crate::Error> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| crate::Error::UnknownMiddleware {
                name: name.to_owned(),
            })?;
        factory(options).map_err(|message| crate::Error::MiddlewareOptions {
            name: name.to_owned(),
            message,
        })
    }
}

impl fmt::Debug for MiddlewareRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiddlewareRegistry")
            .field("names", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}
