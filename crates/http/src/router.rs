//! Routers: a path prefix, two middleware chains, endpoints and static files.
//!
//! A request goes through its router like this:
//!
//! ```text
//! pre-match chain (middleware)          runs for every request under the prefix
//!   └─ route match
//!        ├─ endpoint found → post-match chain (post_middleware) → handler
//!        ├─ path known, method not → 405 with Allow
//!        ├─ static mount found     → file, 404 or 400
//!        └─ nothing                → 404
//! ```
//!
//! Endpoint paths are relative to the router's prefix: prefix `/api` and path
//! `/users/{id}` serve `/api/users/42`. Handlers see the full, unmodified URI.
//! When several endpoint patterns match a path, the most specific wins (a
//! literal segment beats a parameter at the first place they differ). A `GET`
//! endpoint also answers `HEAD` (the handler sees `HEAD`; hyper sends no body)
//! unless a `HEAD` endpoint of that path exists. An RFC 8441 extended CONNECT
//! (a WebSocket over HTTP/2) runs the `GET` endpoint of its path, as its HTTP/1.1
//! upgrade would. Endpoints are tried before static mounts.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderValue, ALLOW};
use http::{Method, StatusCode};

use crate::handler::{BoxFuture, Handler};
use crate::middleware::{Chain, Middleware, Next};
use crate::path::{self, Pattern};
use crate::static_files::{StaticDir, StaticFiles};
use crate::{response, Error, Request, Response};

/// Path parameters of the matched endpoint, a request extension.
///
/// Values are percent-decoded (invalid UTF-8 is replaced with `U+FFFD`).
///
/// ```
/// # use wsrelay_http::{PathParams, Request};
/// # fn f(req: &Request) -> Option<&str> {
/// req.extensions().get::<PathParams>()?.get("id")
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// All parameters, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The pattern of the matched endpoint, prefix included (e.g.
/// `/api/users/{id}`), a request extension useful for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedPath(Arc<str>);

