//! Which browser origins may reach a relay route (docs/spec.md §5).
//!
//! The check runs before the endpoint's handler for every request that carries `Origin`
//! (docs/spec.md §3.1), so a refused cross-site request spawns nothing: that is what stops cross-site
//! WebSocket hijacking.
//!
//! Beyond docs/spec.md §5, for the cases it leaves open:
//!
//! - Origins and patterns are parsed strictly (module `authority`): an `Origin` that is not
//!   `scheme://host[:port]` is refused, and a pattern that is not `[scheme://]host[:port]` is
//!   a configuration error. A pattern without a scheme matches `http` and `https` only.
//! - More than one `Origin` header, or one that is not visible ASCII, is refused.
//! - Same-origin (no patterns) trusts the `Host` header, which the client writes. On a
//!   loopback listener that would let DNS rebinding in (a page on `evil.com`, re-resolved to
//!   `127.0.0.1`, sends `Host: evil.com` and `Origin: http://evil.com`), so there the `Host`
//!   must also be a loopback name (`localhost`, `127.0.0.0/8`, `[::1]`) or the listen address.

mod authority;

use std::net::SocketAddr;

use http::header::{HeaderMap, HOST, ORIGIN};

use authority::{Authority, Origin, Pattern};

/// The `wsrelay.allowed.origins` option, parsed.
///
/// # Examples
///
/// ```
/// use wsrelay_relay::OriginPolicy;
///
/// let policy = OriginPolicy::parse("https://*.example.com, localhost:3000").unwrap();
/// assert!(policy.allows(Some("https://app.example.com"), Some("relay.example.com")));
/// assert!(policy.allows(Some("http://localhost:3000"), None));
/// assert!(!policy.allows(Some("https://evil.com"), Some("relay.example.com")));
/// assert!(!policy.allows(Some("https://evil.com:443.example.com"), None));
/// assert!(policy.allows(None, None)); // non-browser clients send no Origin
///
/// let same_origin = OriginPolicy::default();
/// assert!(same_origin.allows(Some("http://relay.example.com"), Some("relay.example.com")));
/// assert!(!same_origin.allows(Some("http://other.example.com"), Some("relay.example.com")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    patterns: Vec<Pattern>,
    allow_all: bool,
}

/// Why a request's `Origin` was refused (answered with `403` and this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginRefusal {
    /// The request carries more than one `Origin` header.
    #[error("several Origin headers")]
    Several,
    /// `Origin` is not a serialized origin.
    #[error("Origin {origin:?} is not scheme://host[:port]")]
    Malformed {
        /// The header as sent (lossily decoded).
        origin: String,
    },
    /// `Origin: null` (an opaque origin), which only `*` allows.
    #[error("Origin null is not allowed")]
    Opaque,
    /// No pattern of `wsrelay.allowed.origins` matches.
    #[error("origin {origin} is not allowed")]
    NotAllowed {
        /// The origin.
        origin: String,
    },
    /// Same-origin only, and the origin is not the `Host` the request was sent to.
    #[error("origin {origin} is not allowed (same origin only, Host {host:?})")]
    CrossOrigin {
        /// The origin.
        origin: String,
        /// The `Host` header, if any.
        host: Option<String>,
    },
    /// Same-origin only on a loopback listener, and `Host` is not a loopback name.
    #[error(
        "Host {host:?} is not a loopback name on a loopback listener \
         (list the origins to serve in wsrelay.allowed.origins)"
    )]
    NotLoopback {
        /// The `Host` header.
        host: String,
    },
}

impl OriginPolicy {
    /// Parses a comma-separated list of patterns (spaces trimmed, case-insensitive). An empty
    /// list means same-origin only; `*` alone allows every origin.
    ///
    /// # Errors
    ///
    /// A message naming the first pattern that is not `[scheme://]host[:port]`.
    pub fn parse(list: &str) -> Result<OriginPolicy, String> {
        let mut policy = OriginPolicy::default();
        for text in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if text == "*" {
                policy.allow_all = true;
                continue;
            }
            let pattern = Pattern::parse(text).ok_or_else(|| {
                format!("pattern {text:?} is not [scheme://]host[:port] (`*` in the host or as the port)")
            })?;
            policy.patterns.push(pattern);
        }
        Ok(policy)
    }

    /// Checks the `Origin` of a request with these headers, which arrived on `listener` (the
    /// listen address, when known).
    ///
    /// # Errors
    ///
    /// The [`OriginRefusal`] that says why.
    pub fn check_headers(
        &self,
        headers: &HeaderMap,
        listener: Option<SocketAddr>,
    ) -> Result<(), OriginRefusal> {
        let mut origins = headers.get_all(ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => return Ok(()),
            (Some(_), Some(_)) => return Err(OriginRefusal::Several),
            (Some(origin), None) => origin.to_str().map_err(|_| OriginRefusal::Malformed {
                origin: String::from_utf8_lossy(origin.as_bytes()).into_owned(),
            })?,
        };
        let mut hosts = headers.get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().ok(),
            _ => None, // none, or several: no single Host to be the same origin as
        };
        self.check(Some(origin), host, listener)
    }

    /// Checks one `Origin` value against the policy, given the request's `Host` and the
    /// listen address (when known).
    ///
    /// # Errors
    ///
    /// The [`OriginRefusal`] that says why.
    pub fn check(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
        listener: Option<SocketAddr>,
    ) -> Result<(), OriginRefusal> {
        let Some(text) = origin.map(str::trim) else {
            return Ok(()); // not a browser: no cross-site risk
        };
        if self.allow_all {
            return Ok(());
        }
        if text.eq_ignore_ascii_case("null") {
            return Err(OriginRefusal::Opaque);
        }
        let origin = Origin::parse(text).ok_or_else(|| OriginRefusal::Malformed {
            origin: text.to_owned(),
        })?;
        if self.patterns.is_empty() {
            return same_origin(&origin, text, host, listener);
        }
        if self.patterns.iter().any(|pattern| pattern.matches(&origin)) {
            Ok(())
        } else {
            Err(OriginRefusal::NotAllowed {
                origin: text.to_owned(),
            })
        }
    }

    /// Whether a request with this `Origin` and `Host` may pass, on a listener whose address
    /// is not known (so without the loopback rule).
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        self.check(origin, host, None).is_ok()
    }
}

/// Same-origin: the origin's host and port are those of `Host` (its port defaulting to the
/// origin scheme's), and on a loopback listener `Host` is a loopback name.
fn same_origin(
    origin: &Origin,
    text: &str,
    host: Option<&str>,
    listener: Option<SocketAddr>,
) -> Result<(), OriginRefusal> {
    let cross = || OriginRefusal::CrossOrigin {
        origin: text.to_owned(),
        host: host.map(str::to_owned),
    };
    let authority = host
        .and_then(|h| Authority::parse(h.trim()))
        .ok_or_else(cross)?;
    // The listen address itself is a loopback address, so it passes as one.
    let loopback_listener = listener.is_some_and(|l| l.ip().to_canonical().is_loopback());
    if loopback_listener && !authority.is_loopback_name() {
        return Err(OriginRefusal::NotLoopback {
            host: authority.host,
        });
    }
    // A `Host` without a port means the default port of the scheme the page used.
    let host_port = authority.port.or_else(|| origin.default_port());
    if origin.authority.host == authority.host && origin.effective_port() == host_port {
        Ok(())
    } else {
        Err(cross())
    }
}

#[cfg(test)]
mod tests;
