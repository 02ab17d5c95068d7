//! `function.lua` and `process.lua`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::fields::{type_name, Entry};
use crate::error::ConfigErrorKind;
use crate::model::{kind, HttpClientConfig, LuaEntry, LuaKind, SourceOrigin, KNOWN_LUA_MODULES};

/// The prefix that makes `source` a file reference instead of inline Lua.
const FILE_SCHEME: &str = "file://";

pub(super) fn entry(entry: &mut Entry<'_>, lua_kind: LuaKind) -> Option<LuaEntry> {
    let source = entry
        .req_str("source")
        .and_then(|text| read_source(entry, text));
    let method = entry.opt_str("method");
    if method.as_deref().is_some_and(|m| m.trim().is_empty()) {
        entry.error(
            "method",
            ConfigErrorKind::InvalidValue {
                value: String::new(),
                reason: "must be a function name".into(),
            },
        );
    }
    let modules = entry.str_list("modules");
    for (i, module) in modules.iter().enumerate() {
        if !KNOWN_LUA_MODULES.contains(&module.as_str()) {
            entry.error(
                format!("modules[{i}]"),
                ConfigErrorKind::UnknownModule {
                    name: module.clone(),
                    known: KNOWN_LUA_MODULES.to_vec(),
                },
            );
        }
    }
    let imports = imports(entry);
    let http_client = http_client(entry);
    if let Some((text, _, chunk_name)) = &source {
        check_syntax(entry, chunk_name, text);
    }
    if entry.failed() {
        return None;
    }
    let (source, origin, chunk_name) = source?;
    Some(LuaEntry {
        id: entry.id().clone(),
        file: entry.file(),
        kind: lua_kind,
        source,
        origin,
        chunk_name,
        method,
        modules,
        imports,
        http_client,
    })
}

/// The fields of `http_client`.
const HTTP_CLIENT_FIELDS: &[&str] = &[
    "allow_private",
    "timeout",
    "max_timeout",
    "connect_timeout",
    "max_request_body",
    "max_response_body",
    "max_redirects",
];

fn http_client(entry: &mut Entry<'_>) -> Option<HttpClientConfig> {
    let value = entry.get("http_client")?;
    let Some(map) = value.as_mapping() else {
        entry.error(
            "http_client",
            ConfigErrorKind::WrongType {
                expected: "a mapping",
                found: type_name(value),
            },
        );
        return None;
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !HTTP_CLIENT_FIELDS.contains(&name) {
            entry.error(
                format!(
                    "http_client.{}",
                    super::fields::scalar_text(key).unwrap_or_default()
                ),
                ConfigErrorKind::UnknownField {
                    known: HTTP_CLIENT_FIELDS.to_vec(),
                },
            );
        }
    }
    let duration = |entry: &mut Entry<'_>, field: &str| {
        entry
            .get(&format!("http_client.{field}"))
            .is_some()
            .then(|| entry.duration_or(&format!("http_client.{field}"), Duration::ZERO))
    };
    let config = HttpClientConfig {
        allow_private: entry.bool_or("http_client.allow_private", false),
        timeout: duration(entry, "timeout"),
        max_timeout: duration(entry, "max_timeout"),
        connect_timeout: duration(entry, "connect_timeout"),
        max_request_body: entry.opt_count("http_client.max_request_body"),
        max_response_body: entry.opt_positive("http_client.max_response_body"),
        max_redirects: entry.opt_count("http_client.max_redirects"),
    };
    Some(config)
}

/// Returns `(text, origin, chunk name)` for inline or `file://` sources.
fn read_source(entry: &mut Entry<'_>, text: String) -> Option<(String, SourceOrigin, String)> {
    let Some(rel) = text.trim().strip_prefix(FILE_SCHEME) else {
        let chunk_name = entry.id().to_string();
        return Some((text, SourceOrigin::Inline, chunk_name));
    };
    let path = entry.app_path("source", rel)?;
    match entry.env.files.read_to_string(&path) {
        Ok(source) => {
            let chunk_name = path.display().to_string();
            Some((source, SourceOrigin::File(path), chunk_name))
        }
        Err(err) => {
            entry.error("source", ConfigErrorKind::unreadable(path, err));
            None
        }
    }
}

fn check_syntax(entry: &mut Entry<'_>, chunk_name: &str, source: &str) {
    let Some(checker) = &entry.env.opts.lua_checker else {
        return;
    };
    if let Err(message) = checker(chunk_name, source) {
        entry.error(
            "source",
            ConfigErrorKind::LuaSyntax {
                chunk: chunk_name.to_owned(),
                message,
            },
        );
    }
}

fn imports(entry: &mut Entry<'_>) -> BTreeMap<String, crate::EntryId> {
    const TARGETS: &[&str] = &[kind::FUNCTION_LUA, kind::PROCESS_LUA];
    let mut out = BTreeMap::new();
    let Some(value) = entry.get("imports") else {
        return out;
    };
    let Value::Mapping(map) = value else {
        entry.error(
            "imports",
            ConfigErrorKind::WrongType {
                expected: "a map of alias to entry id",
                found: type_name(value),
            },
        );
        return out;
    };
    for (alias, target) in map {
        let Value::String(alias) = alias else {
            entry.error(
                "imports",
                ConfigErrorKind::WrongType {
                    expected: "a map with string keys",
                    found: type_name(alias),
                },
            );
            continue;
        };
        let field = format!("imports.{alias}");
        let Value::String(target) = target else {
            entry.error(
                field,
                ConfigErrorKind::WrongType {
                    expected: "an entry id",
                    found: type_name(target),
                },
            );
            continue;
        };
        if let Some(id) = entry.resolve_ref(&field, target, TARGETS) {
            out.insert(alias.clone(), id);
        }
    }
    out
}
