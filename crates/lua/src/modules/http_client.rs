//! The `http_client` module: outbound HTTP requests from Lua (Wippy's `http_client`).
//!
//! `get|post|put|patch|delete|head(url, opts?)` and `request(method, url, opts?)` return a
//! response table (`status_code`, `body`, `body_size`, `headers`, `url`, and with
//! `stream = true` a `stream` to read the body from as it arrives) or `nil, err`;
//! `request_batch({{method, url, opts?}, ...})` runs up to [`MAX_BATCH`] requests at once and
//! returns `responses, errors` (index `i` of one of them set for the `i`-th request);
//! `encode_uri` and `decode_uri` percent-encode. A request is asynchronous: the calling
//! coroutine yields while it runs and the shard goes on with other processes.
//!
//! This crate knows nothing of sockets or hyper: the embedder supplies the transport as an
//! [`HttpClient`] ([`crate::LuaEngine::set_http_client`]; the app uses `wsrelay-http`'s
//! client). What a request may do is the calling entry's [`HttpClientPolicy`]
//! ([`crate::LuaEngine::set_http_client_policy`]); an entry without one gets
//! [`HttpClientPolicy::default`], which refuses non-public addresses. The module checks the
//! arguments and clamps the options to the policy; the transport enforces the address rule
//! on the addresses it resolves.
//!
//! Bounds: the request body is at most the policy's `max_request_body` and `max_value_size`;
//! the response body at most `max_response_body` (the request may lower it, never raise
//! it) and `max_value_size`; at most [`MAX_HEADERS`] headers and [`MAX_PAIRS`] query or form
//! pairs; at most [`MAX_IN_FLIGHT`] requests of the engine at once.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::errors::{Kind, WippyError};
use crate::convert;

/// The most headers one request sets.
pub(crate) const MAX_HEADERS: usize = 100;
/// The most query or form pairs one request sets.
pub(crate) const MAX_PAIRS: usize = 1000;
/// The longest header name or value, in bytes.
pub(crate) const MAX_HEADER_LEN: usize = 8 * 1024;
/// The longest URL, in bytes.
pub(crate) const MAX_URL: usize = 8 * 1024;
/// The most files one request uploads (`files`).
pub(crate) const MAX_FILES: usize = 100;
/// The most requests of one engine in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// What the calling entry's requests may do. The defaults are safe: no private addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpClientPolicy {
    /// Whether loopback, private, link-local and other non-public addresses may be reached
    /// (Wippy's `http_client.private_ip` permission).
    pub allow_private: bool,
    /// The timeout of a request that sets none.
    pub default_timeout: Duration,
    /// The longest `timeout` a request may ask for.
    pub max_timeout: Duration,
    /// The timeout of one TCP connect.
    pub connect_timeout: Duration,
    /// The largest request body, in bytes.
    pub max_request_body: usize,
    /// The largest response body, in bytes (and the default of `max_response_body`).
    pub max_response_body: usize,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl Default for HttpClientPolicy {
    fn default() -> HttpClientPolicy {
        HttpClientPolicy {
            allow_private: false,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_request_body: 10 << 20,
            max_response_body: 10 << 20,
            max_redirects: 10,
        }
    }
}

/// A request as the transport gets it, checked and clamped to the policy.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The method, upper case.
    pub method: String,
    /// The absolute URL (query parameters appended).
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// The timeout of the whole exchange.
    pub timeout: Duration,
    /// The timeout of one TCP connect.
    pub connect_timeout: Duration,
    /// The largest response body.
    pub max_response_body: usize,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// Whether non-public addresses may be reached.
    pub allow_private: bool,
    /// PEM certificates to trust instead of the system's roots (`tls.ca`).
    pub ca_pem: Option<Bytes>,
    /// The name to verify the certificate against (`tls.server_name`).
    pub server_name: Option<String>,
    /// Whether to return at the response head and leave the body to be read as it arrives
    /// ([`OutboundResponse::stream`]; Wippy's `stream` option).
    pub stream: bool,
}

/// A response as the transport returns it.
#[derive(Debug)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// Headers (names lower case) in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body (empty when it is streamed).
    pub body: Bytes,
    /// The body to read as it arrives, for a request with [`OutboundRequest::stream`].
    pub stream: Option<Box<dyn OutboundStream>>,
    /// The URL that answered (after redirects).
    pub url: String,
}

