//! The loading pipeline: find files, parse YAML, index entries, build typed
//! entries, check references.
//!
//! 1. **Discover** (`load` only): every `*.yaml`/`*.yml` under the app
//!    directory, recursively, sorted by path; hidden files and directories
//!    (`.git`) are skipped.
//! 2. **Parse** each file into a generic YAML value and split it into raw
//!    entries (`namespace`, `entries[i].name`, `entries[i].kind`). A YAML
//!    syntax error costs that file only.
//! 3. **Index** entries by id; a duplicate id is reported on the second one,
//!    naming both files, and is not built.
//! 4. **Build** each entry into its typed form, field by field, so every error
//!    names its field. An entry with any error is left out of the model but
//!    stays in the index, so that the entries pointing to it do not report
//!    spurious dangling references.
//! 5. **Check references** against the index: the target must exist and be
//!    of the expected kind.
//!
//! Errors from every step are collected; the load succeeds only with none.

mod fields;
mod http;
mod lua;
mod ops;
mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use crate::files::{normalize, DiskFiles, FileSource};
use crate::id::EntryId;
use crate::model::{kind, AppConfig, KNOWN_KINDS};
use crate::options::LoadOptions;

use fields::{type_name, Entry};

/// Loads every YAML file under `dir` (see [`AppConfig::load`]).
pub(crate) fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<AppConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut paths = Vec::new();
    if let Err(err) = discover(dir, Path::new(""), 0, &mut paths) {
        errors.push(ConfigError {
            file: dir.to_path_buf(),
            entry: None,
            field: None,
            kind: ConfigErrorKind::Unreadable {
                path: dir.to_path_buf(),
                reason: err.to_string(),
            },
        });
        return Err(ConfigErrors::new(errors));
    }
    if paths.is_empty() {
        errors.push(ConfigError {
            file: dir.to_path_buf(),
            entry: None,
            field: None,
            kind: ConfigErrorKind::NoFiles,
        });
        return Err(ConfigErrors::new(errors));
    }
    let mut sources = Vec::new();
    for rel in paths {
        let path = dir.join(&rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((rel, text)),
            Err(err) => errors.push(ConfigError {
                file: path.clone(),
                entry: None,
                field: None,
                kind: ConfigErrorKind::Unreadable {
                    path,
                    reason: err.to_string(),
                },
            }),
        }
    }
    load_sources(sources, dir, &DiskFiles, opts, errors)
}

/// Walks `root/rel` and appends the YAML files found, relative to `root`.
fn discover(root: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    // Guards against symlink loops; no real app nests this deep.
    const MAX_DEPTH: usize = 32;
    let mut children: Vec<_> = std::fs::read_dir(root.join(rel))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|child| child.file_name())
        .filter(|name| !name.to_string_lossy().starts_with('.'))
        .collect();
    children.sort();
    for name in children {
        let child_rel = rel.join(&name);
        let path = root.join(&child_rel);
        if path.is_dir() {
            if depth < MAX_DEPTH {
                discover(root, &child_rel, depth + 1, out)?;
            }
        } else if matches!(
            path.extension().and_then(|ext| ext.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(child_rel);
        }
    }
    Ok(())
}

/// Where an entry came from and what it holds, before validation.
#[derive(Debug)]
struct RawEntry {
    id: EntryId,
    kind: String,
    /// The YAML file, as shown in errors (`base_dir` joined with its path).
    file: PathBuf,
    /// The YAML file's directory relative to the app root (for `file://`).
    rel_dir: PathBuf,
    fields: Mapping,
}

/// A reference found while building, checked once every entry is indexed.
#[derive(Debug)]
struct PendingRef {
    file: PathBuf,
    entry: EntryId,
    field: String,
    target: EntryId,
    expected: &'static [&'static str],
}

/// What the builders share: where files are, the hooks, and the outputs.
struct Env<'a> {
    base_dir: &'a Path,
    files: &'a dyn FileSource,
    opts: &'a LoadOptions,
}

