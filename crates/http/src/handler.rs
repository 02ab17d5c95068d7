//! The [`Handler`] trait: what an endpoint runs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{Request, Response};

/// A boxed, `Send` future, the return type of [`Handler`] and
/// [`Middleware`](crate::Middleware) calls.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Turns a request into a response.
///
/// A handler is shared by every request to its endpoint (`Arc<dyn Handler>`)
/// and must be object safe, so it returns a boxed future. It owns the request:
/// read the body with [`Body::collect_bytes`](crate::Body::collect_bytes),
/// which enforces the server's size limit, and the path parameters with
/// `req.extensions().get::<PathParams>()`. Errors are responses: a handler
/// returns a `4xx`/`5xx` response rather than failing. A handler that panics
/// gets a `500` from the server.
///
/// Write Rust handlers as closures with [`handler_fn`].
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request) -> BoxFuture<Response>;
}

/// Makes a [`Handler`] from an async closure.
///
/// # Examples
///
/// ```
/// use http::StatusCode;
/// use wsrelay_http::{handler_fn, response, PathParams};
///
/// let hello = handler_fn(|req| async move {
///     let name = req
///         .extensions()
///         .get::<PathParams>()
///         .and_then(|p| p.get("name"))
///         .unwrap_or("world")
///         .to_owned();
///     response::text(StatusCode::OK, format!("hello {name}"))
/// });
/// # let _ = hello;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    HandlerFn { f }
}

/// A [`Handler`] made from a closure by [`handler_fn`].
#[derive(Clone, Copy)]
pub struct HandlerFn<F> {
    f: F,
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    fn call(&self, req: Request) -> BoxFuture<Response> {
        Box::pin((self.f)(req))
    }
}
