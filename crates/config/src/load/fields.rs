//! Field-by-field access to one raw entry, recording an error that names the
//! field for every missing or malformed value.
//!
//! Field paths are dotted (`meta.server`, `lifecycle.restart.max_delay`);
//! list items and map keys are shown as `middleware[0]` and `options.key`.
//! A `null` value counts as absent.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::{Env, PendingRef, RawEntry, Sink};
use crate::duration::parse_positive_duration;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::files::normalize;
use crate::id::EntryId;

/// One entry being built.
pub(super) struct Entry<'a> {
    pub(super) env: &'a Env<'a>,
    pub(super) raw: &'a RawEntry,
    sink: &'a mut Sink,
    errors_before: usize,
}

impl<'a> Entry<'a> {
    pub(super) fn new(env: &'a Env<'a>, raw: &'a RawEntry, sink: &'a mut Sink) -> Self {
        let errors_before = sink.errors.len();
        Self {
            env,
            raw,
            sink,
            errors_before,
        }
    }

    pub(super) fn id(&self) -> &EntryId {
        &self.raw.id
    }

    pub(super) fn file(&self) -> PathBuf {
        self.raw.file.clone()
    }

    /// Whether any error was recorded for this entry so far.
    pub(super) fn failed(&self) -> bool {
        self.sink.errors.len() > self.errors_before
    }

    /// Records an error on `field`.
    pub(super) fn error(&mut self, field: impl Into<String>, kind: ConfigErrorKind) {
        let error = ConfigError::in_entry(&self.raw.file, &self.raw.id, field, kind);
        self.sink.errors.push(error);
    }

