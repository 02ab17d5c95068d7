//! Path prefixes and endpoint patterns.
//!
//! Paths are compared as raw (still percent-encoded) text, segment by
//! segment; only parameter values are decoded. A trailing slash in a request
//! path is ignored (`/users/` matches the pattern `/users`), and so is a
//! trailing slash in a pattern or prefix. Empty segments in the middle of a
//! path (`/a//b`) are kept, so they match no pattern segment.

use std::cmp::Ordering;

use percent_encoding::percent_decode_str;

use crate::Error;

/// Normalizes a router prefix or static URL path: it must start with `/`;
/// a trailing `/` is dropped (the root stays `/`).
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidPath {
        path: prefix.to_owned(),
        reason,
    };
    if !prefix.starts_with('/') {
        return Err(invalid("must start with '/'"));
    }
    if prefix.contains(['{', '}', '?', '#']) {
        return Err(invalid("a prefix cannot hold '{', '}', '?' or '#'"));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

/// The part of `path` under `prefix` (a normalized prefix), starting with
/// `/` or empty, or `None` when `path` is not under `prefix`.
pub(crate) fn strip_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The segments of a path below a prefix: `""`, `"/"` → none;
/// `"/a/b/"` → `a`, `b`.
pub(crate) fn segments(rest: &str) -> Vec<&str> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    }
}

// ===== impl Pattern =====

/// A parsed endpoint path such as `/users/{id}/posts`.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl Pattern {
    /// Parses `path`: it starts with `/`; a segment is either literal text
    /// or a whole `{name}` parameter, each name used once.
    pub(crate) fn parse(path: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(invalid("must start with '/'"));
        }
        let mut parsed = Vec::new();
        for segment in segments(path) {
            let parsed_segment = parse_segment(segment).map_err(invalid)?;
            if matches!(parsed_segment, Segment::Param(_)) && parsed.contains(&parsed_segment) {
                return Err(invalid("a parameter name is used twice"));
            }
            parsed.push(parsed_segment);
        }
        Ok(Self {
            source: path.to_owned(),
            segments: parsed,
        })
    }

    /// The path as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether two patterns match exactly the same paths.
    pub(crate) fn same_shape(&self, other: &Self) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }

    /// Orders patterns so that the more specific comes first: at the first
    /// segment where they differ in kind, a literal beats a parameter.
    pub(crate) fn specificity(&self, other: &Self) -> Ordering {
        let kinds = |p: &Self| {
            p.segments
                .iter()
                .map(|s| matches!(s, Segment::Param(_)))
                .collect::<Vec<_>>()
        };
        kinds(self).cmp(&kinds(other))
    }

    /// Matches request path segments, returning the decoded parameters.
    pub(crate) fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, actual) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(text) if text == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if actual.is_empty() => return None,
                Segment::Param(name) => {
                    let value = percent_decode_str(actual).decode_utf8_lossy();
                    params.push((name.clone(), value.into_owned()));
                }
            }
        }
        Some(params)
    }
}

fn parse_segment(segment: &str) -> Result<Segment, &'static str> {
    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        return if valid {
            Ok(Segment::Param(name.to_owned()))
        } else {
            Err("a parameter name must be letters, digits, '_' or '-'")
        };
    }
    if segment.contains(['{', '}']) {
        return Err("a parameter must be a whole segment, like /{id}");
    }
    if segment.contains(['?', '#']) {
        return Err("a path cannot hold '?' or '#'");
    }
    Ok(Segment::Literal(segment.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_normalize() {
        assert_eq!(normalize_prefix("/").unwrap(), "/");
        assert_eq!(normalize_prefix("/api/").unwrap(), "/api");
        assert!(normalize_prefix("api").is_err());
        assert_eq!(strip_prefix("/api", "/api/x"), Some("/x"));
        assert_eq!(strip_prefix("/api", "/api"), Some(""));
        assert_eq!(strip_prefix("/api", "/apix"), None);
    }

    #[test]
    fn patterns_match_and_decode() {
        let p = Pattern::parse("/users/{id}/posts").unwrap();
        assert_eq!(
            p.matches(&segments("/users/a%20b/posts/")),
            Some(vec![("id".into(), "a b".into())])
        );
        assert_eq!(p.matches(&segments("/users//posts")), None);
        assert!(Pattern::parse("/a/{x}/{x}").is_err());
        assert!(Pattern::parse("/a/x{y}").is_err());
    }

    proptest::proptest! {
        /// Matching never panics, whatever the request path.
        #[test]
        fn matching_does_not_panic(path in "\\PC{0,40}") {
            let pattern = Pattern::parse("/a/{b}/c").unwrap();
            if let Some(rest) = strip_prefix("/x", &path) {
                let _ = pattern.matches(&segments(rest));
            }
            let _ = pattern.matches(&segments(&path));
            let _ = normalize_prefix(&path);
            let _ = Pattern::parse(&path);
        }
    }
}
