//! Server side of the opening handshake (RFC 6455 §4.2): validate an HTTP request as a
//! WebSocket upgrade and build the `101 Switching Protocols` answer.
//!
//! Validation is a pure function of the request head, so the relay can run it *before* any
//! handler or process exists (docs/spec.md §3.1) and answer with the typed [`Rejection`] when it fails.
//! Each rejection carries its status, extra headers and a plain-text body that names the problem,
//! in the manner of axum's `extract::ws::rejection` module.
//!
//! | problem | status | extra headers |
//! |---|---|---|
//! | HTTP/1.0, or HTTP/2 other than an RFC 8441 extended CONNECT | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | method is not `GET` | `405` | `Allow: GET` |
//! | no `upgrade` token in `Connection` | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | no `websocket` token in `Upgrade` | `426` | `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Version` missing or not `13` | `400` | `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes | `400` | `Sec-WebSocket-Version: 13` |
//!
//! A WebSocket over HTTP/2 (RFC 8441) is an *extended CONNECT*: method `CONNECT`, the
//! `:protocol` pseudo-header `websocket` (hyper's [`hyper::ext::Protocol`] extension) and
//! `Sec-WebSocket-Version: 13`; it has no key and no `Connection`/`Upgrade` headers, and is
//! answered `200` instead of `101` (RFC 8441 §5), with the same subprotocol and extension
//! headers. The version and the offers are checked as for HTTP/1.1.
//!
//! Why 405 for a non-`GET` method: the resource exists and the only thing wrong is the method,
//! which is what 405 says (axum does the same). Why 426 for HTTP/1.0: the client must switch to
//! another protocol (HTTP/1.1) before an upgrade can happen, which is what 426 says.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONNECTION, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use sha1::{Digest as _, Sha1};

use crate::extension::Deflate;
use http::{Method, Request, Response, StatusCode, Version};

/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks.
pub const WEBSOCKET_VERSION: &str = "13";

/// A request head that passed [`validate`]: it is a WebSocket upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Key`; `None` for an RFC 8441 extended CONNECT, which has none.
    key: Option<HeaderValue>,
    protocols: Vec<String>,
}

impl UpgradeRequest {
    /// The client's `Sec-WebSocket-Key`, as sent; `None` for a WebSocket over HTTP/2
    /// (RFC 8441), which has none.
    pub fn key(&self) -> Option<&HeaderValue> {
        self.key.as_ref()
    }

    /// Whether the request is an RFC 8441 extended CONNECT (a WebSocket over HTTP/2).
    pub fn is_extended_connect(&self) -> bool {
        self.key.is_none()
    }

    /// The subprotocols the client offers in `Sec-WebSocket-Protocol`, in its order of
    /// preference (RFC 6455 §4.1, §11.3.4).
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// Whether the client offered `protocol` (compared exactly: subprotocol names are
    /// case-sensitive tokens).
    pub fn offers_protocol(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|offered| offered == protocol)
    }

    /// The first of the client's offers that is in `supported`: the client's preference wins.
    pub fn choose_protocol<'a, P: AsRef<str>>(&'a self, supported: &[P]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(String::as_str)
            .find(|offered| supported.iter().any(|s| s.as_ref() == *offered))
    }

    /// The `Sec-WebSocket-Accept` value answering this request's key (`None` over
    /// HTTP/2, where there is no key).
    pub fn accept_key(&self) -> Option<HeaderValue> {
        self.key.as_ref().map(|key| accept_key(key.as_bytes()))
    }

    /// The response that completes the handshake: `101 Switching Protocols` with
    /// `Sec-WebSocket-Accept`, or `200` for an RFC 8441 extended CONNECT.
    ///
    /// The body is `B::default()` (empty). Send it, then take the connection with
    /// [`hyper::upgrade::on`] (the server must serve HTTP/1.1 connections
    /// `with_upgrades()`, and HTTP/2 ones with `enable_connect_protocol()`).
    pub fn switching_protocols<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        let Some(accept) = self.accept_key() else {
            return response; // 200: the stream is the WebSocket (RFC 8441 §5)
        };
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        response
    }

    /// The `101` answer that also accepts `protocol` (`Sec-WebSocket-Protocol`) and
    /// permessage-deflate with `deflate` (`Sec-WebSocket-Extensions`).
    ///
    /// # Errors
    ///
    /// [`ProtocolNotOffered`] when `protocol` is not one the client offered: RFC 6455 §4.1
    /// makes the client fail a connection that accepts anything else.
    pub fn switching_protocols_with<B: Default>(
        &self,
        protocol: Option<&str>,
        deflate: Option<&Deflate>,
    ) -> Result<Response<B>, ProtocolNotOffered> {
        let protocol = protocol.map(|p| self.accepted_protocol(p)).transpose()?;
        Ok(self.answer(protocol, deflate))
    }

    /// `protocol` as the header value that accepts it, if the client offered it.
    fn accepted_protocol(&self, protocol: &str) -> Result<HeaderValue, ProtocolNotOffered> {
        HeaderValue::from_str(protocol)
            .ok()
            .filter(|_| self.offers_protocol(protocol))
            .ok_or_else(|| ProtocolNotOffered {
                protocol: protocol.to_owned(),
                offered: self.protocols.clone(),
            })
    }

    /// The `101` answer with the protocol and extension headers given.
    pub(crate) fn answer<B: Default>(
        &self,
        protocol: Option<HeaderValue>,
        deflate: Option<&Deflate>,
    ) -> Response<B> {
        let mut response = self.switching_protocols();
        if let Some(protocol) = protocol {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        if let Some(deflate) = deflate {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_EXTENSIONS, deflate.response_header());
        }
        response
    }
}

