//! An outbound HTTP/1.1 client for apps (the Lua `http_client` module sits on it): one
//! connection per request, HTTP or HTTPS (rustls with `ring`), bounded in every way.
//!
//! **Address policy.** The host is resolved first and every address is checked against
//! [`is_public`]; the connection goes to an address that passed, never to the name again, so
//! a DNS answer that changes between the check and the connect (rebinding) cannot steer it
//! to a private address. Loopback, private, link-local, shared (CGNAT), multicast, reserved
//! and documentation ranges, and IPv6 forms that embed such an IPv4 address, are refused
//! unless [`ClientOptions::allow_private`] is set. Every redirect is checked again.
//!
//! **Bounds.** A connect timeout per address tried, a total timeout over the whole exchange
//! (redirects and body included; up to the response head for [`send_streaming`], whose
//! caller bounds each read of the body), at most [`ClientOptions::max_redirects`] redirects, and a
//! response body limit checked while reading (the body is never buffered past it). hyper
//! bounds the response head (100 headers, its read buffer).
//!
//! **TLS.** Server certificates are checked against the system's roots
//! (`rustls-native-certs`, loaded once) or, when [`ClientOptions::ca_pem`] is given, against
//! those certificates only. Certificate checks cannot be turned off: no option skips them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// What a request may do, and where.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Timeout of one TCP connect (per address tried).
    pub connect_timeout: Duration,
    /// Timeout of the whole exchange: resolve, connect, TLS, request, redirects, body.
    pub timeout: Duration,
    /// The largest response body, in bytes; a longer one fails with
    /// [`ClientError::BodyTooLarge`].
    pub max_response_body: usize,
    /// Redirects followed at most (`0`: a redirect is returned as the response).
    pub max_redirects: usize,
    /// Whether non-public addresses (loopback, private, link-local, ...) may be reached.
    pub allow_private: bool,
    /// PEM certificates to trust instead of the system's roots.
    pub ca_pem: Option<Bytes>,
    /// The name to verify the server's certificate against (and send as SNI) instead of
    /// the URL's host.
    pub server_name: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_response_body: 10 * 1024 * 1024,
            max_redirects: 10,
            allow_private: false,
            ca_pem: None,
            server_name: None,
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// The method.
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers to send (`Host` and `Content-Length` are set by the client).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// A response, its body read whole.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The URL that answered (after redirects).
    pub url: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an absolute `http`/`https` URL with a host.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value is not valid HTTP.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// The TLS options are unusable (a CA that is not PEM, a bad server name).
    #[error("invalid TLS options: {0}")]
    InvalidTls(String),
    /// Every address of the host is one the options forbid.
    #[error("{host} resolves to {addr}, a non-public address (not allowed)")]
    Forbidden {
        /// The host of the URL.
        host: String,
        /// The first address refused.
        addr: IpAddr,
    },
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// No address accepted a connection.
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// The host.
        host: String,
        /// The last failure.
        reason: String,
    },
    /// The TLS handshake failed (an untrusted certificate, a name mismatch).
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// What rustls said.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(String),
    /// The whole exchange took longer than [`ClientOptions::timeout`].
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The response body is longer than [`ClientOptions::max_response_body`].
    #[error("response body over the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// More redirects than [`ClientOptions::max_redirects`].
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
}

impl ClientError {
    /// Whether the request itself is wrong (a bad URL, header or TLS option), as opposed to
    /// a failure of the network or of the server.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidUrl { .. }
                | ClientError::InvalidHeader(_)
                | ClientError::InvalidTls(_)
        )
    }

    /// Whether retrying later may succeed (network failures and timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Resolve { .. }
                | ClientError::Connect { .. }
                | ClientError::Http(_)
                | ClientError::Timeout(_)
        )
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (100.64/10), multicast, broadcast, unspecified, reserved, benchmarking or documentation,
/// and for IPv6 also not unique-local, site-local, or a form embedding an IPv4 address
/// (mapped, compatible, NAT64, 6to4) that is not public itself.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (deprecated) ::a.b.c.d, and :: and ::1 with them.
    if s[..6] == [0; 6] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // NAT64 64:ff9b::/96 embeds an IPv4 address in the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 2002::/16 embeds one in bits 16..48.
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
}

