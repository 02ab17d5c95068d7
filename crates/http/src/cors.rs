//! The built-in `cors` middleware.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::handler::BoxFuture;
use crate::middleware::{Middleware, Next, Options};
use crate::{response, Request, Response};

/// The name `cors` is registered under.
pub(crate) const NAME: &str = "cors";

const ORIGINS: &str = "cors.allow.origins";
const METHODS: &str = "cors.allow.methods";
const HEADERS: &str = "cors.allow.headers";
const CREDENTIALS: &str = "cors.allow.credentials";
const EXPOSE: &str = "cors.expose.headers";
const MAX_AGE: &str = "cors.max.age";
const KNOWN: [&str; 6] = [ORIGINS, METHODS, HEADERS, CREDENTIALS, EXPOSE, MAX_AGE];

/// Cross-origin resource sharing, the `cors` middleware.
///
/// Put it in a router's pre-match chain (`middleware`) so that it answers
/// preflight requests even for paths that only have, say, a `POST` endpoint.
/// Options (all optional):
///
/// | option | default | meaning |
/// |---|---|---|
/// | `cors.allow.origins` | `*` | comma-separated origins (`https://app.example.com`), or `*` |
/// | `cors.allow.methods` | `GET, POST, PUT, PATCH, DELETE, OPTIONS` | `Access-Control-Allow-Methods` of preflights |
/// | `cors.allow.headers` | `Content-Type, Authorization` | `Access-Control-Allow-Headers` of preflights |
/// | `cors.allow.credentials` | `false` | send `Access-Control-Allow-Credentials: true` |
/// | `cors.expose.headers` | none | `Access-Control-Expose-Headers` |
/// | `cors.max.age` | none | preflight cache time in seconds |
///
/// A request without `Origin`, or from an origin not allowed, passes through
/// untouched (a preflight from a disallowed origin gets `403`). A preflight
/// (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin
/// gets `204` without reaching the router. Other requests run normally and
/// their response gets `Access-Control-Allow-Origin` and `Vary: Origin`.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Option<Vec<String>>,
    methods: HeaderValue,
    headers: HeaderValue,
    credentials: bool,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

impl Cors {
    /// Builds the middleware from a router's options; options that do not
    /// start with `cors.` belong to other middleware and are ignored.
    ///
    /// # Errors
    ///
    /// A message naming the option when a `cors.*` option is unknown or its
    /// value is invalid.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        if let Some(unknown) = options
            .keys()
            .find(|k| k.starts_with("cors.") && !KNOWN.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown option {unknown:?} (known: {})",
                KNOWN.join(", ")
            ));
        }
        let origins = match options.get(ORIGINS).map(|v| list(v)) {
            None => None,
            Some(list) if list.iter().any(|o| o == "*") => None,
            Some(list) if list.is_empty() => return Err(format!("{ORIGINS}: empty list")),
            Some(list) => Some(list.into_iter().map(|o| o.to_ascii_lowercase()).collect()),
        };
        let credentials = match options.get(CREDENTIALS).map(|v| v.trim()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "{CREDENTIALS}: expected true or false, got {other:?}"
                ))
            }
        };
        let max_age = match options.get(MAX_AGE) {
            None => None,
            Some(v) => {
                let secs: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{MAX_AGE}: expected seconds, got {v:?}"))?;
                Some(HeaderValue::from(secs))
            }
        };
        Ok(Self {
            origins,
            methods: header_list(options, METHODS, "GET, POST, PUT, PATCH, DELETE, OPTIONS")?,
            headers: header_list(options, HEADERS, "Content-Type, Authorization")?,
            credentials,
            expose: options
                .get(EXPOSE)
                .map(|_| header_list(options, EXPOSE, ""))
                .transpose()?,
            max_age,
        })
    }

    fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            None => true,
            Some(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// The `Access-Control-Allow-Origin` value: `*` when any origin is
    /// allowed and no credentials are sent, else the origin itself.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.is_none() && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    fn add_common(&self, headers: &mut HeaderMap, origin: &HeaderValue) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    fn preflight(&self, origin: &HeaderValue) -> Response {
        let mut res = response::empty(StatusCode::NO_CONTENT);
        let headers = res.headers_mut();
        self.add_common(headers, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        res
    }
}

impl Middleware for Cors {
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
            return next.run(req);
        };
        let allowed = origin.to_str().is_ok_and(|o| self.allows(o));
        let is_preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        match (is_preflight, allowed) {
            (true, true) => {
                let res = self.preflight(&origin);
                Box::pin(async move { res })
            }
            (true, false) => {
                Box::pin(async { response::text(StatusCode::FORBIDDEN, "CORS origin not allowed") })
            }
            (false, false) => next.run(req),
            (false, true) => {
                let cors = self.clone();
                Box::pin(async move {
                    let mut res = next.run(req).await;
                    cors.add_common(res.headers_mut(), &origin);
                    if let Some(expose) = &cors.expose {
                        res.headers_mut()
                            .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                    }
                    res
                })
            }
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header_list(options: &Options, key: &str, default: &str) -> Result<HeaderValue, String> {
    let items = options.get(key).map_or_else(|| list(default), |v| list(v));
    HeaderValue::from_str(&items.join(", ")).map_err(|_| format!("{key}: not a valid header value"))
}
