//! Strict parsing of what the origin check compares: a serialized origin (RFC 6454 §6.2:
//! `scheme "://" host [ ":" port ]`, nothing else), a `Host` header (`host [ ":" port ]`), and
//! the patterns of `wsrelay.allowed.origins`.
//!
//! Parsing is strict on purpose: the old check matched patterns against the raw text, so
//! `https://evil.com\.example.com` or `https://evil.com:443.example.com` matched
//! `https://*.example.com`, and `http://localhost:3000.evil.com` matched `localhost:*`. Here a
//! host is only DNS-label characters (or a bracketed IPv6 literal) and a port only digits, so
//! a wildcard can never reach past the host it stands in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host and an optional explicit port, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

/// A serialized origin: scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) authority: Authority,
}

impl Origin {
    /// Parses `scheme://host[:port]` (case-insensitive); anything else is `None`.
    pub(crate) fn parse(text: &str) -> Option<Origin> {
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://")?;
        if !is_scheme(scheme) {
            return None;
        }
        Some(Origin {
            scheme: scheme.to_owned(),
            authority: Authority::parse(rest)?,
        })
    }

    /// The port the origin talks to: the explicit one, else the scheme's default.
    pub(crate) fn effective_port(&self) -> Option<u16> {
        self.authority.port.or_else(|| self.default_port())
    }

    /// The default port of the origin's scheme, if it has one.
    pub(crate) fn default_port(&self) -> Option<u16> {
        default_port(&self.scheme)
    }
}

impl Authority {
    /// Parses `host[:port]` (a `Host` header, or the authority of an origin).
    pub(crate) fn parse(text: &str) -> Option<Authority> {
        let lower = text.to_ascii_lowercase();
        let (host, port) = split_port(&lower)?;
        if !is_host(host) {
            return None;
        }
        let port = match port {
            Some(digits) => Some(parse_port(digits)?),
            None => None,
        };
        Some(Authority {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether the host names this machine's loopback interface: `localhost`, an address in
    /// `127.0.0.0/8`, or `[::1]`.
    pub(crate) fn is_loopback_name(&self) -> bool {
        self.host == "localhost" || self.ip().is_some_and(|ip| ip.is_loopback())
    }

    /// The host as an IP address, when it is an IPv4 or bracketed IPv6 literal.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self.host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| ip.to_canonical()),
            None => self.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        }
    }
}

/// A pattern of `wsrelay.allowed.origins`: an optional scheme, a host in which `*` stands for
/// any run of host characters, and a port that is absent, a number or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    scheme: Option<String>,
    host: String,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// No port: the scheme's default port.
    Default,
    Exact(u16),
    Any,
}

impl Pattern {
    /// Parses one pattern (already trimmed); `None` when it is not
    /// `[scheme://]host[:port]` with `*` only in the host or as the whole port.
    pub(crate) fn parse(text: &str) -> Option<Pattern> {
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, lower.as_str()),
        };
        if scheme.is_some_and(|s| !is_scheme(s)) {
            return None;
        }
        let (host, port) = split_port(rest)?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(digits) => PortPattern::Exact(parse_port(digits)?),
        };
        // `*` stands for host characters: replacing it by one must leave a valid host.
        if !is_host(&host.replace('*', "a")) {
            return None;
        }
        Some(Pattern {
            scheme: scheme.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }

    /// Whether `origin` matches: same scheme (http or https when the pattern has none), the
    /// host glob, and the port (the scheme's default when the pattern names none).
    pub(crate) fn matches(&self, origin: &Origin) -> bool {
        let scheme_ok = match &self.scheme {
            Some(scheme) => *scheme == origin.scheme,
            None => matches!(origin.scheme.as_str(), "http" | "https"),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(port) => origin.effective_port() == Some(port),
            PortPattern::Default => origin.effective_port() == origin.default_port(),
        };
        scheme_ok && port_ok && glob(&self.host, &origin.authority.host)
    }
}

/// The default port of the schemes a browser page can have (and their WebSocket twins).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Splits `host[:port]`; an IPv6 literal keeps its brackets. `None` when the port separator
/// is there but the port is empty.
fn split_port(text: &str) -> Option<(&str, Option<&str>)> {
    let after_host = if text.starts_with('[') {
        text.find(']')? + 1
    } else {
        text.find(':').unwrap_or(text.len())
    };
    let (host, rest) = text.split_at(after_host);
    match rest.strip_prefix(':') {
        Some("") => None,
        Some(port) => Some((host, Some(port))),
        None if rest.is_empty() => Some((host, None)),
        None => None,
    }
}

/// One to five digits, at most 65535.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A DNS name (labels of letters, digits, `-` and `_`, joined by single dots), an IPv4
/// address (which has that shape too), or a bracketed IPv6 literal.
fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters. Both are
/// hosts here, so a run never crosses into a port or a path.
fn glob(pattern: &str, text: &str) -> bool {
    wsrelay_process::glob_match(pattern, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_strictly() {
        let good = [
            "http://a.com",
            "HTTPS://A.COM:8443",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
            "http://[::1]",
            "chrome-extension://abc",
            "http://my_host.local",
        ];
        for text in good {
            assert!(Origin::parse(text).is_some(), "{text}");
        }
        let bad = [
            "a.com",
            "http://",
            "http://a.com/",
            "http://a.com:",
            "http://a.com:99999",
            "http://a.com:443.evil.com",
            "https://evil.com\\.example.com",
            "http://user@a.com",
            "http://a..com",
            "http://.a.com",
            "http://a.com.",
            "http://a.com?x",
            "http://a.com#x",
            "http:// a.com",
            "http://[::1",
            "http://[not-v6]",
            "http://[::1]x",
            "1http://a.com",
            "http://a.com:+80",
            "http://a.com:80:80",
        ];
        for text in bad {
            assert!(Origin::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn loopback_names() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "LOCALHOST:80",
        ] {
            assert!(Authority::parse(host).unwrap().is_loopback_name(), "{host}");
        }
        for host in [
            "evil.com",
            "localhost.evil.com",
            "10.0.0.1",
            "[::2]",
            "127.1",
        ] {
            assert!(
                !Authority::parse(host).unwrap().is_loopback_name(),
                "{host}"
            );
        }
    }

    #[test]
    fn patterns_parse_strictly() {
        for text in [
            "*.example.com",
            "https://*.example.com",
            "localhost:*",
            "a.com:80",
        ] {
            assert!(Pattern::parse(text).is_some(), "{text}");
        }
        for text in [
            "https://a.com/",
            "a.com:x",
            "a.com:",
            "https://a.com:8*",
            "*://a.com",
        ] {
            assert!(Pattern::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn glob_basics() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbbd"));
        assert!(glob("*.x.*", "a.x.b"));
    }
}