/// Sends `req` under `options`, following redirects; reads the whole body.
///
/// Cancel safe: dropping the future closes the connection.
///
/// # Errors
///
/// [`ClientError`], naming the URL, host or limit.
pub async fn send(
    req: ClientRequest,
    options: &ClientOptions,
) -> Result<ClientResponse, ClientError> {
    let timeout = options.timeout;
    tokio::time::timeout(timeout, async {
        let head = follow(req, options).await?;
        let (status, headers, url) = (head.parts.status, head.parts.headers, head.url);
        let mut body = head.body;
        let mut buf = BytesMut::new();
        while let Some(data) = body.chunk().await? {
            buf.extend_from_slice(&data);
        }
        Ok(ClientResponse {
            status,
            headers,
            body: buf.freeze(),
            url,
        })
    })
    .await
    .unwrap_or(Err(ClientError::Timeout(timeout)))
}

/// Sends `req` as [`send`] does, but returns once the response head has arrived: its body is
/// read piece by piece from the [`BodyStream`], within the same body limit. The timeout covers
/// the exchange up to the head (redirects included), not the body: the caller bounds its
/// reads.
///
/// # Errors
///
/// [`ClientError`], naming the URL, host or limit.
pub async fn send_streaming(
    req: ClientRequest,
    options: &ClientOptions,
) -> Result<ClientStream, ClientError> {
    let timeout = options.timeout;
    let head = tokio::time::timeout(timeout, follow(req, options))
        .await
        .unwrap_or(Err(ClientError::Timeout(timeout)))?;
    Ok(ClientStream {
        status: head.parts.status,
        headers: head.parts.headers,
        url: head.url,
        body: head.body,
    })
}

/// A response whose body is read as it arrives ([`send_streaming`]).
#[derive(Debug)]
pub struct ClientStream {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The URL that answered (after redirects).
    pub url: String,
    /// The body, not read yet.
    pub body: BodyStream,
}

/// A response body read piece by piece. Dropping it closes the connection.
pub struct BodyStream {
    body: hyper::body::Incoming,
    read: usize,
    limit: usize,
    _connection: AbortOnDrop,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream")
            .field("read", &self.read)
            .field("limit", &self.limit)
            .finish()
    }
}

impl BodyStream {
    /// The next piece of the body as it arrived (never empty); `None` at its end.
    ///
    /// # Errors
    ///
    /// [`ClientError::BodyTooLarge`] once the body passes the limit, [`ClientError::Http`]
    /// if the connection fails.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            self.read = self.read.saturating_add(data.len());
            if self.read > self.limit {
                return Err(ClientError::BodyTooLarge(self.limit));
            }
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// A response head, its body not read yet.
struct Head {
    parts: http::response::Parts,
    body: BodyStream,
    url: String,
}

async fn follow(mut req: ClientRequest, options: &ClientOptions) -> Result<Head, ClientError> {
    let tls = if options.ca_pem.is_some() || req.url.starts_with("https:") {
        Some(tls_config(options)?)
    } else {
        None
    };
    let mut redirects = 0;
    loop {
        let uri = parse_url(&req.url)?;
        let res = once(&req, &uri, options, tls.as_ref()).await?;
        let location = res
            .parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let status = res.parts.status;
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            return Ok(res);
        };
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) || options.max_redirects == 0 {
            return Ok(res);
        }
        if redirects >= options.max_redirects {
            return Err(ClientError::TooManyRedirects(options.max_redirects));
        }
        redirects += 1;
        let next = resolve_location(&uri, location)?;
        let next_uri = parse_url(&next)?;
        // A redirect to another origin must not carry the credentials meant for this one.
        if next_uri.authority() != uri.authority() || next_uri.scheme() != uri.scheme() {
            req.headers.retain(|(name, _)| {
                !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("cookie")
            });
        }
        // 303, and 301/302 after a POST, continue as GET without a body (what browsers do).
        if status == StatusCode::SEE_OTHER
            || (matches!(status.as_u16(), 301 | 302) && req.method == Method::POST)
        {
            if req.method != Method::HEAD {
                req.method = Method::GET;
            }
            req.body = Bytes::new();
            req.headers.retain(|(name, _)| {
                !name.eq_ignore_ascii_case("content-type")
                    && !name.eq_ignore_ascii_case("content-length")
            });
        }
        req.url = next;
    }
}

fn parse_url(url: &str) -> Result<Uri, ClientError> {
    let bad = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info in the URL is not supported (use auth)"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// The absolute URL a `Location` names, relative to `base`.
fn resolve_location(base: &Uri, location: &str) -> Result<String, ClientError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let path = base.path();
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Ok(format!("{scheme}://{authority}{dir}/{location}"))
}

/// The host without IPv6 brackets.
fn bare_host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or("");
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Resolves the host and keeps the addresses the options allow.
async fn addresses(uri: &Uri, options: &ClientOptions) -> Result<Vec<SocketAddr>, ClientError> {
    let host = bare_host(uri);
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let all: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ClientError::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .take(16)
            .collect(),
    };
    if options.allow_private {
        return Ok(all);
    }
    let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
    match (allowed.is_empty(), all.first()) {
        (true, Some(first)) => Err(ClientError::Forbidden {
            host: host.to_owned(),
            addr: first.ip(),
        }),
        (true, None) => Err(ClientError::Resolve {
            host: host.to_owned(),
            reason: "no addresses".to_owned(),
        }),
        (false, _) => Ok(allowed),
    }
}

