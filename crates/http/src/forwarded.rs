//! The client's address behind trusted proxies: `Forwarded` (RFC 7239) and
//! `X-Forwarded-For` / `X-Forwarded-Proto`.
//!
//! Only a peer inside [`TrustedProxies`] is believed. From such a peer, the hops its
//! header lists are walked from the right (the nearest proxy appends last): trusted hops
//! are skipped, and the first untrusted one is the client. Everything left of it was
//! written by that client and may be forged, so it is never read. If every hop is
//! trusted, the leftmost is the client. A hop that is not an address (`unknown`, an
//! obfuscated `_name`, garbage) ends the walk at the last trusted address seen, which is
//! the most that can be known. `Forwarded` wins over `X-Forwarded-For` when a request has
//! both. At most [`MAX_HOPS`] hops are read, from the right.
//!
//! The scheme comes from the rightmost `proto=` of `Forwarded`, else the rightmost value of
//! `X-Forwarded-Proto`: what the nearest trusted proxy saw.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, FORWARDED};
use ipnet::IpNet;

/// The most hops of a forwarding header that are looked at (from the right).
pub const MAX_HOPS: usize = 32;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The networks whose forwarding headers (and PROXY protocol headers) are believed.
///
/// # Examples
///
/// ```
/// use wsrelay_http::TrustedProxies;
///
/// let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
/// assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
/// assert!(!proxies.trusts("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

/// Where a request really came from, as far as the trusted proxies say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The client's address (port 0 when the header gave none).
    pub(crate) addr: SocketAddr,
    /// `https` or `http`, when a trusted proxy said which.
    pub(crate) https: Option<bool>,
}

impl TrustedProxies {
    /// Trusts the peers inside any of `nets`.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { nets: nets.into() }
    }

    /// Whether no peer is trusted (forwarding headers are then never read).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer` according to `headers`, or `peer` itself when it is not
    /// trusted or names no client.
    pub(crate) fn origin(&self, peer: SocketAddr, headers: &HeaderMap) -> Origin {
        let direct = Origin {
            addr: peer,
            https: None,
        };
        if self.is_empty() || !self.trusts(peer.ip()) {
            return direct;
        }
        let forwarded = headers.contains_key(FORWARDED);
        let hops = if forwarded {
            hops(headers, &FORWARDED, forwarded_for)
        } else {
            hops(headers, &X_FORWARDED_FOR, |item| Some(item.trim()))
        };
        let https = if forwarded {
            rightmost(headers, &FORWARDED, forwarded_proto)
        } else {
            rightmost(headers, &X_FORWARDED_PROTO, |item| Some(item.trim()))
        }
        .and_then(parse_scheme);
        Origin {
            addr: self.client_of(peer, hops),
            https,
        }
    }

    /// The rightmost untrusted hop of `hops` (given right to left).
    fn client_of<'a>(&self, peer: SocketAddr, hops: impl Iterator<Item = &'a str>) -> SocketAddr {
        let mut client = peer;
        for hop in hops.take(MAX_HOPS) {
            let Some(addr) = parse_node(hop) else {
                break;
            };
            client = addr;
            if !self.trusts(addr.ip()) {
                break;
            }
        }
        client
    }
}

/// The comma-separated items of every `name` header, right to left, mapped by `pick`.
fn hops<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    pick: fn(&'a str) -> Option<&'a str>,
) -> impl Iterator<Item = &'a str> {
    items(headers, name)
        // An element without `for=` (RFC 7239 lets a proxy omit it), or a value that is not
        // text, is no address: it stops the walk, as nothing left of it can be trusted.
        .map(move |item| item.and_then(pick).unwrap_or(""))
}

/// The first item, from the right, for which `pick` finds something.
fn rightmost<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    pick: fn(&'a str) -> Option<&'a str>,
) -> Option<&'a str> {
    items(headers, name).take(MAX_HOPS).flatten().find_map(pick)
}

/// The comma-separated items of every `name` header, right to left (`None` for a value
/// that is not text).
fn items<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = Option<&'a str>> {
    headers.get_all(name).iter().rev().flat_map(|value| {
        let (text, valid) = match value.to_str() {
            Ok(text) => (text, true),
            Err(_) => ("", false),
        };
        text.rsplit(',').map(move |item| valid.then_some(item))
    })
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    forwarded_param(element, "for")
}

/// The `proto=` parameter of one `Forwarded` element.
fn forwarded_proto(element: &str) -> Option<&str> {
    forwarded_param(element, "proto")
}

fn forwarded_param<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

