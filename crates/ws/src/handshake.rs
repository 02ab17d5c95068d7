//! Server side of the opening handshake (RFC 6455 §4.2): validate an HTTP request as a
//! WebSocket upgrade and build the `101 Switching Protocols` answer.
//!
//! Validation is a pure function of the request head, so the relay can run it *before* any
//! handler or process exists (SPEC §3.1) and answer with the typed [`Rejection`] when it fails.
//! Each rejection carries its status, extra headers and a plain-text body that names the problem,
//! in the manner of axum's `extract::ws::rejection` module.
//!
//! | problem | status | extra headers |
//! |---|---|---|
//! | HTTP/1.0 (or HTTP/2+, which needs RFC 8441 and is not served) | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | method is not `GET` | `405` | `Allow: GET` |
//! | no `upgrade` token in `Connection` | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | no `websocket` token in `Upgrade` | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Version` missing or not `13` | `400` | `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes | `400` | `Sec-WebSocket-Version: 13` |
//!
//! Why 405 for a non-`GET` method: the resource exists and the only thing wrong is the method,
//! which is what 405 says (axum does the same). Why 426 for HTTP/1.0: the client must switch to
//! another protocol (HTTP/1.1) before an upgrade can happen, which is what 426 says.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Version};

/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks.
pub const WEBSOCKET_VERSION: &str = "13";

/// A request head that passed [`validate`]: it is a WebSocket upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    key: HeaderValue,
}

impl UpgradeRequest {
    /// The client's `Sec-WebSocket-Key`, as sent.
    pub fn key(&self) -> &HeaderValue {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value answering this request's key.
    pub fn accept_key(&self) -> HeaderValue {
        accept_key(self.key.as_bytes())
    }

    /// The `101 Switching Protocols` response that completes the handshake.
    ///
    /// The body is `B::default()` (empty). Send it, then take the connection with
    /// [`hyper::upgrade::on`] (the server must serve the connection `with_upgrades()`).
    pub fn switching_protocols<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, self.accept_key());
        response
    }
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2):
/// `base64(sha1(key ++ GUID))`.
///
/// # Examples
///
/// ```
/// // The example from RFC 6455 §1.3.
/// let accept = wsrelay_ws::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    let encoded = BASE64.encode(sha1.digest().bytes());
    // Base64 output is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Checks that a request head is a WebSocket upgrade request (RFC 6455 §4.2.1).
///
/// # Errors
///
/// Returns the first [`Rejection`] that applies, in the order of the table in the
/// [module docs](self): HTTP version, method, `Connection`, `Upgrade`, `Sec-WebSocket-Version`,
/// `Sec-WebSocket-Key`.
pub fn validate(parts: &http::request::Parts) -> Result<UpgradeRequest, Rejection> {
    validate_head(&parts.method, parts.version, &parts.headers)
}

/// Like [`validate`], for a whole request.
///
/// # Errors
///
/// As [`validate`].
pub fn validate_request<B>(request: &Request<B>) -> Result<UpgradeRequest, Rejection> {
    validate_head(request.method(), request.version(), request.headers())
}

/// Whether the request *asks* for a WebSocket upgrade (`Connection: upgrade` and
/// `Upgrade: websocket`), whatever else is wrong with it.
pub fn is_upgrade_attempt(headers: &HeaderMap) -> bool {
    has_token(headers, &CONNECTION, "upgrade") && has_token(headers, &UPGRADE, "websocket")
}