async fn connect(uri: &Uri, options: &ClientOptions) -> Result<TcpStream, ClientError> {
    let host = bare_host(uri).to_owned();
    let mut last = String::from("no addresses");
    for addr in addresses(uri, options).await? {
        match tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => {
                last = format!(
                    "{addr}: connect timed out after {:?}",
                    options.connect_timeout
                )
            }
        }
    }
    Err(ClientError::Connect { host, reason: last })
}

fn tls_config(options: &ClientOptions) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let roots = match &options.ca_pem {
        Some(pem) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::InvalidTls(format!("ca: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::InvalidTls(format!("ca: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ClientError::InvalidTls("ca: no PEM certificate".to_owned()));
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::InvalidTls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads the system's trusted roots now, so the first HTTPS request does not read the
/// certificate files on a shard's thread (the app calls it before serving). Later calls
/// return at once.
pub fn load_system_roots() {
    let _ = system_roots();
}

/// The system's trusted roots, loaded once (unreadable ones are skipped: an empty store
/// then refuses every server, which is the safe failure).
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(
                added,
                ignored,
                errors = found.errors.len(),
                "system TLS roots"
            );
            Arc::new(roots)
        })
        .clone()
}

/// One request over a new connection.
async fn once(
    req: &ClientRequest,
    uri: &Uri,
    options: &ClientOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Head, ClientError> {
    let host = bare_host(uri).to_owned();
    let mut request = Request::builder().method(req.method.clone()).uri(
        uri.path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|e| ClientError::InvalidUrl {
                url: req.url.clone(),
                reason: e.to_string(),
            })?,
    );
    let headers = request
        .headers_mut()
        .ok_or_else(|| ClientError::Http("request".into()))?;
    for (name, value) in &req.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ClientError::InvalidHeader(name.clone()))?;
        let v =
            HeaderValue::from_str(value).map_err(|_| ClientError::InvalidHeader(name.clone()))?;
        headers.append(n, v);
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    headers.insert(
        header::HOST,
        HeaderValue::from_str(authority).map_err(|_| ClientError::InvalidHeader("host".into()))?,
    );
    let request = request
        .body(Full::new(req.body.clone()))
        .map_err(|e| ClientError::Http(e.to_string()))?;

    let tcp = connect(uri, options).await?;
    let res = if uri.scheme_str() == Some("https") {
        let config = match tls {
            Some(c) => c.clone(),
            None => tls_config(options)?,
        };
        let name = options.server_name.clone().unwrap_or_else(|| host.clone());
        let name = ServerName::try_from(name)
            .map_err(|e| ClientError::InvalidTls(format!("server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls {
                host: host.clone(),
                reason: e.to_string(),
            })?;
        exchange(TokioIo::new(stream), request).await?
    } else {
        exchange(TokioIo::new(tcp), request).await?
    };
    let (res, connection) = res;
    let (parts, body) = res.into_parts();
    // The connection ends with the body (it is not reused).
    Ok(Head {
        parts,
        body: BodyStream {
            body,
            read: 0,
            limit: options.max_response_body,
            _connection: connection,
        },
        url: req.url.clone(),
    })
}

/// Sends `request` on a new HTTP/1.1 connection over `io`; returns the response and the
/// guard of the connection's task (dropping it ends the connection).
async fn exchange<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> Result<(http::Response<hyper::body::Incoming>, AbortOnDrop), ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    // The connection runs as its own task, aborted when the guard drops: when the body is
    // read or when the caller drops the future, so a canceled Lua call leaves no task behind.
    let guard = AbortOnDrop(tokio::task::spawn(conn));
    let res = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    Ok((res, guard))
}

/// Aborts the connection task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_told_apart() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "2002:0101:0101::",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base: Uri = "http://a.example:8080/x/y?q".parse().unwrap();
        assert_eq!(
            resolve_location(&base, "/z").unwrap(),
            "http://a.example:8080/z"
        );
        assert_eq!(
            resolve_location(&base, "z").unwrap(),
            "http://a.example:8080/x/z"
        );
        assert_eq!(
            resolve_location(&base, "//b.example/").unwrap(),
            "http://b.example/"
        );
        assert_eq!(
            resolve_location(&base, "https://c.example/").unwrap(),
            "https://c.example/"
        );
    }
}
