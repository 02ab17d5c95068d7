//! What HTTP/2 requests need to look like the HTTP/1.1 ones the rest of the gateway knows.
//!
//! - HTTP/2 has no `Host` header: the authority is a pseudo-header, which hyper puts in the
//!   URI. A request without `Host` gets one from its authority, so same-origin checks,
//!   handlers and logs see the host whatever the protocol.
//! - A WebSocket over HTTP/2 (RFC 8441) is an *extended CONNECT*: method `CONNECT` with the
//!   `:protocol` pseudo-header `websocket` (hyper's [`hyper::ext::Protocol`] extension).
//!   The router runs the `GET` endpoint of its path for it, as an HTTP/1.1 upgrade is a
//!   `GET`, so one endpoint serves both.

use http::header::HOST;
use http::{HeaderValue, Method, Version};

use crate::Request;

/// Sets `Host` from the URI's authority on an HTTP/2 request that has none.
pub(crate) fn host_from_authority(req: &mut Request) {
    if req.version() != Version::HTTP_2 || req.headers().contains_key(HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(HOST, host);
    }
}

/// Whether `req` is an RFC 8441 extended CONNECT for a WebSocket.
///
/// ```
/// use http::Method;
/// use wsrelay_http::{is_websocket_connect, Body, Request};
///
/// let mut req = Request::new(Body::empty());
/// *req.method_mut() = Method::CONNECT;
/// assert!(!is_websocket_connect(&req));
/// req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
/// assert!(is_websocket_connect(&req));
/// ```
pub fn is_websocket_connect<B>(req: &http::Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}
