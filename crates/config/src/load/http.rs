//! `http.service`, `http.router`, `http.endpoint` and `http.static`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::fields::Entry;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::{
    kind, AppConfig, HttpEndpoint, HttpRouter, HttpService, HttpStatic, Method, StaticMount,
};

pub(super) fn service(entry: &mut Entry<'_>) -> Option<HttpService> {
    let addr = entry
        .req_str("addr")
        .and_then(|text| match parse_addr(&text) {
            Ok(addr) => Some(addr),
            Err(reason) => {
                entry.error("addr", ConfigErrorKind::BadAddress { addr: text, reason });
                None
            }
        });
    let auto_start = entry.bool_or("lifecycle.auto_start", true);
    if entry.failed() {
        return None;
    }
    Some(HttpService {
        id: entry.id().clone(),
        file: entry.file(),
        addr: addr?,
        auto_start,
    })
}

/// Parses a listen address: `host:port` with an IP host (`[::1]:80` for
/// IPv6), `localhost:port`, or `:port` for every interface.
pub(super) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':').filter(|port| !port.contains(':')) {
        let port = parse_port(port)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = parse_port(port)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        None => Err("missing port (expected e.g. \":8080\" or \"127.0.0.1:8080\")".into()),
        Some((host, port)) => {
            parse_port(port)?;
            if host.contains(':') && !host.starts_with('[') {
                Err("an IPv6 host must be in brackets, e.g. \"[::1]:8080\"".into())
            } else {
                Err(format!(
                    "host {host:?} is not an IP address (use an IP, \"localhost\", or \":PORT\" for all interfaces)"
                ))
            }
        }
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))
}

pub(super) fn router(entry: &mut Entry<'_>) -> Option<HttpRouter> {
    let server = entry.reference("meta.server", true, &[kind::HTTP_SERVICE]);
    let prefix = entry
        .opt_str("prefix")
        .map_or_else(|| "/".to_owned(), |text| text.trim().to_owned());
    let prefix = if prefix.starts_with('/') {
        normalize_prefix(&prefix)
    } else {
        entry.error(
            "prefix",
            ConfigErrorKind::InvalidValue {
                value: prefix.clone(),
                reason: "must start with \"/\"".into(),
            },
        );
        prefix
    };
    let middleware = middleware_list(entry, "middleware");
    let options = entry.str_map("options");
    let post_middleware = middleware_list(entry, "post_middleware");
    let post_options = entry.str_map("post_options");
    if entry.failed() {
        return None;
    }
    Some(HttpRouter {
        id: entry.id().clone(),
        file: entry.file(),
        server: server?,
        prefix,
        middleware,
        options,
        post_middleware,
        post_options,
    })
}

/// `/ws/` → `/ws`; `/` stays `/`.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn middleware_list(entry: &mut Entry<'_>, field: &str) -> Vec<String> {
    let names = entry.str_list(field);
    let known = &entry.env.opts.known_middleware;
    let unknown: Vec<(usize, String)> = names
        .iter()
        .enumerate()
        .filter(|(_, name)| !known.contains(name))
        .map(|(i, name)| (i, name.clone()))
        .collect();
    for (i, name) in unknown {
        let known = entry.env.opts.known_middleware.clone();
        entry.error(
            format!("{field}[{i}]"),
            ConfigErrorKind::UnknownMiddleware { name, known },
        );
    }
    names
}

pub(super) fn endpoint(entry: &mut Entry<'_>) -> Option<HttpEndpoint> {
    let router = entry.reference("meta.router", true, &[kind::HTTP_ROUTER]);
    let method = entry.req_str("method").and_then(|text| {
        let method = Method::parse(text.trim());
        if method.is_none() {
            let known: Vec<_> = Method::ALL.iter().map(|m| m.as_str()).collect();
            entry.error(
                "method",
                ConfigErrorKind::InvalidValue {
                    value: text,
                    reason: format!("unknown HTTP method (known: {})", known.join(", ")),
                },
            );
        }
        method
    });
    let path_and_params = entry
        .req_str("path")
        .and_then(|path| match parse_route_path(&path) {
            Ok(params) => Some((path, params)),
            Err(reason) => {
                entry.error(
                    "path",
                    ConfigErrorKind::InvalidValue {
                        value: path,
                        reason,
                    },
                );
                None
            }
        });
    let func = entry.reference("func", true, &[kind::FUNCTION_LUA]);
    if entry.failed() {
        return None;
    }
    let (path, params) = path_and_params?;
    Some(HttpEndpoint {
        id: entry.id().clone(),
        file: entry.file(),
        router: router?,
        method: method?,
        path,
        params,
        func: func?,
    })
}