/// A future of [`OutboundStream::next_chunk`].
pub type ChunkFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Bytes>, OutboundError>> + Send + 'a>>;

/// A response body the transport hands over as it arrives; dropping it closes the
/// connection.
pub trait OutboundStream: Send + fmt::Debug + 'static {
    /// The next piece of the body (not empty), `None` at its end; within the request's
    /// `max_response_body` in all.
    fn next_chunk(&mut self) -> ChunkFuture<'_>;
}

/// What kind of failure an [`OutboundError`] is; it picks the Lua error's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundErrorKind {
    /// The request is wrong (URL, header, TLS option): INVALID.
    Invalid,
    /// The address is not allowed: PERMISSION_DENIED.
    Forbidden,
    /// A network failure or timeout: INTERNAL, retryable.
    Network,
    /// Any other failure (a body over the limit, too many redirects): INTERNAL.
    Failed,
}

/// Why the transport could not complete a request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OutboundError {
    /// The kind.
    pub kind: OutboundErrorKind,
    /// What happened, naming the URL, host or limit.
    pub message: String,
}

/// A future of the transport.
pub type OutboundFuture =
    Pin<Box<dyn Future<Output = Result<OutboundResponse, OutboundError>> + Send + 'static>>;

/// The transport of the `http_client` module, supplied by the embedder.
pub trait HttpClient: Send + Sync + fmt::Debug + 'static {
    /// Sends `request`, honouring every field of it (timeouts, limits, the address rule).
    fn send(&self, request: OutboundRequest) -> OutboundFuture;
}

/// The engine's transport and the policies of its entries.
#[derive(Debug, Default)]
pub(crate) struct HttpClients {
    client: RwLock<Option<Arc<dyn HttpClient>>>,
    policies: RwLock<HashMap<String, HttpClientPolicy>>,
    in_flight: AtomicUsize,
}

impl HttpClients {
    /// Sets the transport.
    pub(crate) fn set_client(&self, client: Arc<dyn HttpClient>) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// Sets the policy of `entry`.
    pub(crate) fn set_policy(&self, entry: &str, policy: HttpClientPolicy) {
        self.policies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.to_owned(), policy);
    }

    fn client(&self) -> Option<Arc<dyn HttpClient>> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn policy(&self, entry: &str) -> HttpClientPolicy {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(entry)
            .cloned()
            .unwrap_or_default()
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<HttpClients>);