/// Collects errors and references while entries are built.
#[derive(Debug, Default)]
struct Sink {
    errors: Vec<ConfigError>,
    refs: Vec<PendingRef>,
}

/// The shared pipeline for [`AppConfig::load`] and [`AppConfig::from_sources`].
///
/// `sources` paths are relative to `base_dir` (an absolute path under
/// `base_dir` is accepted too).
pub(crate) fn load_sources(
    sources: Vec<(PathBuf, String)>,
    base_dir: &Path,
    files: &dyn FileSource,
    opts: &LoadOptions,
    errors: Vec<ConfigError>,
) -> Result<AppConfig, ConfigErrors> {
    let mut sink = Sink {
        errors,
        refs: Vec::new(),
    };
    let mut sources = sources;
    sources.sort_by(|a, b| a.0.cmp(&b.0));

    let mut raw_entries = Vec::new();
    for (path, text) in &sources {
        let rel = path.strip_prefix(base_dir).unwrap_or(path);
        let file = base_dir.join(rel);
        let rel_dir = normalize(rel.parent().unwrap_or(Path::new("")));
        parse_file(&file, &rel_dir, text, &mut raw_entries, &mut sink.errors);
    }

    let index = index_entries(&raw_entries, &mut sink.errors);
    let env = Env {
        base_dir,
        files,
        opts,
    };
    let mut app = AppConfig::default();
    for (raw, unique) in raw_entries.iter().zip(index.unique) {
        if unique {
            build_entry(&env, raw, &mut sink, &mut app);
        }
    }
    check_refs(&sink.refs, &index.kinds, &mut sink.errors);
    http::check_duplicate_routes(&app, &mut sink.errors);

    if sink.errors.is_empty() {
        Ok(app)
    } else {
        // Report in source order: by file, then by entry (file-level errors
        // first); the sort is stable, so an entry keeps its field order.
        let position: BTreeMap<String, usize> = raw_entries
            .iter()
            .enumerate()
            .map(|(i, raw)| (raw.id.to_string(), i))
            .rev() // a duplicate id sorts with its first definition's position
            .collect();
        sink.errors.sort_by_key(|error| {
            let at = error
                .entry
                .as_ref()
                .and_then(|id| position.get(id).copied());
            (error.file.clone(), at)
        });
        Err(ConfigErrors::new(sink.errors))
    }
}