/// Checks an endpoint path and returns its parameter names.
///
/// A path starts with `/`; a segment is literal text (no braces) or a whole
/// `{name}` parameter; the last segment may be a catch-all `{name...}`.
fn parse_route_path(path: &str) -> Result<Vec<String>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with \"/\"".into());
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut params: Vec<String> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if segment.is_empty() {
            if last {
                continue; // trailing slash
            }
            return Err("empty path segment (\"//\")".into());
        }
        if !segment.contains(['{', '}']) {
            continue;
        }
        let Some(inner) = segment
            .strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
        else {
            return Err(format!(
                "segment {segment:?}: a parameter must be a whole segment like {{id}}"
            ));
        };
        let (name, catch_all) = match inner.strip_suffix("...") {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if catch_all && !last {
            return Err(format!(
                "segment {segment:?}: a catch-all parameter must be the last segment"
            ));
        }
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "segment {segment:?}: parameter names are letters, digits and '_' and do not start with a digit"
            ));
        }
        if params.iter().any(|param| param == name) {
            return Err(format!("parameter {name:?} appears twice"));
        }
        params.push(name.to_owned());
    }
    Ok(params)
}

pub(super) fn static_dir(entry: &mut Entry<'_>) -> Option<HttpStatic> {
    let has_router = entry.get("meta.router").is_some();
    let has_server = entry.get("meta.server").is_some();
    let mount = match (has_router, has_server) {
        (true, true) => {
            entry.error(
                "meta.server",
                ConfigErrorKind::InvalidValue {
                    value: "both meta.router and meta.server".into(),
                    reason: "set one of meta.router or meta.server, not both".into(),
                },
            );
            None
        }
        (false, false) => {
            entry.error("meta.router", ConfigErrorKind::MissingField);
            None
        }
        (true, false) => entry
            .reference("meta.router", true, &[kind::HTTP_ROUTER])
            .map(StaticMount::Router),
        (false, true) => entry
            .reference("meta.server", true, &[kind::HTTP_SERVICE])
            .map(StaticMount::Server),
    };
    let path = entry.req_str("path").and_then(|path| {
        if path.starts_with('/') {
            Some(normalize_prefix(&path))
        } else {
            entry.error(
                "path",
                ConfigErrorKind::InvalidValue {
                    value: path,
                    reason: "must start with \"/\"".into(),
                },
            );
            None
        }
    });
    let directory = entry
        .req_str("directory")
        .and_then(|text| entry.app_path("directory", &text));
    if let Some(directory) = &directory {
        if !entry.env.files.is_dir(directory) {
            entry.error(
                "directory",
                ConfigErrorKind::Unreadable {
                    path: directory.clone(),
                    reason: "not an existing directory".into(),
                },
            );
        }
    }
    let index = entry
        .opt_str("index")
        .unwrap_or_else(|| "index.html".to_owned());
    if index.is_empty() || index.contains('/') {
        entry.error(
            "index",
            ConfigErrorKind::InvalidValue {
                value: index.clone(),
                reason: "must be a file name".into(),
            },
        );
    }
    if entry.failed() {
        return None;
    }
    Some(HttpStatic {
        id: entry.id().clone(),
        file: entry.file(),
        mount: mount?,
        path: path?,
        directory: directory?,
        index,
    })
}

/// Two endpoints of one router with the same method and path (parameter
/// names aside) would shadow each other: reported on the second.
pub(super) fn check_duplicate_routes(app: &AppConfig, errors: &mut Vec<ConfigError>) {
    let mut seen = BTreeMap::new();
    for endpoint in &app.endpoints {
        let shape: Vec<&str> = endpoint
            .path
            .trim_end_matches('/')
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "{}"
                } else {
                    segment
                }
            })
            .collect();
        let key = (endpoint.router.clone(), endpoint.method, shape.join("/"));
        if let Some(first) = seen.get(&key) {
            errors.push(ConfigError {
                file: endpoint.file.clone(),
                entry: Some(endpoint.id.to_string()),
                field: Some("path".into()),
                kind: ConfigErrorKind::InvalidValue {
                    value: endpoint.path.clone(),
                    reason: format!(
                        "{} {} is already routed on {} by {first}",
                        endpoint.method, endpoint.path, endpoint.router
                    ),
                },
            });
        } else {
            seen.insert(key, endpoint.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr(":8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_addr("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(parse_addr("8080").unwrap_err().contains("missing port"));
        assert!(parse_addr(":99999").unwrap_err().contains("port"));
        assert!(parse_addr("example.com:80")
            .unwrap_err()
            .contains("not an IP"));
        assert!(parse_addr("::1:80").unwrap_err().contains("brackets"));
    }

    #[test]
    fn route_paths() {
        assert_eq!(parse_route_path("/").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_route_path("/users/{id}/files/{rest...}").unwrap(),
            ["id", "rest"]
        );
        for bad in [
            "users",
            "/a//b",
            "/{id",
            "/id}",
            "/x{id}",
            "/{}",
            "/{1a}",
            "/{a}/{a}",
            "/{a...}/b",
        ] {
            assert!(parse_route_path(bad).is_err(), "{bad} should be rejected");
        }
    }
}