impl InFlight {
    fn enter(clients: &Arc<HttpClients>) -> Option<InFlight> {
        let prev = clients.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(clients.clone());
        (prev < MAX_IN_FLIGHT).then_some(guard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn invalid(what: &str, message: impl fmt::Display) -> WippyError {
    WippyError::invalid(format!("http_client.{what}: {message}"))
}

/// A string field or argument as bytes, at most `max`.
fn text(what: &str, field: &str, v: &LuaValue, max: usize) -> Result<String, WippyError> {
    let s = match v {
        LuaValue::String(s) => s.to_str().map(|s| s.to_owned()).ok(),
        LuaValue::Integer(_) | LuaValue::Number(_) => v.to_string().ok(),
        _ => {
            return Err(invalid(
                what,
                format!("{field} must be a string, got {}", v.type_name()),
            ))
        }
    };
    let s = s.ok_or_else(|| invalid(what, format!("{field} must be UTF-8 text")))?;
    if s.len() > max {
        return Err(invalid(what, format!("{field} is over {max} bytes")));
    }
    Ok(s)
}

/// The pairs of a `name → value` table (sorted by name, so the wire is deterministic).
fn pairs(what: &str, field: &str, v: &LuaValue) -> Result<Vec<(String, String)>, WippyError> {
    let LuaValue::Table(t) = v else {
        return Err(invalid(
            what,
            format!("{field} must be a table, got {}", v.type_name()),
        ));
    };
    let mut out = Vec::new();
    for pair in t.clone().pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair.map_err(|e| invalid(what, format!("{field}: {e}")))?;
        if out.len() >= MAX_PAIRS {
            return Err(invalid(
                what,
                format!("{field}: at most {MAX_PAIRS} entries"),
            ));
        }
        let k = text(what, &format!("{field} name"), &k, MAX_HEADER_LEN)?;
        let v = text(what, &format!("{field}[{k:?}]"), &v, MAX_HEADER_LEN)?;
        out.push((k, v));
    }
    out.sort();
    Ok(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(s: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k.as_bytes(), &mut out);
        out.push('=');
        encode_component(v.as_bytes(), &mut out);
    }
    out
}

/// One part of a multipart upload (`files`): the form field's name, the file's name (if
/// given) and its content.
struct FilePart {
    name: String,
    filename: Option<String>,
    content: Vec<u8>,
}

/// The `files` option: a list of `{name, filename?, content}` (Wippy's `reader` is not
/// supported, nor is a part's content type, which Wippy ignores too).
fn file_parts(what: &str, v: &LuaValue) -> Result<Vec<FilePart>, WippyError> {
    let LuaValue::Table(list) = v else {
        return Err(invalid(
            what,
            "files must be a list of {name, filename?, content}",
        ));
    };
    let mut parts = Vec::new();
    for item in list.clone().sequence_values::<LuaValue>() {
        let item = item.map_err(|e| invalid(what, e))?;
        let LuaValue::Table(file) = item else {
            return Err(invalid(
                what,
                "each file must be a table {name, filename?, content}",
            ));
        };
        if parts.len() == MAX_FILES {
            return Err(invalid(what, format!("at most {MAX_FILES} files")));
        }
        let field = |key: &str| file.raw_get::<LuaValue>(key).map_err(|e| invalid(what, e));
        let name = text(what, "files[].name", &field("name")?, MAX_HEADER_LEN)?;
        let filename = match field("filename")? {
            LuaValue::Nil => None,
            f => Some(text(what, "files[].filename", &f, MAX_HEADER_LEN)?),
        };
        let content = match field("content")? {
            LuaValue::String(s) => s.as_bytes().to_vec(),
            LuaValue::Nil if !matches!(field("reader")?, LuaValue::Nil) => {
                return Err(invalid(
                    what,
                    "files[].reader is not supported (give content)",
                ))
            }
            _ => return Err(invalid(what, "files[].content must be a string")),
        };
        parts.push(FilePart {
            name,
            filename,
            content,
        });
    }
    Ok(parts)
}

/// A `multipart/form-data` body (RFC 7578) of the text fields `form` and the files `files`,
/// and its boundary: 32 random hex digits, drawn again in the unlikely case that the content
/// holds them.
fn multipart(form: &[(String, String)], files: &[FilePart]) -> (Vec<u8>, String) {
    let contents = || {
        form.iter()
            .map(|(_, v)| v.as_bytes())
            .chain(files.iter().map(|f| f.content.as_slice()))
    };
    let boundary = loop {
        let mut random = [0u8; 16];
        let _ = getrandom::getrandom(&mut random);
        let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
        if !contents().any(|c| c.windows(boundary.len()).any(|w| w == boundary.as_bytes())) {
            break boundary;
        }
    };
    let mut body = Vec::new();
    let mut part = |name: &str, filename: Option<&str>, content: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", quoted(name));
        if let Some(filename) = filename {
            disposition.push_str(&format!("; filename=\"{}\"", quoted(filename)));
        }
        body.extend_from_slice(disposition.as_bytes());
        if filename.is_some() {
            body.extend_from_slice(b"\r\nContent-Type: application/octet-stream");
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    for (name, value) in form {
        part(name, None, value.as_bytes());
    }
    for file in files {
        part(&file.name, file.filename.as_deref(), &file.content);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, boundary)
}

/// A name in a `Content-Disposition` header: `"`, CR and LF percent-encoded, as browsers
/// send them (RFC 7578 §4.2).
fn quoted(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Decodes `%XX` escapes; `None` if one is malformed.
fn decode_component(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A timeout option: seconds (a number) or duration text (`"30s"`).
fn timeout_opt(what: &str, v: &LuaValue) -> Result<Duration, WippyError> {
    let d = match v {
        LuaValue::Integer(n) if *n > 0 => Duration::from_secs(*n as u64),
        LuaValue::Number(f) if *f > 0.0 && f.is_finite() => {
            Duration::try_from_secs_f64(*f).unwrap_or(Duration::MAX)
        }
        LuaValue::String(s) => wsrelay_config::parse_duration(&s.to_string_lossy())
            .map_err(|e| invalid(what, format!("timeout: {e}")))?,
        _ => {
            return Err(invalid(
                what,
                "timeout must be a positive number of seconds or text like \"30s\"",
            ))
        }
    };
    if d.is_zero() {
        return Err(invalid(what, "timeout must be positive"));
    }
    Ok(d)
}

/// Builds the request from the Lua arguments under `policy`.
fn build(
    lua: &Lua,
    what: &str,
    method: String,
    url: &LuaValue,
    opts: &LuaValue,
    policy: &HttpClientPolicy,
) -> Result<OutboundRequest, WippyError> {
    let limit = convert::limit(lua);
    let mut url = match url {
        LuaValue::Nil => return Err(invalid(what, "url is required")),
        v => text(what, "url", v, MAX_URL)?,
    };
    let mut req = OutboundRequest {
        method,
        url: String::new(),
        headers: Vec::new(),
        body: Bytes::new(),
        timeout: policy.default_timeout.min(policy.max_timeout),
        connect_timeout: policy.connect_timeout,
        max_response_body: policy.max_response_body.min(limit),
        max_redirects: policy.max_redirects,
        allow_private: policy.allow_private,
        ca_pem: None,
        server_name: None,
        stream: false,
    };
    let opts = match opts {
        LuaValue::Nil => None,
        LuaValue::Table(t) => Some(t),
        other => {
            return Err(invalid(
                what,
                format!("options must be a table, got {}", other.type_name()),
            ))
        }
    };
    let max_body = policy.max_request_body.min(limit);
    let mut form = None;
    let mut files = None;
    if let Some(opts) = opts {
        for pair in opts.clone().pairs::<LuaValue, LuaValue>() {
            let (k, v) = pair.map_err(|e| invalid(what, e))?;
            let LuaValue::String(key) = &k else {
                return Err(invalid(what, "option names must be strings"));
            };
            let key = key.to_string_lossy();
            match key.as_str() {
                "headers" => {
                    let hs = pairs(what, "headers", &v)?;
                    if hs.len() > MAX_HEADERS {
                        return Err(invalid(what, format!("at most {MAX_HEADERS} headers")));
                    }
                    req.headers.extend(hs);
                }
                "body" => match &v {
                    LuaValue::String(s) => {
                        let bytes = s.as_bytes();
                        if bytes.len() > max_body {
                            return Err(invalid(
                                what,
                                format!("body is over the limit of {max_body} bytes"),
                            ));
                        }
                        req.body = Bytes::copy_from_slice(&bytes);
                    }
                    other => {
                        return Err(invalid(
                            what,
                            format!("body must be a string, got {}", other.type_name()),
                        ))
                    }
                },
                "query" => {
                    let q = form_encode(&pairs(what, "query", &v)?);
                    if !q.is_empty() {
                        let (base, fragment) = match url.split_once('#') {
                            Some((b, f)) => (b.to_owned(), Some(f.to_owned())),
                            None => (url.clone(), None),
                        };
                        let sep = if base.contains('?') { '&' } else { '?' };
                        url = format!("{base}{sep}{q}");
                        if let Some(f) = fragment {
                            url.push('#');
                            url.push_str(&f);
                        }
                    }
                }
                "form" => form = Some(pairs(what, "form", &v)?),
                "files" => files = Some(file_parts(what, &v)?),
                "cookies" => {
                    let cookies = pairs(what, "cookies", &v)?;
                    if !cookies.is_empty() {
                        let line: Vec<String> =
                            cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        req.headers.push(("cookie".to_owned(), line.join("; ")));
                    }
                }
                "auth" => {
                    let LuaValue::Table(t) = &v else {
                        return Err(invalid(what, "auth must be a table {user, pass}"));
                    };
                    let user = text(
                        what,
                        "auth.user",
                        &t.raw_get("user").map_err(|e| invalid(what, e))?,
                        MAX_HEADER_LEN,
                    )?;
                    let pass = match t
                        .raw_get::<LuaValue>("pass")
                        .map_err(|e| invalid(what, e))?
                    {
                        LuaValue::Nil => String::new(),
                        p => text(what, "auth.pass", &p, MAX_HEADER_LEN)?,
                    };
                    use base64::Engine as _;
                    let token =
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                    req.headers
                        .push(("authorization".to_owned(), format!("Basic {token}")));
                }
                "timeout" => {
                    req.timeout = timeout_opt(what, &v)?.min(policy.max_timeout);
                }
                "max_response_body" => {
                    let n = match v {
                        LuaValue::Integer(n) if n > 0 => n as u64,
                        LuaValue::Number(f) if f > 0.0 && f.fract() == 0.0 => f as u64,
                        _ => {
                            return Err(invalid(
                                what,
                                "max_response_body must be a positive integer",
                            ))
                        }
                    };
                    req.max_response_body = req
                        .max_response_body
                        .min(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "tls" => {
                    let LuaValue::Table(t) = &v else {
                        return Err(invalid(what, "tls must be a table"));
                    };
                    for pair in t.clone().pairs::<LuaValue, LuaValue>() {
                        let (k, v) = pair.map_err(|e| invalid(what, e))?;
                        let k = match &k {
                            LuaValue::String(s) => s.to_string_lossy(),
                            _ => String::new(),
                        };
                        match k.as_str() {
                            "ca" => {
                                let pem = text(what, "tls.ca", &v, 1 << 20)?;
                                req.ca_pem = Some(Bytes::from(pem));
                            }
                            "server_name" => {
                                req.server_name = Some(text(what, "tls.server_name", &v, 255)?);
                            }
                            "insecure_skip_verify" => {
                                if v != LuaValue::Boolean(false) && v != LuaValue::Nil {
                                    return Err(WippyError::new(
                                        Kind::PermissionDenied,
                                        format!(
                                            "http_client.{what}: tls.insecure_skip_verify is not allowed (certificates are always checked)"
                                        ),
                                    ));
                                }
                            }
                            "cert" | "key" => {
                                return Err(invalid(
                                    what,
                                    "client certificates (tls.cert, tls.key) are not supported",
                                ))
                            }
                            other => {
                                return Err(invalid(what, format!("unknown tls option {other:?}")))
                            }
                        }
                    }
                }
                "stream" => match v {
                    LuaValue::Boolean(b) => req.stream = b,
                    LuaValue::Nil => {}
                    _ => return Err(invalid(what, "stream must be a boolean")),
                },
                "unix_socket" | "overlay_network" => {
                    return Err(invalid(what, format!("option {key:?} is not supported")))
                }
                other => return Err(invalid(what, format!("unknown option {other:?}"))),
            }
        }
    }
    // The body `form` and `files` make, with its content type.
    let made = match (form, files) {
        (None, None) => None,
        (Some(form), None) => Some((
            form_encode(&form).into_bytes(),
            "application/x-www-form-urlencoded".to_owned(),
        )),
        (form, Some(files)) => {
            let (body, boundary) = multipart(&form.unwrap_or_default(), &files);
            Some((body, format!("multipart/form-data; boundary={boundary}")))
        }
    };
    if let Some((body, content_type)) = made {
        if !req.body.is_empty() {
            return Err(invalid(what, "body excludes form and files"));
        }
        if body.len() > max_body {
            return Err(invalid(
                what,
                format!("form or files are over the limit of {max_body} bytes"),
            ));
        }
        req.body = Bytes::from(body);
        // A multipart body is read by its boundary, which only this header names: it
        // replaces one of the caller's. A form keeps the caller's.
        if content_type.starts_with("multipart/") {
            req.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        }
        if !req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.headers.push(("content-type".to_owned(), content_type));
        }
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(
            what,
            format!("url {url:?} is not an http or https URL"),
        ));
    }
    req.url = url;
    Ok(req)
}

fn to_lua_error(what: &str, e: OutboundError) -> WippyError {
    let message = format!("http_client.{what}: {}", e.message);
    match e.kind {
        OutboundErrorKind::Invalid => WippyError::invalid(message),
        OutboundErrorKind::Forbidden => WippyError::new(Kind::PermissionDenied, message),
        OutboundErrorKind::Network => WippyError::internal(message).with_retryable(true),
        OutboundErrorKind::Failed => WippyError::internal(message),
    }
}

/// The Lua response: `status_code`, `body`, `body_size`, `url`, `headers` (repeated names
/// joined with `", "`), and for a streamed body `stream` (`body` empty, `body_size` -1), which
/// holds the request's place among those in flight until it is read to its end or closed.
fn response_table(lua: &Lua, sent: Sent) -> mlua::Result<Table> {
    let Sent {
        res,
        in_flight,
        timeout,
    } = sent;
    let t = lua.create_table()?;
    t.raw_set("status_code", res.status)?;
    match res.stream {
        Some(body) => {
            t.raw_set("body_size", -1)?;
            t.raw_set("body", "")?;
            t.raw_set(
                "stream",
                HttpStream {
                    body: Some(body),
                    pending: Bytes::new(),
                    timeout,
                    _in_flight: Some(in_flight),
                },
            )?;
        }
        None => {
            t.raw_set("body_size", res.body.len())?;
            t.raw_set("body", lua.create_string(&res.body)?)?;
        }
    }
    t.raw_set("url", res.url)?;
    let headers = lua.create_table()?;
    let mut joined: Vec<(String, String)> = Vec::new();
    for (name, value) in res.headers {
        match joined.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => joined.push((name, value)),
        }
    }
    for (name, value) in joined {
        headers.raw_set(name, value)?;
    }
    t.raw_set("headers", headers)?;
    Ok(t)
}

type Reply = (LuaValue, Option<WippyError>);

/// The most requests in one `request_batch`.
pub(crate) const MAX_BATCH: usize = 64;

/// The name a method's shortcut has in error texts (`http_client.get: ...`).
fn call_name(method: Option<&'static str>) -> &'static str {
    match method {
        None => "request",
        Some("GET") => "get",
        Some("POST") => "post",
        Some("PUT") => "put",
        Some("PATCH") => "patch",
        Some("DELETE") => "delete",
        Some(_) => "head",
    }
}

/// The method argument of `request` (and of a batch item): an HTTP token, upper-cased.
fn method_arg(what: &str, value: Option<LuaValue>) -> Result<String, WippyError> {
    match value {
        Some(LuaValue::String(s)) => {
            let m = s.to_string_lossy().to_ascii_uppercase();
            let token = !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase());
            if token {
                Ok(m)
            } else {
                Err(invalid(what, format!("bad method {m:?}")))
            }
        }
        _ => Err(invalid(what, "method is required")),
    }
}

/// A response, with its place among the requests in flight (kept by a streamed body).
struct Sent {
    res: OutboundResponse,
    in_flight: InFlight,
    /// The request's timeout, which bounds each read of a streamed body.
    timeout: Duration,
}

/// Sends a checked request and waits for its response, within the engine's requests in
/// flight and the request's response body limit.
async fn send(
    clients: &Arc<HttpClients>,
    what: &str,
    req: OutboundRequest,
) -> Result<Sent, WippyError> {
    let Some(client) = clients.client() else {
        return Err(WippyError::internal(format!(
            "http_client.{what}: no HTTP client is configured"
        )));
    };
    let Some(in_flight) = InFlight::enter(clients) else {
        return Err(WippyError::internal(format!(
            "http_client.{what}: {MAX_IN_FLIGHT} requests in flight already"
        ))
        .with_retryable(true));
    };
    let (limit, timeout) = (req.max_response_body, req.timeout);
    match client.send(req).await {
        Ok(res) if res.body.len() > limit => Err(WippyError::internal(format!(
            "http_client.{what}: response body over the limit of {limit} bytes"
        ))),
        Ok(res) => Ok(Sent {
            res,
            in_flight,
            timeout,
        }),
        Err(e) => Err(to_lua_error(what, e)),
    }
}

/// The longest piece one `stream:read(n)` returns, and what it returns without `n`.
pub(crate) const MAX_READ: usize = 1 << 20;
const DEFAULT_READ: usize = 64 * 1024;

/// `response.stream`: the body of a `stream = true` request, read as it arrives.
///
/// `stream:read(n?)` returns the next piece of at most `n` bytes (64 KiB by default, at most
/// 1 MiB), as soon as any has arrived; `nil` at the end of the body; `nil, err` if the body
/// fails, passes `max_response_body`, or nothing arrives within the request's `timeout`.
/// `stream:close()` closes the connection (also done by the end of the body, an error, and
/// the garbage collector). One read at a time: a second coroutine reading the same stream
/// meanwhile gets an error.
struct HttpStream {
    body: Option<Box<dyn OutboundStream>>,
    /// What arrived and was not returned yet.
    pending: Bytes,
    timeout: Duration,
    _in_flight: Option<InFlight>,
}

impl HttpStream {
    /// The next piece, at most `n` bytes; `None` at the end.
    async fn read(&mut self, n: usize) -> Result<Option<Bytes>, WippyError> {
        if self.pending.is_empty() {
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            let next = tokio::time::timeout(self.timeout, body.next_chunk()).await;
            match next {
                Ok(Ok(Some(chunk))) => self.pending = chunk,
                Ok(Ok(None)) => {
                    self.close();
                    return Ok(None);
                }
                Ok(Err(e)) => {
                    self.close();
                    return Err(to_lua_error("stream:read", e));
                }
                Err(_) => {
                    self.close();
                    return Err(WippyError::internal(format!(
                        "http_client.stream:read: nothing arrived within {:?}",
                        self.timeout
                    ))
                    .with_retryable(true));
                }
            }
        }
        let n = n.min(self.pending.len());
        Ok(Some(self.pending.split_to(n)))
    }

    /// Closes the connection and leaves the requests in flight; what arrived is dropped.
    fn close(&mut self) {
        self.body = None;
        self.pending = Bytes::new();
        self._in_flight = None;
    }
}

impl mlua::UserData for HttpStream {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method_mut("read", |lua, mut this, n: Option<LuaValue>| async move {
            let n = match n {
                None | Some(LuaValue::Nil) => DEFAULT_READ,
                Some(LuaValue::Integer(n)) if n > 0 => usize::try_from(n).unwrap_or(MAX_READ),
                Some(LuaValue::Number(f)) if f >= 1.0 && f.fract() == 0.0 => {
                    if f > MAX_READ as f64 {
                        MAX_READ
                    } else {
                        f as usize
                    }
                }
                Some(_) => {
                    let e = invalid("stream:read", "n must be a positive integer");
                    return Ok::<Reply, mlua::Error>((LuaValue::Nil, Some(e)));
                }
            };
            match this.read(n.min(MAX_READ)).await {
                Ok(Some(piece)) => Ok((LuaValue::String(lua.create_string(&piece)?), None)),
                Ok(None) => Ok((LuaValue::Nil, None)),
                Err(e) => Ok((LuaValue::Nil, Some(e))),
            }
        });
        methods.add_method_mut("close", |_, this, ()| {
            this.close();
            Ok(true)
        });
    }
}

/// `request_batch({{method, url, opts?}, ...})` → `responses, errors`: the requests run
/// concurrently; `responses[i]` or `errors[i]` is set for the `i`-th request, in order.
async fn request_batch(
    lua: &Lua,
    clients: &Arc<HttpClients>,
    entry: &str,
    list: LuaValue,
) -> mlua::Result<(LuaValue, LuaValue)> {
    let what = "request_batch";
    let bad = |message: String| -> mlua::Result<(LuaValue, LuaValue)> {
        Ok((
            LuaValue::Nil,
            LuaValue::UserData(lua.create_userdata(invalid(what, message))?),
        ))
    };
    let LuaValue::Table(list) = list else {
        return bad("a list of {method, url, opts?} is required".to_owned());
    };
    let items: Vec<LuaValue> = list.sequence_values().collect::<mlua::Result<_>>()?;
    if items.len() > MAX_BATCH {
        return bad(format!("at most {MAX_BATCH} requests in a batch"));
    }
    let policy = clients.policy(entry);
    let prepared: Vec<Result<OutboundRequest, WippyError>> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let LuaValue::Table(item) = item else {
                return Err(invalid(what, format!("request {} is not a table", i + 1)));
            };
            let method = method_arg(what, item.raw_get(1).ok())?;
            let url: LuaValue = item.raw_get(2).unwrap_or(LuaValue::Nil);
            let opts: LuaValue = item.raw_get(3).unwrap_or(LuaValue::Nil);
            let req = build(lua, what, method, &url, &opts, &policy)?;
            if req.stream {
                return Err(invalid(
                    what,
                    format!("request {}: a batch does not stream", i + 1),
                ));
            }
            Ok(req)
        })
        .collect();
    let results = futures_util::future::join_all(prepared.into_iter().map(|req| async move {
        match req {
            Ok(req) => send(clients, what, req).await,
            Err(e) => Err(e),
        }
    }))
    .await;
    let responses = lua.create_table()?;
    let errors = lua.create_table()?;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(res) => responses.raw_set(i + 1, response_table(lua, res)?)?,
            Err(e) => errors.raw_set(i + 1, e)?,
        }
    }
    Ok((LuaValue::Table(responses), LuaValue::Table(errors)))
}

