//! `${env:NAME}` and `${env:NAME|default}` placeholders in entry fields, replaced by the
//! variable's value when the app loads (before any entry is built, so every field of every
//! kind takes them).
//!
//! The value comes from the process environment, or from [`LoadOptions::env`] when set (so
//! `wsrelay check` in CI and tests see a fixed set). A variable that is unset (or not UTF-8)
//! takes the default after `|`; with no default it is a configuration error naming the
//! file, entry, field and variable. Names are `[A-Za-z_][A-Za-z0-9_]*`; a malformed
//! placeholder (no closing `}`, a bad name) is an error too, so a typo never reaches a
//! running app as literal text. Only `${env:` starts a placeholder: other `$` text stays.
//!
//! `name`, `kind` and `source` are not touched: the first two are the entry's identity, and
//! Lua source is code whose text is the app's own business.

use serde_yaml_ng::Value;

use super::RawEntry;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::options::LoadOptions;

const OPEN: &str = "${env:";

/// The longest value after replacement, in bytes: a variable may be large, but a field
/// that grows past this is almost surely a mistake (and the loader bounds its input).
const MAX_EXPANDED: usize = 1 << 20;

/// Replaces the placeholders in `raw`'s fields; errors go to `errors`. `false` if any
/// placeholder failed.
pub(super) fn resolve(
    raw: &mut RawEntry,
    opts: &LoadOptions,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let mut found = Vec::new();
    for (key, value) in raw.fields.iter_mut() {
        let key = key.as_str().unwrap_or_default().to_owned();
        if matches!(key.as_str(), "name" | "kind" | "source") {
            continue;
        }
        walk(value, &key, opts, &mut found);
    }
    let ok = found.is_empty();
    for (field, kind) in found {
        errors.push(ConfigError {
            file: raw.file.clone(),
            entry: Some(raw.id.to_string()),
            field: Some(field),
            kind,
        });
    }
    ok
}

fn walk(
    value: &mut Value,
    path: &str,
    opts: &LoadOptions,
    errors: &mut Vec<(String, ConfigErrorKind)>,
) {
    match value {
        Value::String(text) if text.contains(OPEN) => match expand(text, opts) {
            Ok(new) => *text = new,
            Err(kind) => errors.push((path.to_owned(), kind)),
        },
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = super::fields::scalar_text(k).unwrap_or_default();
                walk(v, &format!("{path}.{key}"), opts, errors);
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &format!("{path}[{i}]"), opts, errors);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, opts, errors),
        _ => {}
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `text` with every placeholder replaced.
fn expand(text: &str, opts: &LoadOptions) -> Result<String, ConfigErrorKind> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(ConfigErrorKind::BadPlaceholder {
                text: truncate(&rest[start..]),
                reason: "no closing }".into(),
            });
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once('|') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !valid_name(name) {
            return Err(ConfigErrorKind::BadPlaceholder {
                text: truncate(&rest[start..start + OPEN.len() + end + 1]),
                reason: "the variable name must match [A-Za-z_][A-Za-z0-9_]*".into(),
            });
        }
        let value = match &opts.env {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        match (value, default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ConfigErrorKind::MissingEnvVariable {
                    name: name.to_owned(),
                })
            }
        }
        if out.len() > MAX_EXPANDED {
            return Err(ConfigErrorKind::BadPlaceholder {
                text: truncate(text),
                reason: format!("the value grows past {MAX_EXPANDED} bytes"),
            });
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}
