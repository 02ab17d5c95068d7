//! `http.service`, `http.router`, `http.endpoint` and `http.static`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::addr;
use super::fields::{type_name, Entry};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::{
    kind, AppConfig, HttpEndpoint, HttpRouter, HttpService, HttpStatic, Method, ServiceTls,
    StaticMount,
};

pub(super) fn service(entry: &mut Entry<'_>) -> Option<HttpService> {
    let addr = addr::required(entry, "addr");
    let auto_start = entry.bool_or("lifecycle.auto_start", true);
    let tls = service_tls(entry);
    let h2c = entry.bool_or("h2c", false);
    let trusted_proxies = trusted_proxies(entry);
    let proxy_protocol = entry.bool_or("proxy_protocol", false);
    let header_read_timeout = entry
        .get("header_read_timeout")
        .is_some()
        .then(|| entry.duration_or("header_read_timeout", Duration::ZERO));
    if proxy_protocol && trusted_proxies.is_empty() && !entry.failed() {
        entry.error(
            "proxy_protocol",
            ConfigErrorKind::InvalidValue {
                value: "true".into(),
                reason: "needs trusted_proxies: the PROXY header is only accepted from them".into(),
            },
        );
    }
    if entry.failed() {
        return None;
    }
    Some(HttpService {
        id: entry.id().clone(),
        file: entry.file(),
        addr: addr?,
        auto_start,
        tls,
        h2c,
        trusted_proxies,
        proxy_protocol,
        header_read_timeout,
    })
}

/// `tls: { cert, key, client_ca }`; `cert` and `key` are required together.
fn service_tls(entry: &mut Entry<'_>) -> Option<ServiceTls> {
    let value = entry.get("tls")?;
    if !value.is_mapping() {
        entry.error(
            "tls",
            ConfigErrorKind::WrongType {
                expected: "a map of cert, key, client_ca",
                found: type_name(value),
            },
        );
        return None;
    }
    for key in value.as_mapping().into_iter().flat_map(|map| map.keys()) {
        let known = ["cert", "key", "client_ca"];
        if !key.as_str().is_some_and(|key| known.contains(&key)) {
            let name = key.as_str().unwrap_or("?");
            entry.error(
                format!("tls.{name}"),
                ConfigErrorKind::InvalidValue {
                    value: name.to_owned(),
                    reason: "unknown TLS field (known: cert, key, client_ca)".into(),
                },
            );
        }
    }
    let mut path = |name: &str, required: bool| {
        let field = format!("tls.{name}");
        let text = if required {
            entry.req_str(&field)
        } else {
            entry.opt_str(&field)
        };
        text.and_then(|text| entry.file_path(&field, &text))
    };
    let cert = path("cert", true);
    let key = path("key", true);
    let client_ca = path("client_ca", false);
    Some(ServiceTls {
        cert: cert?,
        key: key?,
        client_ca,
    })
}

/// `trusted_proxies`: CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
fn trusted_proxies(entry: &mut Entry<'_>) -> Vec<ipnet::IpNet> {
    let texts = entry.str_list("trusted_proxies");
    let mut nets = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let text = text.trim();
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => entry.error(
                format!("trusted_proxies[{i}]"),
                ConfigErrorKind::InvalidValue {
                    value: text.to_owned(),
                    reason: "not a network (10.0.0.0/8, 2001:db8::/32) or an address".into(),
                },
            ),
        }
    }
    nets
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
    let allow_dotfiles = dotfiles(entry);
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
        allow_dotfiles,
    })
}

/// `dotfiles`: `deny` (the default: `404` for `/.env`, `/.git/...`) or `allow`.
fn dotfiles(entry: &mut Entry<'_>) -> bool {
    match entry.opt_str("dotfiles").as_deref() {
        None | Some("deny") => false,
        Some("allow") => true,
        Some(other) => {
            entry.error(
                "dotfiles",
                ConfigErrorKind::InvalidValue {
                    value: other.to_owned(),
                    reason: "must be `deny` (the default) or `allow`".into(),
                },
            );
            false
        }
    }
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
            let kind = ConfigErrorKind::InvalidValue {
                value: endpoint.path.clone(),
                reason: format!(
                    "{} {} is already routed on {} by {first}",
                    endpoint.method, endpoint.path, endpoint.router
                ),
            };
            errors.push(ConfigError::in_entry(
                &endpoint.file,
                &endpoint.id,
                "path",
                kind,
            ));
        } else {
            seen.insert(key, endpoint.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