    /// The value at a dotted path, `None` if absent or `null`.
    pub(super) fn get(&self, path: &str) -> Option<&'a Value> {
        let mut parts = path.split('.');
        let mut value = self.raw.fields.get(parts.next()?)?;
        for part in parts {
            value = value.as_mapping()?.get(part)?;
        }
        (!value.is_null()).then_some(value)
    }

    fn wrong_type(&mut self, field: &str, expected: &'static str, value: &Value) {
        self.error(
            field,
            ConfigErrorKind::WrongType {
                expected,
                found: type_name(value),
            },
        );
    }

    /// An optional string field.
    pub(super) fn opt_str(&mut self, path: &str) -> Option<String> {
        match self.get(path)? {
            Value::String(text) => Some(text.clone()),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    /// A required string field.
    pub(super) fn req_str(&mut self, path: &str) -> Option<String> {
        if self.get(path).is_none() {
            self.error(path, ConfigErrorKind::MissingField);
            return None;
        }
        self.opt_str(path)
    }

    /// An optional boolean field with a default.
    pub(super) fn bool_or(&mut self, path: &str, default: bool) -> bool {
        match self.get(path) {
            None => default,
            Some(Value::Bool(flag)) => *flag,
            // Text, so that a `${env:NAME}` placeholder (always text) can fill the field.
            Some(Value::String(text)) if matches!(text.as_str(), "true" | "false") => {
                text == "true"
            }
            Some(other) => {
                self.wrong_type(path, "a boolean", other);
                default
            }
        }
    }

    /// An optional non-negative integer.
    pub(super) fn opt_count(&mut self, path: &str) -> Option<u64> {
        let value = self.get(path)?;
        match as_u64(value) {
            Some(n) => Some(n),
            None => {
                self.wrong_type(path, "a non-negative integer", value);
                None
            }
        }
    }

    /// An optional positive integer.
    pub(super) fn opt_positive(&mut self, path: &str) -> Option<u64> {
        let value = self.get(path)?;
        match as_u64(value) {
            Some(0) => {
                self.error(
                    path,
                    ConfigErrorKind::InvalidValue {
                        value: "0".into(),
                        reason: "must be greater than zero".into(),
                    },
                );
                None
            }
            Some(n) => Some(n),
            None => {
                self.wrong_type(path, "a positive integer", value);
                None
            }
        }
    }

    /// An optional list of strings (absent = empty).
    pub(super) fn str_list(&mut self, path: &str) -> Vec<String> {
        let Some(value) = self.get(path) else {
            return Vec::new();
        };
        let Value::Sequence(items) = value else {
            self.wrong_type(path, "a list of strings", value);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(text) => out.push(text.clone()),
                other => self.wrong_type(&format!("{path}[{i}]"), "a string", other),
            }
        }
        out
    }

    /// An optional map of strings (absent = empty); scalar values are
    /// stringified (`true`, `100`).
    pub(super) fn str_map(&mut self, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(value) = self.get(path) else {
            return out;
        };
        let Value::Mapping(map) = value else {
            self.wrong_type(path, "a map", value);
            return out;
        };
        for (key, value) in map {
            let Some(key) = scalar_text(key) else {
                self.wrong_type(path, "a map with string keys", key);
                continue;
            };
            match scalar_text(value) {
                Some(text) => {
                    out.insert(key, text);
                }
                None => self.wrong_type(
                    &format!("{path}.{key}"),
                    "a string, number or boolean",
                    value,
                ),
            }
        }
        out
    }

    /// An optional positive duration with a default.
    pub(super) fn duration_or(&mut self, path: &str, default: Duration) -> Duration {
        let Some(value) = self.get(path) else {
            return default;
        };
        let Value::String(text) = value else {
            self.wrong_type(path, "a duration string like \"500ms\" or \"1m30s\"", value);
            return default;
        };
        match parse_positive_duration(text) {
            Ok(duration) => duration,
            Err(err) => {
                self.error(path, ConfigErrorKind::BadDuration(err));
                default
            }
        }
    }

    /// A reference to another entry: resolved against this entry's namespace
    /// and queued for the kind check.
    pub(super) fn reference(
        &mut self,
        path: &str,
        required: bool,
        expected: &'static [&'static str],
    ) -> Option<EntryId> {
        let text = if required {
            self.req_str(path)?
        } else {
            self.opt_str(path)?
        };
        self.resolve_ref(path, &text, expected)
    }

    /// Resolves reference text found at `field` and queues the kind check.
    pub(super) fn resolve_ref(
        &mut self,
        field: &str,
        text: &str,
        expected: &'static [&'static str],
    ) -> Option<EntryId> {
        match EntryId::resolve(self.raw.id.namespace(), text) {
            Ok(target) => {
                self.sink.refs.push(PendingRef {
                    file: self.raw.file.clone(),
                    entry: self.raw.id.clone(),
                    field: field.to_owned(),
                    target: target.clone(),
                    expected,
                });
                Some(target)
            }
            Err(err) => {
                self.error(
                    field,
                    ConfigErrorKind::InvalidValue {
                        value: text.to_owned(),
                        reason: err.to_string(),
                    },
                );
                None
            }
        }
    }

    /// A path to a file that may live outside the app (certificates, keys): absolute as
    /// written, relative to the YAML file's directory otherwise.
    pub(super) fn file_path(&mut self, field: &str, text: &str) -> Option<PathBuf> {
        if text.is_empty() {
            self.error(
                field,
                ConfigErrorKind::InvalidValue {
                    value: String::new(),
                    reason: "empty path".into(),
                },
            );
            return None;
        }
        let path = Path::new(text);
        if path.is_absolute() {
            return Some(path.to_owned());
        }
        Some(normalize(
            &self.env.base_dir.join(&self.raw.rel_dir).join(path),
        ))
    }

    /// Resolves a relative path written in this entry's YAML against the YAML
    /// file's directory. Absolute paths and paths that climb out of the app
    /// directory are rejected: an app must be self-contained.
    pub(super) fn app_path(&mut self, field: &str, text: &str) -> Option<PathBuf> {
        let reject = |reason: &str| ConfigErrorKind::InvalidValue {
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let relative = Path::new(text);
        if text.is_empty() {
            self.error(field, reject("empty path"));
            return None;
        }
        if relative.has_root() || relative.is_absolute() {
            self.error(
                field,
                reject("absolute paths are not allowed; use a path relative to the YAML file"),
            );
            return None;
        }
        let within_app = normalize(&self.raw.rel_dir.join(relative));
        if matches!(within_app.components().next(), Some(Component::ParentDir)) {
            self.error(field, reject("path leads outside the app directory"));
            return None;
        }
        Some(self.env.base_dir.join(within_app))
    }
}

/// Text of a scalar (string, number, boolean); `None` for anything else.
/// An unsigned integer, or text that is one (so that a `${env:NAME}` placeholder, always
/// text, can fill a number field).
fn as_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A phrase naming the YAML type of a value, for error messages.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Converts a YAML value to JSON (map keys are stringified, tags dropped,
/// non-finite floats become `null`).
pub(super) fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                Json::from(n)
            } else if let Some(n) = number.as_i64() {
                Json::from(n)
            } else {
                number
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Value::String(text) => Json::String(text.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Mapping(map) => Json::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = scalar_text(key).unwrap_or_else(|| {
                        serde_yaml_ng::to_string(key)
                            .unwrap_or_default()
                            .trim()
                            .to_owned()
                    });
                    (key, to_json(value))
                })
                .collect(),
        ),
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}