/// Splits one YAML file into raw entries.
fn parse_file(
    file: &Path,
    rel_dir: &Path,
    text: &str,
    out: &mut Vec<RawEntry>,
    errors: &mut Vec<ConfigError>,
) {
    let file_error = |field: Option<String>, kind| ConfigError {
        file: file.to_path_buf(),
        entry: None,
        field,
        kind,
    };
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
    let namespace = match doc.get("namespace") {
        Some(Value::String(ns)) => match EntryId::new(ns, "x") {
            Ok(_) => Some(ns.clone()),
            Err(err) => {
                errors.push(file_error(
                    Some("namespace".into()),
                    ConfigErrorKind::InvalidValue {
                        value: ns.clone(),
                        reason: err.to_string(),
                    },
                ));
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(file_error(
                Some("namespace".into()),
                ConfigErrorKind::MissingField,
            ));
            None
        }
        Some(other) => {
            errors.push(file_error(
                Some("namespace".into()),
                ConfigErrorKind::WrongType {
                    expected: "a string",
                    found: type_name(other),
                },
            ));
            None
        }
    };
    let entries = match doc.get("entries") {
        Some(Value::Sequence(entries)) => entries.as_slice(),
        // A file with a namespace and no entries is legal (and useless).
        None | Some(Value::Null) => &[],
        Some(other) => {
            errors.push(file_error(
                Some("entries".into()),
                ConfigErrorKind::WrongType {
                    expected: "a list",
                    found: type_name(other),
                },
            ));
            &[]
        }
    };
    let Some(namespace) = namespace else { return };
    for (i, entry) in entries.iter().enumerate() {
        if let Some(raw) = parse_entry(file, rel_dir, &namespace, i, entry, errors) {
            out.push(raw);
        }
    }
}

/// Reads `name` and `kind` of `entries[i]`.
fn parse_entry(
    file: &Path,
    rel_dir: &Path,
    namespace: &str,
    i: usize,
    entry: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<RawEntry> {
    let mut error = |entry: Option<String>, field: String, kind| {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            entry,
            field: Some(field),
            kind,
        });
    };
    let Value::Mapping(fields) = entry else {
        error(
            None,
            format!("entries[{i}]"),
            ConfigErrorKind::WrongType {
                expected: "a map",
                found: type_name(entry),
            },
        );
        return None;
    };
    let id = match fields.get("name") {
        Some(Value::String(name)) => match EntryId::new(namespace, name) {
            Ok(id) => id,
            Err(err) => {
                error(
                    None,
                    format!("entries[{i}].name"),
                    ConfigErrorKind::InvalidValue {
                        value: name.clone(),
                        reason: err.to_string(),
                    },
                );
                return None;
            }
        },
        None | Some(Value::Null) => {
            error(
                None,
                format!("entries[{i}].name"),
                ConfigErrorKind::MissingField,
            );
            return None;
        }
        Some(other) => {
            error(
                None,
                format!("entries[{i}].name"),
                ConfigErrorKind::WrongType {
                    expected: "a string",
                    found: type_name(other),
                },
            );
            return None;
        }
    };
    let kind = match fields.get("kind") {
        Some(Value::String(kind)) => kind.clone(),
        None | Some(Value::Null) => {
            error(
                Some(id.to_string()),
                "kind".into(),
                ConfigErrorKind::MissingField,
            );
            return None;
        }
        Some(other) => {
            error(
                Some(id.to_string()),
                "kind".into(),
                ConfigErrorKind::WrongType {
                    expected: "a string",
                    found: type_name(other),
                },
            );
            return None;
        }
    };
    Some(RawEntry {
        id,
        kind,
        file: file.to_path_buf(),
        rel_dir: rel_dir.to_path_buf(),
        fields: fields.clone(),
    })
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

/// The id → kind index, and which raw entries are first of their id.
struct Index {
    kinds: BTreeMap<EntryId, String>,
    unique: Vec<bool>,
}

fn index_entries(raw_entries: &[RawEntry], errors: &mut Vec<ConfigError>) -> Index {
    let mut first_file: BTreeMap<&EntryId, &Path> = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let mut unique = Vec::with_capacity(raw_entries.len());
    for raw in raw_entries {
        if let Some(first) = first_file.get(&raw.id) {
            errors.push(ConfigError {
                file: raw.file.clone(),
                entry: Some(raw.id.to_string()),
                field: Some("name".into()),
                kind: ConfigErrorKind::DuplicateId {
                    id: raw.id.clone(),
                    first_file: first.to_path_buf(),
                },
            });
            unique.push(false);
        } else {
            first_file.insert(&raw.id, &raw.file);
            kinds.insert(raw.id.clone(), raw.kind.clone());
            unique.push(true);
        }
    }
    Index { kinds, unique }
}

/// The top-level fields each kind reads, besides `name`, `kind` and `meta`.
/// `process.host` is open (extra fields become options) and is not listed.
const KIND_FIELDS: &[(&str, &[&str])] = &[
    (kind::HTTP_SERVICE, &["addr", "lifecycle"]),
    (
        kind::HTTP_ROUTER,
        &[
            "prefix",
            "middleware",
            "options",
            "post_middleware",
            "post_options",
        ],
    ),
    (kind::HTTP_ENDPOINT, &["method", "path", "func"]),
    (kind::HTTP_STATIC, &["path", "directory", "index"]),
    (
        kind::FUNCTION_LUA,
        &["source", "method", "modules", "imports"],
    ),
    (
        kind::PROCESS_LUA,
        &["source", "method", "modules", "imports"],
    ),
    (
        kind::PROCESS_SERVICE,
        &["process", "host", "input", "lifecycle"],
    ),
    (kind::CLUSTER, &["node", "nats_urls", "credentials", "tls"]),
    (kind::OPS, &["addr", "admin"]),
];

/// Logs fields this loader does not read. Not an error: Wippy entries may
/// carry fields wsrelay does not implement; but a typo such as
/// `post_middlware` would otherwise go unnoticed.
fn warn_unknown_fields(raw: &RawEntry) {
    let Some((_, known)) = KIND_FIELDS.iter().find(|(kind, _)| *kind == raw.kind) else {
        return;
    };
    for key in raw.fields.keys().filter_map(Value::as_str) {
        if !matches!(key, "name" | "kind" | "meta") && !known.contains(&key) {
            tracing::warn!(
                file = %raw.file.display(),
                entry = %raw.id,
                field = key,
                "unknown field ignored (known: {})",
                known.join(", ")
            );
        }
    }
}

/// Builds one entry into `app`, or records why it cannot be built.
fn build_entry(env: &Env<'_>, raw: &RawEntry, sink: &mut Sink, app: &mut AppConfig) {
    warn_unknown_fields(raw);
    let mut entry = Entry::new(env, raw, sink);
    if let Some(meta) = raw.fields.get("meta") {
        if !meta.is_mapping() && !meta.is_null() {
            entry.error(
                "meta",
                ConfigErrorKind::WrongType {
                    expected: "a map",
                    found: type_name(meta),
                },
            );
        }
    }
    match raw.kind.as_str() {
        kind::HTTP_SERVICE => push(&mut app.services, http::service(&mut entry)),
        kind::HTTP_ROUTER => push(&mut app.routers, http::router(&mut entry)),
        kind::HTTP_ENDPOINT => push(&mut app.endpoints, http::endpoint(&mut entry)),
        kind::HTTP_STATIC => push(&mut app.statics, http::static_dir(&mut entry)),
        kind::FUNCTION_LUA => push(
            &mut app.functions,
            lua::entry(&mut entry, crate::model::LuaKind::Function),
        ),
        kind::PROCESS_LUA => push(
            &mut app.processes,
            lua::entry(&mut entry, crate::model::LuaKind::Process),
        ),
        kind::PROCESS_HOST => push(&mut app.hosts, process::host(&mut entry)),
        kind::PROCESS_SERVICE => push(&mut app.process_services, process::service(&mut entry)),
        kind::CLUSTER => {
            let cluster = process::cluster(&mut entry);
            match (&app.cluster, cluster) {
                (Some(first), Some(_)) => {
                    let first = first.id.clone();
                    entry.error("kind", ConfigErrorKind::DuplicateCluster { first });
                }
                (None, cluster) => app.cluster = cluster,
                (Some(_), None) => {}
            }
        }
        kind::OPS => {
            let ops = ops::ops(&mut entry);
            match (&app.ops, ops) {
                (Some(first), Some(_)) => {
                    let first = first.id.clone();
                    entry.error("kind", ConfigErrorKind::DuplicateOps { first });
                }
                (None, ops) => app.ops = ops,
                (Some(_), None) => {}
            }
        }
        other => entry.error(
            "kind",
            ConfigErrorKind::UnknownKind {
                kind: other.to_owned(),
                known: KNOWN_KINDS.to_vec(),
            },
        ),
    }
}

fn push<T>(items: &mut Vec<T>, item: Option<T>) {
    items.extend(item);
}

fn check_refs(
    refs: &[PendingRef],
    kinds: &BTreeMap<EntryId, String>,
    errors: &mut Vec<ConfigError>,
) {
    for pending in refs {
        let kind = match kinds.get(&pending.target) {
            None => ConfigErrorKind::DanglingReference {
                target: pending.target.clone(),
                expected: pending.expected.to_vec(),
            },
            Some(found) if !pending.expected.contains(&found.as_str()) => {
                ConfigErrorKind::WrongReferenceKind {
                    target: pending.target.clone(),
                    expected: pending.expected.to_vec(),
                    found: found.clone(),
                }
            }
            Some(_) => continue,
        };
        errors.push(ConfigError {
            file: pending.file.clone(),
            entry: Some(pending.entry.to_string()),
            field: Some(pending.field.clone()),
            kind,
        });
    }
}
