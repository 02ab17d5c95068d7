//! Step 2 of the pipeline: one YAML file's text → raw entries
//! (`namespace`, `entries[i].name`, `entries[i].kind`, the other fields
//! untouched).
//!
//! The text is pre-scanned first (size, flow nesting; see `prescan`), so a
//! pathological file costs milliseconds and one error naming it. A syntax
//! error costs that file only.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::fields::type_name;
use super::{prescan, RawEntry};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::id::EntryId;

/// Splits one YAML file into raw entries; `rel_dir` is its directory
/// relative to the app root (for `file://`).
pub(super) fn file(
    file: &Path,
    rel_dir: &Path,
    text: &str,
    out: &mut Vec<RawEntry>,
    errors: &mut Vec<ConfigError>,
) {
    let file_error =
        |field: Option<&str>, kind| ConfigError::in_file(file, field.map(Into::into), kind);
    if let Err(kind) = prescan::check(file, text) {
        errors.push(file_error(None, kind));
        return;
    }
    let doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(doc) => doc,
        Err(err) => {
            errors.push(file_error(None, yaml_syntax(&err)));
            return;
        }
    };
    let Value::Mapping(doc) = doc else {
        errors.push(file_error(
            None,
            ConfigErrorKind::WrongType {
                expected: "a map with namespace and entries",
                found: type_name(&doc),
            },
        ));
        return;
    };
    let namespace = namespace(&doc)
        .map_err(|kind| errors.push(file_error(Some("namespace"), kind)))
        .ok();
    let entries = entries(&doc)
        .map_err(|kind| errors.push(file_error(Some("entries"), kind)))
        .unwrap_or_default();
    let Some(namespace) = namespace else { return };
    for (i, entry) in entries.iter().enumerate() {
        match id_and_kind(&namespace, i, entry) {
            Ok((id, kind, fields)) => out.push(RawEntry {
                id,
                kind,
                file: file.to_path_buf(),
                rel_dir: rel_dir.to_path_buf(),
                fields: fields.clone(),
            }),
            Err(problem) => errors.push(ConfigError {
                file: file.to_path_buf(),
                entry: problem.entry,
                field: Some(problem.field),
                kind: problem.kind,
            }),
        }
    }
}

/// The `namespace` field: required, and valid as the first half of an id.
fn namespace(doc: &Mapping) -> Result<String, ConfigErrorKind> {
    let namespace = required_str(doc, "namespace")?;
    match EntryId::new(namespace, "x") {
        Ok(_) => Ok(namespace.to_owned()),
        Err(err) => Err(ConfigErrorKind::InvalidValue {
            value: namespace.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// The `entries` list; absent means none (legal, if useless).
fn entries(doc: &Mapping) -> Result<&[Value], ConfigErrorKind> {
    match doc.get("entries") {
        Some(Value::Sequence(entries)) => Ok(entries),
        None | Some(Value::Null) => Ok(&[]),
        Some(other) => Err(ConfigErrorKind::WrongType {
            expected: "a list",
            found: type_name(other),
        }),
    }
}

/// Why an entry was not read (its file aside).
struct EntryProblem {
    /// The entry's id, once known.
    entry: Option<String>,
    field: String,
    kind: ConfigErrorKind,
}

/// Reads `name` and `kind` of `entries[i]`; returns them with its fields.
fn id_and_kind<'a>(
    namespace: &str,
    i: usize,
    entry: &'a Value,
) -> Result<(EntryId, String, &'a Mapping), Box<EntryProblem>> {
    let problem = |entry, field, kind| Box::new(EntryProblem { entry, field, kind });
    let Value::Mapping(fields) = entry else {
        let kind = ConfigErrorKind::WrongType {
            expected: "a map",
            found: type_name(entry),
        };
        return Err(problem(None, format!("entries[{i}]"), kind));
    };
    let at_name = |kind| problem(None, format!("entries[{i}].name"), kind);
    let name = required_str(fields, "name").map_err(at_name)?;
    let id = EntryId::new(namespace, name).map_err(|err| {
        at_name(ConfigErrorKind::InvalidValue {
            value: name.to_owned(),
            reason: err.to_string(),
        })
    })?;
    let kind = required_str(fields, "kind")
        .map_err(|kind| problem(Some(id.to_string()), "kind".to_owned(), kind))?
        .to_owned();
    Ok((id, kind, fields))
}

/// A required string field of a map (`null` counts as absent).
fn required_str<'a>(map: &'a Mapping, key: &str) -> Result<&'a str, ConfigErrorKind> {
    match map.get(key) {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Err(ConfigErrorKind::MissingField),
        Some(other) => Err(ConfigErrorKind::WrongType {
            expected: "a string",
            found: type_name(other),
        }),
    }
}

fn yaml_syntax(err: &serde_yaml_ng::Error) -> ConfigErrorKind {
    let location = err.location();
    let mut message = err.to_string();
    // The parser appends "at line L column C"; we print the location ourselves.
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(pos) = message.find(&suffix) {
            message.replace_range(pos..pos + suffix.len(), "");
        }
    }
    ConfigErrorKind::YamlSyntax {
        line: location.as_ref().map(serde_yaml_ng::Location::line),
        column: location.as_ref().map(serde_yaml_ng::Location::column),
        message,
    }
}
