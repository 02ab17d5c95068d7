//! Middleware: code that wraps the rest of a chain.
//!
//! A router has two chains. The *pre-match* chain (`middleware`) runs for
//! every request under the router's prefix, before route matching, so it also
//! sees requests that end in `404`/`405`. The *post-match* chain
//! (`post_middleware`) wraps only a matched endpoint's handler, so it sees the
//! [`PathParams`](crate::PathParams) and the handler's response. Within a
//! chain, middleware run in the order they are listed: the first one listed
//! is the outermost.
//!
//! A [`Middleware`] gets the request and a [`Next`]; it may change the
//! request, answer by itself, or call [`Next::run`] and change the response.
//! The request's extensions, including hyper's upgrade handle, pass through
//! the chain untouched, so a middleware can call
//! `hyper::upgrade::on(&mut req)` before it runs the handler and return
//! `101 Switching Protocols` afterwards.
//!
//! Middleware are named in config; a
//! [`MiddlewareRegistry`](crate::MiddlewareRegistry) maps each name to a
//! factory that validates the router's options when the config is loaded.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::handler::{BoxFuture, Handler};
use crate::{Request, Response};

/// A router's middleware options: the string map of `options` or
/// `post_options` in config, shared by every middleware of that chain.
pub type Options = BTreeMap<String, String>;

/// A factory that builds a middleware from a router's [`Options`].
///
/// It returns `Err` with a message naming the bad option, so a bad value is
/// reported when the config is loaded, not on the first request.
pub type MiddlewareFactory =
    Arc<dyn Fn(&Options) -> Result<Arc<dyn Middleware>, String> + Send + Sync>;

/// Code that runs around the rest of a chain.
///
/// # Examples
///
/// A middleware that adds a header to every response:
///
/// ```
/// use http::HeaderValue;
/// use wsrelay_http::{BoxFuture, Middleware, Next, Request, Response};
///
/// #[derive(Debug)]
/// struct PoweredBy;
///
/// impl Middleware for PoweredBy {
///     fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
///         Box::pin(async move {
///             let mut res = next.run(req).await;
///             res.headers_mut()
///                 .insert("x-powered-by", HeaderValue::from_static("wsrelay"));
///             res
///         })
///     }
/// }
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles one request; call `next.run(req)` to run the rest of the chain.
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response>;
}

/// Makes a [`Middleware`] from an async closure.
///
/// ```
/// use wsrelay_http::middleware_fn;
///
/// let passthrough = middleware_fn(|req, next| async move { next.run(req).await });
/// # let _ = passthrough;
/// ```
pub fn middleware_fn<F, Fut>(f: F) -> MiddlewareFn<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    MiddlewareFn { f }
}

/// A [`Middleware`] made from a closure by [`middleware_fn`].
#[derive(Clone, Copy)]
pub struct MiddlewareFn<F> {
    f: F,
}

impl<F> fmt::Debug for MiddlewareFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiddlewareFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Middleware for MiddlewareFn<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        Box::pin((self.f)(req, next))
    }
}

// ===== impl Chain / Next =====

/// An ordered list of middleware.
pub(crate) type Chain = Arc<[Arc<dyn Middleware>]>;

/// The rest of a middleware chain, ending in a handler.
pub struct Next {
    chain: Chain,
    index: usize,
    handler: Arc<dyn Handler>,
}

impl Next {
    /// The start of `chain`, which ends in `handler`.
    pub(crate) fn new(chain: Chain, handler: Arc<dyn Handler>) -> Self {
        Self {
            chain,
            index: 0,
            handler,
        }
    }

    /// A chain with no middleware left: [`run`](Self::run) calls `handler`. This is how a
    /// middleware runs outside a router, around a handler of the embedding app's:
    /// `middleware.call(req, Next::handler(handler))`.
    pub fn handler(handler: Arc<dyn Handler>) -> Self {
        Self::new(Arc::from(Vec::new()), handler)
    }

    /// Runs the rest of the chain (the next middleware, or the handler).
    pub fn run(self, req: Request) -> BoxFuture<Response> {
        match self.chain.get(self.index).cloned() {
            Some(middleware) => {
                let next = Self {
                    index: self.index + 1,
                    ..self
                };
                middleware.call(req, next)
            }
            None => self.handler.call(req),
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &(self.chain.len() - self.index))
            .finish_non_exhaustive()
    }
}
