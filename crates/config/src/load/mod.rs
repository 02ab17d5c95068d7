//! The loading pipeline: find files, parse YAML, index entries, build typed
//! entries, check references.
//!
//! 1. **Discover** (`load` only, `discover`): every `*.yaml`/`*.yml` under
//!    the app directory, recursively, sorted by path; hidden files and
//!    directories (`.git`) are skipped, each directory is entered once
//!    (symlink loops are reported), only regular files are read.
//! 2. **Parse** (`parse`) each file, after a cheap pre-scan of its size and
//!    nesting (`prescan`), into a generic YAML value and split it into raw
//!    entries (`namespace`, `entries[i].name`, `entries[i].kind`). A YAML
//!    syntax error costs that file only.
//!    `${env:NAME}` placeholders in the fields are then replaced (`placeholder`).
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

mod addr;
mod discover;
mod env;
mod fields;
mod http;
mod lua;
mod ops;
mod parse;
mod placeholder;
mod prescan;
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
    let (sources, errors) = discover::read_yaml_files(dir);
    if sources.is_empty() && errors.is_empty() {
        let error = ConfigError::in_file(dir, None, ConfigErrorKind::NoFiles);
        return Err(ConfigErrors::new(vec![error]));
    }
    load_sources(sources, dir, &DiskFiles, opts, errors)
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
        parse::file(&file, &rel_dir, text, &mut raw_entries, &mut sink.errors);
    }

    // An entry whose placeholders failed is indexed but not built: its fields would only
    // report the unreplaced text again.
    let resolved: Vec<bool> = raw_entries
        .iter_mut()
        .map(|raw| placeholder::resolve(raw, opts, &mut sink.errors))
        .collect();
    let index = index_entries(&raw_entries, &mut sink.errors);
    let env = Env {
        base_dir,
        files,
        opts,
    };
    let mut app = AppConfig::default();
    for ((raw, unique), resolved) in raw_entries.iter().zip(index.unique).zip(resolved) {
        if unique && resolved {
            build_entry(&env, raw, &mut sink, &mut app);
        }
    }
    check_refs(&sink.refs, &index.kinds, &mut sink.errors);
    http::check_duplicate_routes(&app, &mut sink.errors);
    env::check(&app, &mut sink.errors);

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
            let kind = ConfigErrorKind::DuplicateId {
                id: raw.id.clone(),
                first_file: first.to_path_buf(),
            };
            errors.push(ConfigError::in_entry(&raw.file, &raw.id, "name", kind));
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
    (
        kind::HTTP_SERVICE,
        &[
            "addr",
            "lifecycle",
            "tls",
            "h2c",
            "trusted_proxies",
            "proxy_protocol",
            "header_read_timeout",
        ],
    ),
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
    (
        kind::HTTP_STATIC,
        &["path", "directory", "index", "dotfiles"],
    ),
    (
        kind::FUNCTION_LUA,
        &["source", "method", "modules", "imports", "http_client"],
    ),
    (
        kind::PROCESS_LUA,
        &["source", "method", "modules", "imports", "http_client"],
    ),
    (
        kind::PROCESS_SERVICE,
        &["process", "host", "input", "lifecycle"],
    ),
    (
        kind::CLUSTER,
        &[
            "node",
            "nats_urls",
            "credentials",
            "tls",
            "secret_file",
            "max_peers",
        ],
    ),
    (kind::OPS, &["addr", "admin"]),
    (
        kind::PG_SCOPE,
        &[
            "max_groups",
            "max_members_per_group",
            "max_remote_members",
            "monitor_buffer",
            "lifecycle",
        ],
    ),
    (kind::STORE_MEMORY, &["max_size", "lifecycle"]),
    (kind::ENV_STORAGE_OS, &["lifecycle"]),
    (kind::ENV_STORAGE_MEMORY, &["lifecycle"]),
    (kind::ENV_STORAGE_FILE, &["file_path", "lifecycle"]),
    (kind::ENV_STORAGE_STATIC, &["variables", "lifecycle"]),
    (kind::ENV_STORAGE_ROUTER, &["storages", "lifecycle"]),
    (
        kind::ENV_VARIABLE,
        &["variable", "storage", "default", "read_only"],
    ),
];

/// Fields this loader does not read: a warning by default, since Wippy entries may carry
/// fields wsrelay does not implement (see the crate docs); an error with
/// [`LoadOptions::strict`], so that a typo such as `post_middlware`, or a field this build
/// does not know yet (`tls` on an older build, which would serve plain HTTP), stops the
/// load instead of being ignored.
fn check_unknown_fields(raw: &RawEntry, entry: &mut Entry<'_>) {
    let Some((_, known)) = KIND_FIELDS.iter().find(|(kind, _)| *kind == raw.kind) else {
        return;
    };
    for key in raw.fields.keys().filter_map(Value::as_str) {
        if matches!(key, "name" | "kind" | "meta") || known.contains(&key) {
            continue;
        }
        if entry.env.opts.strict {
            entry.error(
                key,
                ConfigErrorKind::UnknownField {
                    known: known.to_vec(),
                },
            );
        } else {
            tracing::warn!(
                file = %raw.file.display(),
                entry = %raw.id,
                field = key,
                "unknown field ignored (known: {}; --strict makes this an error)",
                known.join(", ")
            );
        }
    }
}

/// Builds one entry into `app`, or records why it cannot be built.
fn build_entry(env: &Env<'_>, raw: &RawEntry, sink: &mut Sink, app: &mut AppConfig) {
    let mut entry = Entry::new(env, raw, sink);
    check_unknown_fields(raw, &mut entry);
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
            set_once(&mut app.cluster, cluster, &mut entry, |first| {
                ConfigErrorKind::DuplicateCluster {
                    first: first.id.clone(),
                }
            });
        }
        kind::OPS => {
            let ops = ops::ops(&mut entry);
            set_once(&mut app.ops, ops, &mut entry, |first| {
                ConfigErrorKind::DuplicateOps {
                    first: first.id.clone(),
                }
            });
        }
        kind::PG_SCOPE => push(&mut app.pg_scopes, process::pg_scope(&mut entry)),
        kind::STORE_MEMORY => push(&mut app.memory_stores, process::memory_store(&mut entry)),
        kind::ENV_STORAGE_OS
        | kind::ENV_STORAGE_MEMORY
        | kind::ENV_STORAGE_FILE
        | kind::ENV_STORAGE_STATIC
        | kind::ENV_STORAGE_ROUTER => {
            push(&mut app.env_storages, env::storage(&mut entry, &raw.kind));
        }
        kind::ENV_VARIABLE => push(&mut app.env_variables, env::variable(&mut entry)),
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

/// Keeps the first entry of a kind allowed once per app; a second one is an
/// error on its `kind`, naming the first.
fn set_once<T>(
    slot: &mut Option<T>,
    item: Option<T>,
    entry: &mut Entry<'_>,
    duplicate: impl FnOnce(&T) -> ConfigErrorKind,
) {
    match (slot.as_ref(), item) {
        (Some(first), Some(_)) => entry.error("kind", duplicate(first)),
        (None, item) => *slot = item,
        (Some(_), None) => {}
    }
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
        errors.push(ConfigError::in_entry(
            &pending.file,
            &pending.entry,
            &pending.field,
            kind,
        ));
    }
}