/// The `http_client` table of `entry`: every call runs under the entry's policy.
pub(crate) fn module_for(lua: &Lua, clients: Arc<HttpClients>, entry: &str) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let entry: Arc<str> = Arc::from(entry);
    let make = |method: Option<&'static str>| {
        let clients = clients.clone();
        let entry = entry.clone();
        lua.create_async_function(move |lua, args: MultiValue| {
            let clients = clients.clone();
            let entry = entry.clone();
            async move {
                let what = call_name(method);
                let mut args = args.into_iter();
                let method = match method {
                    Some(m) => m.to_owned(),
                    None => match method_arg(what, args.next()) {
                        Ok(m) => m,
                        Err(e) => return Ok::<Reply, mlua::Error>((LuaValue::Nil, Some(e))),
                    },
                };
                let url = args.next().unwrap_or(LuaValue::Nil);
                let opts = args.next().unwrap_or(LuaValue::Nil);
                let policy = clients.policy(&entry);
                let req = match build(&lua, what, method, &url, &opts, &policy) {
                    Ok(req) => req,
                    Err(e) => return Ok((LuaValue::Nil, Some(e))),
                };
                match send(&clients, what, req).await {
                    Ok(sent) => Ok((LuaValue::Table(response_table(&lua, sent)?), None)),
                    Err(e) => Ok((LuaValue::Nil, Some(e))),
                }
            }
        })
    };
    {
        let clients = clients.clone();
        let entry = entry.clone();
        m.raw_set(
            "request_batch",
            lua.create_async_function(move |lua, list: LuaValue| {
                let clients = clients.clone();
                let entry = entry.clone();
                async move { request_batch(&lua, &clients, &entry, list).await }
            })?,
        )?;
    }
    m.raw_set("request", make(None)?)?;
    for (name, method) in [
        ("get", "GET"),
        ("post", "POST"),
        ("put", "PUT"),
        ("patch", "PATCH"),
        ("delete", "DELETE"),
        ("head", "HEAD"),
    ] {
        m.raw_set(name, make(Some(method))?)?;
    }
    m.raw_set(
        "encode_uri",
        lua.create_function(|lua, s: mlua::LuaString| {
            let bytes = s.as_bytes();
            if bytes.len() > convert::limit(lua) {
                return Err(mlua::Error::runtime(
                    "http_client.encode_uri: input too large",
                ));
            }
            let mut out = String::with_capacity(bytes.len());
            encode_component(&bytes, &mut out);
            Ok(out)
        })?,
    )?;
    m.raw_set(
        "decode_uri",
        lua.create_function(|lua, s: mlua::LuaString| -> mlua::Result<Reply> {
            match decode_component(&s.as_bytes()) {
                Some(bytes) => Ok((LuaValue::String(lua.create_string(bytes)?), None)),
                None => Ok((
                    LuaValue::Nil,
                    Some(invalid("decode_uri", "malformed % escape")),
                )),
            }
        })?,
    )?;
    Ok(m)
}

/// A placeholder table under the name `http_client` in the module list, so `require` finds
/// the name; the sandbox returns the entry's own table ([`module_for`]) in its place.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    lua.create_table()
}

/// The function the sandbox calls once per entry: `make_http_client(entry)` → the entry's
/// `http_client` table.
pub(crate) fn maker(lua: &Lua, clients: Arc<HttpClients>) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, entry: mlua::LuaString| {
        module_for(lua, clients.clone(), &entry.to_string_lossy())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip() {
        let mut out = String::new();
        encode_component("a b&c=d/é~".as_bytes(), &mut out);
        assert_eq!(out, "a%20b%26c%3Dd%2F%C3%A9~");
        assert_eq!(
            decode_component(out.as_bytes()).unwrap(),
            "a b&c=d/é~".as_bytes()
        );
        assert_eq!(decode_component(b"%zz"), None);
        assert_eq!(decode_component(b"%4"), None);
    }
}