impl MatchedPath {
    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A router: endpoints and static files under a path prefix, with a
/// pre-match and a post-match middleware chain.
///
/// # Matching rules
///
/// - The server picks the router with the longest prefix that matches the
///   path on a segment boundary (`/api` matches `/api` and `/api/x`, not
///   `/apix`).
/// - The pre-match chain ([`middleware`](Self::middleware)) runs for every
///   request the router gets, before matching, so it also sees the ones that
///   end in `404` or `405`.
/// - Endpoint paths are relative to the prefix and compared segment by
///   segment on the raw (percent-encoded) path; a `{name}` segment matches
///   any non-empty segment and its decoded value lands in [`PathParams`].
///   Handlers see the full, unmodified URI.
/// - A trailing slash is ignored, in requests and in patterns: `/users/`
///   matches `/users`. Empty inner segments (`/a//b`) match nothing.
/// - When several patterns match, the most specific wins: at the first
///   segment where they differ, a literal beats a parameter.
/// - A path that matches with another method gets `405` and an `Allow`
///   header listing the methods of every matching pattern.
/// - `HEAD` runs the `GET` endpoint of the path (the handler sees `HEAD`;
///   hyper sends the headers only) unless a `HEAD` endpoint exists.
/// - A path that matches no endpoint goes to the static mount with the
///   longest matching path, if any, else `404`. The post-match chain
///   ([`post_middleware`](Self::post_middleware)) wraps endpoint handlers
///   only: not `404`/`405` answers and not static files.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use http::{Method, StatusCode};
/// use wsrelay_http::{handler_fn, response, Router};
///
/// let mut router = Router::new("/api")?;
/// router.route(
///     Method::GET,
///     "/users/{id}",
///     Arc::new(handler_fn(|_req| async { response::text(StatusCode::OK, "a user") })),
/// )?;
/// # Ok::<(), wsrelay_http::Error>(())
/// ```
pub struct Router {
    prefix: String,
    pre: Vec<Arc<dyn Middleware>>,
    post: Vec<Arc<dyn Middleware>>,
    routes: Vec<Route>,
    statics: Vec<(String, StaticFiles)>,
}

struct Route {
    method: Method,
    pattern: Pattern,
    matched: MatchedPath,
    handler: Arc<dyn Handler>,
}

impl Router {
    /// A router for paths under `prefix` (`/` for all). A trailing slash is
    /// ignored; `/api` serves `/api` and `/api/...`, not `/apix`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] when `prefix` does not start with `/` or holds
    /// `{`, `}`, `?` or `#`.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        Ok(Self::with_normalized_prefix(path::normalize_prefix(
            prefix,
        )?))
    }

    pub(crate) fn with_normalized_prefix(prefix: String) -> Self {
        Self {
            prefix,
            pre: Vec::new(),
            post: Vec::new(),
            routes: Vec::new(),
            statics: Vec::new(),
        }
    }

    /// The normalized prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Appends a middleware to the pre-match chain, which runs for every
    /// request under the prefix, before route matching.
    pub fn middleware(&mut self, middleware: Arc<dyn Middleware>) -> &mut Self {
        self.pre.push(middleware);
        self
    }

    /// Appends a middleware to the post-match chain, which wraps the handler
    /// of a matched endpoint (and nothing else: not 404/405, not static files).
    pub fn post_middleware(&mut self, middleware: Arc<dyn Middleware>) -> &mut Self {
        self.post.push(middleware);
        self
    }

    /// Adds an endpoint: `method` and `path` (relative to the prefix, with
    /// `{param}` segments) run `handler`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a malformed path and
    /// [`Error::DuplicateRoute`] when an endpoint with the same method
    /// matches exactly the same paths.
    pub fn route(
        &mut self,
        method: Method,
        path: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<&mut Self, Error> {
        let pattern = Pattern::parse(path)?;
        let duplicate = self
            .routes
            .iter()
            .any(|r| r.method == method && r.pattern.same_shape(&pattern));
        if duplicate {
            return Err(Error::DuplicateRoute {
                method,
                path: path.to_owned(),
            });
        }
        let matched = MatchedPath(join(&self.prefix, pattern.as_str()).into());
        self.routes.push(Route {
            method,
            pattern,
            matched,
            handler,
        });
        // Stable: among equally specific patterns the first added wins.
        self.routes
            .sort_by(|a, b| a.pattern.specificity(&b.pattern));
        Ok(self)
    }

    /// Serves `dir` under its path (relative to the prefix); among mounts, the longest
    /// path that matches wins.
    pub fn static_files(&mut self, dir: StaticDir) -> &mut Self {
        self.statics.push((dir.path, dir.files));
        self.statics
            .sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
        self
    }

    /// Freezes the router for serving.
    pub(crate) fn into_shared(self) -> SharedRouter {
        let pre: Chain = self.pre.into();
        let dispatch = Arc::new(Dispatch {
            prefix: self.prefix.clone(),
            post: self.post.into(),
            routes: self.routes,
            statics: self.statics,
        });
        SharedRouter {
            prefix: self.prefix,
            pre,
            dispatch,
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("prefix", &self.prefix)
            .field("middleware", &self.pre.len())
            .field("post_middleware", &self.post.len())
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.matched.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field("statics", &self.statics)
            .finish()
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix, path) {
        ("/", path) => path.to_owned(),
        (prefix, "/") => prefix.to_owned(),
        (prefix, path) => format!("{prefix}{path}"),
    }
}

// ===== impl SharedRouter =====

/// A router ready to serve, shared by all connections of its server.
#[derive(Clone)]
pub(crate) struct SharedRouter {
    prefix: String,
    pre: Chain,
    dispatch: Arc<Dispatch>,
}

impl SharedRouter {
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Mounts `files` at the router's root, behind its endpoints.
    pub(crate) fn mount_root(&mut self, files: StaticFiles) {
        // Only called while the server is built, before any clone is shared.
        if let Some(dispatch) = Arc::get_mut(&mut self.dispatch) {
            dispatch.statics.push(("/".to_owned(), files));
        }
    }

    /// Runs the pre-match chain, which ends in route matching.
    pub(crate) fn handle(&self, req: Request) -> BoxFuture<Response> {
        Next::new(self.pre.clone(), self.dispatch.clone()).run(req)
    }
}

/// The end of the pre-match chain: route matching and dispatch.
struct Dispatch {
    prefix: String,
    post: Chain,
    routes: Vec<Route>,
    statics: Vec<(String, StaticFiles)>,
}

impl Handler for Dispatch {
    fn call(&self, req: Request) -> BoxFuture<Response> {
        let path = req.uri().path().to_owned();
        let rest = path::strip_prefix(&self.prefix, &path).unwrap_or("");
        let segments = path::segments(rest);
        // RFC 8441: a WebSocket over HTTP/2 runs the endpoint an HTTP/1.1 upgrade would.
        let method = if crate::h2::is_websocket_connect(&req) {
            &Method::GET
        } else {
            req.method()
        };
        match self.find_route(method, &segments) {
            RouteMatch::Found { route, params } => {
                let mut req = req;
                req.extensions_mut().insert(PathParams(params));
                req.extensions_mut().insert(route.matched.clone());
                Next::new(self.post.clone(), route.handler.clone()).run(req)
            }
            RouteMatch::WrongMethod(allow) => Box::pin(async move { method_not_allowed(allow) }),
            RouteMatch::None => self.serve_static(req, rest.to_owned()),
        }
    }
}

enum RouteMatch<'a> {
    Found {
        route: &'a Route,
        params: Vec<(String, String)>,
    },
    WrongMethod(Vec<Method>),
    None,
}

impl Dispatch {
    /// Routes are sorted most specific first, so the first hit wins.
    fn find_route(&self, method: &Method, segments: &[&str]) -> RouteMatch<'_> {
        let mut allow = Vec::new();
        let mut head_fallback = None;
        for route in &self.routes {
            let Some(params) = route.pattern.matches(segments) else {
                continue;
            };
            if route.method == *method {
                return RouteMatch::Found { route, params };
            }
            if *method == Method::HEAD && route.method == Method::GET && head_fallback.is_none() {
                head_fallback = Some((route, params));
            }
            allow.push(route.method.clone());
        }
        match head_fallback {
            Some((route, params)) => RouteMatch::Found { route, params },
            None if allow.is_empty() => RouteMatch::None,
            None => RouteMatch::WrongMethod(allow),
        }
    }

    fn serve_static(&self, req: Request, rest: String) -> BoxFuture<Response> {
        let mount = self
            .statics
            .iter()
            .find_map(|(mount, files)| Some((path::strip_prefix(mount, &rest)?, files)));
        let Some((file_path, files)) = mount else {
            return Box::pin(async { response::text(StatusCode::NOT_FOUND, "not found") });
        };
        let file_path = file_path.to_owned();
        let files = files.clone();
        Box::pin(async move { files.serve(&req, &file_path).await })
    }
}

fn method_not_allowed(mut allow: Vec<Method>) -> Response {
    if allow.contains(&Method::GET) && !allow.contains(&Method::HEAD) {
        allow.push(Method::HEAD);
    }
    allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    allow.dedup();
    let allow = allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if let Ok(value) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(ALLOW, value);
    }
    res
}