/// A subprotocol chosen for a connection was not among the client's offers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subprotocol {protocol:?} was not offered by the client (offered: {offered:?})")]
pub struct ProtocolNotOffered {
    /// The protocol chosen.
    pub protocol: String,
    /// What the client offered in `Sec-WebSocket-Protocol`.
    pub offered: Vec<String>,
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
    // RustCrypto's SHA-1 uses the CPU's SHA instructions where it has them; every upgrade
    // pays for one digest.
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(WEBSOCKET_GUID.as_bytes())
        .finalize();
    // Encoded on the stack: 20 bytes are 28 base64 characters, and the header value is the
    // one allocation.
    let mut encoded = [0u8; 28];
    let len = BASE64
        .encode_slice(digest, &mut encoded)
        .unwrap_or_default();
    // Base64 output is always a valid header value.
    HeaderValue::from_bytes(&encoded[..len]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Checks that a request head is a WebSocket upgrade request (RFC 6455 §4.2.1).
///
/// # Errors
///
/// Returns the first [`Rejection`] that applies, in the order of the table in the
/// [module docs](self): HTTP version, method, `Connection`, `Upgrade`, `Sec-WebSocket-Version`,
/// `Sec-WebSocket-Key`.
pub fn validate(parts: &http::request::Parts) -> Result<UpgradeRequest, Rejection> {
    if parts.version == Version::HTTP_2 {
        return validate_extended_connect(&parts.method, &parts.headers, &parts.extensions);
    }
    validate_head(&parts.method, parts.version, &parts.headers)
}

/// Like [`validate`], for a whole request.
///
/// # Errors
///
/// As [`validate`].
pub fn validate_request<B>(request: &Request<B>) -> Result<UpgradeRequest, Rejection> {
    if request.version() == Version::HTTP_2 {
        return validate_extended_connect(
            request.method(),
            request.headers(),
            request.extensions(),
        );
    }
    validate_head(request.method(), request.version(), request.headers())
}

/// Whether `request` asks for a WebSocket: an HTTP/1.1 upgrade attempt
/// ([`is_upgrade_attempt`]) or an RFC 8441 extended CONNECT with `:protocol websocket`.
pub fn asks_for_websocket<B>(request: &Request<B>) -> bool {
    is_upgrade_attempt(request.headers()) || is_websocket_connect(request)
}

/// Whether `request` is an RFC 8441 extended CONNECT for a WebSocket.
fn is_websocket_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT && names_websocket(request.extensions())
}

fn names_websocket(extensions: &http::Extensions) -> bool {
    extensions
        .get::<hyper::ext::Protocol>()
        .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// Whether the request *asks* for a WebSocket upgrade (its `Upgrade` header names
/// `websocket`), whatever else is wrong with it.
///
/// This is what decides that [`validate`] applies: a request that asks and fails gets its
/// [`Rejection`]; one that does not ask is a plain HTTP request. `Connection: upgrade` is
/// one of the things [`validate`] checks, not part of the asking, so a request that names
/// `websocket` but forgets `Connection` is told so (`426`) instead of passing as plain.
pub fn is_upgrade_attempt(headers: &HeaderMap) -> bool {
    has_token(headers, &UPGRADE, "websocket")
}

/// Adds the headers of a `426 Upgrade Required` answer (RFC 9110 §15.5.22 requires
/// `Upgrade`): `Upgrade: websocket`, `Connection: upgrade`, `Sec-WebSocket-Version: 13`.
pub fn insert_upgrade_required_headers(headers: &mut HeaderMap) {
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(WEBSOCKET_VERSION),
    );
}

/// RFC 8441 §4–§5: an HTTP/2 request is a WebSocket handshake only as an extended CONNECT
/// with `:protocol websocket`; the version is checked, and there is no key.
fn validate_extended_connect(
    method: &Method,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<UpgradeRequest, Rejection> {
    if method != Method::CONNECT || !names_websocket(extensions) {
        return Err(Rejection::UnsupportedHttpVersion {
            version: Version::HTTP_2,
        });
    }
    check_version(headers)?;
    Ok(UpgradeRequest {
        key: None,
        protocols: offered_protocols(headers),
    })
}

fn check_version(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == WEBSOCKET_VERSION.as_bytes() => Ok(()),
        (None, _) => Err(Rejection::VersionMissing),
        (Some(v), _) => Err(Rejection::VersionInvalid {
            found: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        }),
    }
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
    check_version(headers)?;
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(Rejection::KeyMissing),
        (Some(_), Some(_)) => return Err(Rejection::KeyDuplicated),
        (Some(key), None) => key,
    };
    let trimmed = key.as_bytes().trim_ascii();
    // Decoded into the stack: only the length matters. A key of 16 bytes is 24 characters,
    // which decode to at most 18 bytes; a longer key overflows the buffer and is refused.
    let mut decoded = [0u8; 18];
    match BASE64.decode_slice(trimmed, &mut decoded) {
        Ok(16) => {}
        _ => {
            return Err(Rejection::KeyInvalid {
                found: String::from_utf8_lossy(key.as_bytes()).into_owned(),
            })
        }
    }
    let key = HeaderValue::from_bytes(trimmed).unwrap_or_else(|_| key.clone());
    Ok(UpgradeRequest {
        key: Some(key),
        protocols: offered_protocols(headers),
    })
}