fn parse_scheme(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("https") || text.eq_ignore_ascii_case("wss") {
        Some(true)
    } else if text.eq_ignore_ascii_case("http") || text.eq_ignore_ascii_case("ws") {
        Some(false)
    } else {
        None
    }
}

/// A node as `Forwarded` and `X-Forwarded-For` write it: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:8080`; anything else is `None`.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ])
    }

    fn origin(peer: &str, headers: &[(&str, &str)]) -> Origin {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        proxies().origin(peer.parse().unwrap(), &map)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// One case: the peer, the request's headers, the client IP expected.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    #[test]
    fn client_address_table() {
        let cases: &[Case] = &[
            // Untrusted peers' headers are ignored.
            (
                "192.0.2.9:1",
                &[("x-forwarded-for", "1.2.3.4")],
                "192.0.2.9",
            ),
            // Trusted peer: the rightmost untrusted hop; a forged left part is not read.
            (
                "10.0.0.1:1",
                &[("x-forwarded-for", "6.6.6.6, 1.2.3.4")],
                "1.2.3.4",
            ),
            (
                "10.0.0.1:1",
                &[("x-forwarded-for", "1.2.3.4, 10.0.0.7")],
                "1.2.3.4",
            ),
            // Several header lines are one list.
            (
                "10.0.0.1:1",
                &[
                    ("x-forwarded-for", "5.5.5.5"),
                    ("x-forwarded-for", "10.9.9.9"),
                ],
                "5.5.5.5",
            ),
            // Every hop trusted: the leftmost.
            (
                "10.0.0.1:1",
                &[("x-forwarded-for", "10.0.0.3, 10.0.0.2")],
                "10.0.0.3",
            ),
            // No header: the peer.
            ("10.0.0.1:1", &[], "10.0.0.1"),
            // Garbage ends the walk at the last trusted address.
            (
                "10.0.0.1:1",
                &[("x-forwarded-for", "1.2.3.4, junk, 10.0.0.5")],
                "10.0.0.5",
            ),
            ("10.0.0.1:1", &[("x-forwarded-for", "junk")], "10.0.0.1"),
            // Forwarded (RFC 7239 examples) wins over X-Forwarded-For.
            (
                "127.0.0.1:1",
                &[
                    ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
                    ("x-forwarded-for", "7.7.7.7"),
                ],
                "192.0.2.60",
            ),
            (
                "127.0.0.1:1",
                &[(
                    "forwarded",
                    r#"for="[2001:db8:cafe::17]:4711", for=10.1.1.1"#,
                )],
                "2001:db8:cafe::17",
            ),
            ("127.0.0.1:1", &[("forwarded", "for=unknown")], "127.0.0.1"),
            // IPv4-mapped peers count as IPv4; trusted IPv6 networks work.
            (
                "[::ffff:10.0.0.1]:1",
                &[("x-forwarded-for", "1.2.3.4")],
                "1.2.3.4",
            ),
            (
                "[2001:db8:ffff::1]:1",
                &[("x-forwarded-for", "2001:db8::5")],
                "2001:db8::5",
            ),
            // Ports in hops are accepted.
            (
                "10.0.0.1:1",
                &[("x-forwarded-for", "1.2.3.4:5678")],
                "1.2.3.4",
            ),
        ];
        for (peer, headers, expected) in cases {
            let found = origin(peer, headers).addr.ip();
            assert_eq!(found, ip(expected), "peer {peer} headers {headers:?}");
        }
    }

    #[test]
    fn scheme_comes_from_the_nearest_trusted_proxy() {
        let https = |peer, headers| origin(peer, headers).https;
        assert_eq!(
            https("10.0.0.1:1", &[("x-forwarded-proto", "https")]),
            Some(true)
        );
        assert_eq!(
            https("10.0.0.1:1", &[("x-forwarded-proto", "https, http")]),
            Some(false)
        );
        assert_eq!(
            https("10.0.0.1:1", &[("forwarded", "for=1.2.3.4;proto=https")]),
            Some(true)
        );
        assert_eq!(
            https("192.0.2.1:1", &[("x-forwarded-proto", "https")]),
            None
        );
    }

    #[test]
    fn long_chains_are_cut() {
        let chain = vec!["10.0.0.2"; 1000].join(", ");
        let found = origin(
            "10.0.0.1:1",
            &[("x-forwarded-for", &format!("1.2.3.4, {chain}"))],
        );
        // The walk stops after MAX_HOPS trusted hops; the client is never read from past them.
        assert_eq!(found.addr.ip(), ip("10.0.0.2"));
    }
}