fn validate_head(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<UpgradeRequest, Rejection> {
    if version != Version::HTTP_11 {
        return Err(Rejection::UnsupportedHttpVersion { version });
    }
    if method != Method::GET {
        return Err(Rejection::MethodNotGet {
            method: method.clone(),
        });
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(Rejection::ConnectionNotUpgrade);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(Rejection::UpgradeNotWebSocket);
    }
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == WEBSOCKET_VERSION.as_bytes() => {}
        (None, _) => return Err(Rejection::VersionMissing),
        (Some(v), _) => {
            return Err(Rejection::VersionInvalid {
                found: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
        }
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(Rejection::KeyMissing),
        (Some(_), Some(_)) => return Err(Rejection::KeyDuplicated),
        (Some(key), None) => key,
    };
    let trimmed = key.as_bytes().trim_ascii();
    match BASE64.decode(trimmed) {
        Ok(decoded) if decoded.len() == 16 => {}
        _ => {
            return Err(Rejection::KeyInvalid {
                found: String::from_utf8_lossy(key.as_bytes()).into_owned(),
            })
        }
    }
    let key = HeaderValue::from_bytes(trimmed).unwrap_or_else(|_| key.clone());
    Ok(UpgradeRequest { key })
}

/// Whether any value of header `name` holds `token` in its comma-separated list
/// (case-insensitive, as RFC 9110 §5.6.1 says for both `Connection` and `Upgrade`).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

// ===== Rejection =====

/// Why a request is not an acceptable WebSocket upgrade, with the HTTP answer to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The request is not HTTP/1.1.
    #[error("WebSocket upgrade requires HTTP/1.1, got {version:?}")]
    UnsupportedHttpVersion {
        /// The version the request used.
        version: Version,
    },
    /// The method is not `GET`.
    #[error("WebSocket upgrade requires method GET, got {method}")]
    MethodNotGet {
        /// The method the request used.
        method: Method,
    },
    /// `Connection` lacks the `upgrade` token.
    #[error("WebSocket upgrade requires header `Connection: upgrade`")]
    ConnectionNotUpgrade,
    /// `Upgrade` lacks the `websocket` token.
    #[error("WebSocket upgrade requires header `Upgrade: websocket`")]
    UpgradeNotWebSocket,
    /// No `Sec-WebSocket-Version` header.
    #[error("WebSocket upgrade requires header `Sec-WebSocket-Version: 13`")]
    VersionMissing,
    /// `Sec-WebSocket-Version` is not `13` (or is repeated).
    #[error("unsupported `Sec-WebSocket-Version: {found}`, only 13 is supported")]
    VersionInvalid {
        /// The first value sent.
        found: String,
    },
    /// No `Sec-WebSocket-Key` header.
    #[error("WebSocket upgrade requires header `Sec-WebSocket-Key`")]
    KeyMissing,
    /// More than one `Sec-WebSocket-Key` header.
    #[error("header `Sec-WebSocket-Key` must appear once")]
    KeyDuplicated,
    /// `Sec-WebSocket-Key` does not base64-decode to 16 bytes.
    #[error("header `Sec-WebSocket-Key: {found}` is not base64 of 16 bytes")]
    KeyInvalid {
        /// The value sent (lossily decoded).
        found: String,
    },
}

impl Rejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedHttpVersion { .. }
            | Self::ConnectionNotUpgrade
            | Self::UpgradeNotWebSocket => StatusCode::UPGRADE_REQUIRED,
            Self::MethodNotGet { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::VersionMissing
            | Self::VersionInvalid { .. }
            | Self::KeyMissing
            | Self::KeyDuplicated
            | Self::KeyInvalid { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The plain-text body of the answer: the error message and a newline.
    pub fn body(&self) -> String {
        format!("{self}\n")
    }

    /// The complete answer: status, headers (see the [module docs](self)) and body.
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self.status() {
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(ALLOW, HeaderValue::from_static("GET"));
            }
            StatusCode::UPGRADE_REQUIRED => {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(
                    SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static(WEBSOCKET_VERSION),
                );
            }
            _ => {
                headers.insert(
                    SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static(WEBSOCKET_VERSION),
                );
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(method: &str, version: Version, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::builder().method(method).version(version).uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("valid test request").into_parts().0
    }

    fn good(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ];
        for (name, value) in extra {
            headers.retain(|(n, _)| n != name);
            if !value.is_empty() {
                headers.push((name, value));
            }
        }
        headers
    }

    #[test]
    fn table() {
        use Version as V;
        // (name, method, version, header overrides ("" removes), expected status or 101)
        type Case<'a> = (&'a str, &'a str, Version, &'a [(&'a str, &'a str)], u16);
        let cases: &[Case<'_>] = &[
            ("valid", "GET", V::HTTP_11, &[], 101),
            (
                "connection list",
                "GET",
                V::HTTP_11,
                &[("connection", "keep-alive, UPGRADE")],
                101,
            ),
            (
                "upgrade case",
                "GET",
                V::HTTP_11,
                &[("upgrade", "WebSocket")],
                101,
            ),
            (
                "key spaces",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== ")],
                101,
            ),
            ("http/1.0", "GET", V::HTTP_10, &[], 426),
            ("post", "POST", V::HTTP_11, &[], 405),
            (
                "no connection",
                "GET",
                V::HTTP_11,
                &[("connection", "")],
                426,
            ),
            (
                "connection close",
                "GET",
                V::HTTP_11,
                &[("connection", "close")],
                426,
            ),
            ("no upgrade", "GET", V::HTTP_11, &[("upgrade", "")], 426),
            ("upgrade h2c", "GET", V::HTTP_11, &[("upgrade", "h2c")], 426),
            (
                "no version",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-version", "")],
                400,
            ),
            (
                "version 8",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-version", "8")],
                400,
            ),
            (
                "no key",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", "")],
                400,
            ),
            (
                "key not base64",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", "not base64!")],
                400,
            ),
            (
                "key 15 bytes",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA")],
                400,
            ),
        ];
        for (name, method, version, overrides, expected) in cases {
            let parts = request(method, *version, &good(overrides));
            let status = match validate(&parts) {
                Ok(upgrade) => upgrade.switching_protocols::<()>().status().as_u16(),
                Err(rejection) => rejection.status().as_u16(),
            };
            assert_eq!(status, *expected, "case {name}");
        }
    }

    #[test]
    fn duplicate_key_is_400() {
        let mut headers = good(&[]);
        headers.push(("sec-websocket-key", KEY));
        let err = validate(&request("GET", Version::HTTP_11, &headers)).unwrap_err();
        assert_eq!(err, Rejection::KeyDuplicated);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn responses_carry_headers_and_body() {
        let parts = request("GET", Version::HTTP_11, &good(&[("upgrade", "")]));
        let response: Response<String> = validate(&parts).unwrap_err().into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert!(response.body().contains("Upgrade: websocket"));

        let parts = request(
            "GET",
            Version::HTTP_11,
            &good(&[("sec-websocket-version", "8")]),
        );
        let response: Response<String> = validate(&parts).unwrap_err().into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert!(response.body().contains('8'));
    }

    #[test]
    fn accept_matches_rfc_example() {
        let parts = request("GET", Version::HTTP_11, &good(&[]));
        let response = validate(&parts).unwrap().switching_protocols::<()>();
        assert_eq!(
            response.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(is_upgrade_attempt(&parts.headers));
    }
}
