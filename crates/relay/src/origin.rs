//! Which browser origins may open a relay connection (SPEC §5).
//!
//! The check runs before the endpoint's handler, so a refused cross-site request spawns
//! nothing: that is what stops cross-site WebSocket hijacking.

/// The `wsrelay.allowed.origins` option, parsed.
///
/// # Examples
///
/// ```
/// use wsrelay_relay::OriginPolicy;
///
/// let policy = OriginPolicy::parse("https://*.example.com, localhost:3000");
/// assert!(policy.allows(Some("https://app.example.com"), Some("relay.example.com")));
/// assert!(policy.allows(Some("http://localhost:3000"), None));
/// assert!(!policy.allows(Some("https://evil.com"), Some("relay.example.com")));
/// assert!(policy.allows(None, None)); // non-browser clients send no Origin
///
/// let same_origin = OriginPolicy::parse("");
/// assert!(same_origin.allows(Some("http://relay.example.com"), Some("relay.example.com")));
/// assert!(!same_origin.allows(Some("http://other.example.com"), Some("relay.example.com")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    patterns: Vec<String>,
    allow_all: bool,
}

impl OriginPolicy {
    /// Parses a comma-separated list of patterns (spaces trimmed, case-insensitive). An empty
    /// list means same-origin only.
    pub fn parse(list: &str) -> OriginPolicy {
        let patterns: Vec<String> = list
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        OriginPolicy {
            allow_all: patterns.iter().any(|p| p == "*"),
            patterns,
        }
    }

    /// Whether a request with this `Origin` header and `Host` header may connect.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true; // not a browser: no cross-site risk
        };
        let origin = origin.trim().to_ascii_lowercase();
        if self.allow_all {
            return true;
        }
        if origin == "null" {
            return false; // opaque origins only pass `*`
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        // A serialized origin is `scheme://host[:port]`: anything else is not one.
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return false;
        }
        if self.patterns.is_empty() {
            return host.is_some_and(|host| {
                same_authority(scheme, authority, &host.trim().to_ascii_lowercase())
            });
        }
        self.patterns.iter().any(|pattern| {
            if pattern.contains("://") {
                glob(pattern, &origin)
            } else {
                glob(pattern, authority)
            }
        })
    }
}

/// `authority` (from an Origin with `scheme`) names the same host and port as `host`.
fn same_authority(scheme: &str, authority: &str, host: &str) -> bool {
    let default_port = match scheme {
        "https" | "wss" => "443",
        _ => "80",
    };
    let with_port = |a: &str| -> String {
        // An IPv6 literal ends in `]` when it has no port.
        if a.rsplit_once(':')
            .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            && !a.ends_with(']')
        {
            a.to_owned()
        } else {
            format!("{a}:{default_port}")
        }
    };
    with_port(authority) == with_port(host)
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (patterns, origin, host, allowed)
        let cases: &[(&str, Option<&str>, Option<&str>, bool)] = &[
            ("", None, Some("a.com"), true),
            ("", Some("http://a.com"), Some("a.com"), true),
            ("", Some("http://a.com"), Some("a.com:80"), true),
            ("", Some("https://a.com"), Some("a.com:443"), true),
            ("", Some("https://a.com"), Some("a.com:80"), false),
            ("", Some("http://a.com:8080"), Some("a.com:8080"), true),
            ("", Some("http://a.com:8080"), Some("a.com"), false),
            ("", Some("http://A.COM"), Some("a.com"), true),
            ("", Some("http://evil.com"), Some("a.com"), false),
            ("", Some("http://a.com"), None, false),
            ("", Some("null"), Some("a.com"), false),
            ("*", Some("null"), Some("a.com"), true),
            ("*", Some("http://anything"), None, true),
            (
                "https://app.example.com",
                Some("https://app.example.com"),
                None,
                true,
            ),
            (
                "https://app.example.com",
                Some("http://app.example.com"),
                None,
                false,
            ),
            (
                "https://app.example.com",
                Some("https://app.example.com:8443"),
                None,
                false,
            ),
            (
                "https://*.example.com",
                Some("https://a.example.com"),
                None,
                true,
            ),
            (
                "https://*.example.com",
                Some("https://a.b.example.com"),
                None,
                true,
            ),
            (
                "https://*.example.com",
                Some("https://example.com"),
                None,
                false,
            ),
            (
                "https://*.example.com",
                Some("https://evil.com/.example.com"),
                None,
                false,
            ),
            (
                "https://*.example.com",
                Some("https://evil.com?.example.com"),
                None,
                false,
            ),
            (
                "app.example.com",
                Some("https://app.example.com"),
                None,
                true,
            ),
            (
                "app.example.com",
                Some("http://app.example.com"),
                None,
                true,
            ),
            (
                "app.example.com",
                Some("http://app.example.com:81"),
                None,
                false,
            ),
            ("localhost:*", Some("http://localhost:3000"), None, true),
            (" a.com , B.com ", Some("http://b.com"), None, true),
            ("a.com", Some("null"), None, false),
            ("a.com", Some("garbage"), None, false),
        ];
        for &(patterns, origin, host, allowed) in cases {
            let policy = OriginPolicy::parse(patterns);
            assert_eq!(
                policy.allows(origin, host),
                allowed,
                "patterns {patterns:?} origin {origin:?} host {host:?}"
            );
        }
    }

    #[test]
    fn glob_basics() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbbd"));
        assert!(glob("*.x.*", "a.x.b"));
    }

    proptest::proptest! {
        #[test]
        fn literal_patterns_match_themselves(host in "[a-z]{1,10}\\.[a-z]{2,3}") {
            let policy = OriginPolicy::parse(&host);
            let origin = format!("https://{}", host);
            proptest::prop_assert!(policy.allows(Some(&origin), None));
        }

        #[test]
        fn never_panics(patterns in ".{0,30}", origin in ".{0,30}", host in ".{0,30}") {
            let _ = OriginPolicy::parse(&patterns).allows(Some(&origin), Some(&host));
        }
    }
}