/// The comma-separated tokens of every `Sec-WebSocket-Protocol` header, in order. At most
/// [`MAX_PROTOCOL_OFFERS`] are kept: a client has no use for more, and the list is held
/// until the handler has answered.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .take(MAX_PROTOCOL_OFFERS)
        .map(str::to_owned)
        .collect()
}

/// The most subprotocol offers read from a request.
pub const MAX_PROTOCOL_OFFERS: usize = 32;

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
    /// The request is neither HTTP/1.1 nor an HTTP/2 extended CONNECT (RFC 8441).
    #[error("WebSocket upgrade requires HTTP/1.1 or an HTTP/2 extended CONNECT, got {version:?}")]
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
            StatusCode::UPGRADE_REQUIRED => insert_upgrade_required_headers(headers),
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
            // The key is decoded into 18 bytes on the stack: one more than 16 fits, a long
            // one does not; both are refused, as is a key without its padding.
            (
                "key 17 bytes",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAA=")],
                400,
            ),
            (
                "key 32 bytes",
                "GET",
                V::HTTP_11,
                &[(
                    "sec-websocket-key",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                )],
                400,
            ),
            (
                "key unpadded",
                "GET",
                V::HTTP_11,
                &[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ")],
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

    fn h2_request(
        method: Method,
        protocol: Option<&'static str>,
        version: Option<&str>,
    ) -> Request<()> {
        let mut builder = Request::builder()
            .method(method)
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .header(SEC_WEBSOCKET_PROTOCOL, "mqtt");
        if let Some(version) = version {
            builder = builder.header(SEC_WEBSOCKET_VERSION, version);
        }
        let mut request = builder.body(()).expect("valid test request");
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static(protocol));
        }
        request
    }

    #[test]
    fn rfc8441_extended_connect_is_answered_200_without_accept() {
        let request = h2_request(Method::CONNECT, Some("websocket"), Some("13"));
        assert!(asks_for_websocket(&request));
        let upgrade = validate_request(&request).unwrap();
        assert!(upgrade.is_extended_connect());
        assert_eq!(upgrade.key(), None);
        let response = upgrade
            .switching_protocols_with::<()>(Some("mqtt"), None)
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "mqtt");
        assert!(!response.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
        assert!(!response.headers().contains_key(UPGRADE));
    }

    #[test]
    fn rfc8441_table_of_refusals() {
        let cases = [
            (
                h2_request(Method::CONNECT, Some("websocket"), None),
                400,
                true,
            ),
            (
                h2_request(Method::CONNECT, Some("websocket"), Some("8")),
                400,
                true,
            ),
            (
                h2_request(Method::CONNECT, Some("webtransport"), Some("13")),
                426,
                false,
            ),
            (h2_request(Method::CONNECT, None, Some("13")), 426, false),
            (
                h2_request(Method::GET, Some("websocket"), Some("13")),
                426,
                false,
            ),
        ];
        for (i, (request, status, asks)) in cases.into_iter().enumerate() {
            let rejection = validate_request(&request).unwrap_err();
            assert_eq!(rejection.status().as_u16(), status, "case {i}");
            assert_eq!(asks_for_websocket(&request), asks, "case {i}");
        }
    }

    #[test]
    fn asking_for_an_upgrade_is_naming_websocket_in_upgrade() {
        let asks = |headers: &[(&str, &str)]| {
            is_upgrade_attempt(&request("GET", Version::HTTP_11, headers).headers)
        };
        assert!(asks(&[("upgrade", "WebSocket")]));
        assert!(asks(&[
            ("upgrade", "h2c, websocket"),
            ("connection", "close")
        ]));
        assert!(!asks(&[("connection", "upgrade")]));
        assert!(!asks(&[("upgrade", "h2c"), ("connection", "upgrade")]));
        assert!(!asks(&[]));
    }
}
