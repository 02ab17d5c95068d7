//! `process.host`, `process.service`, `pg.scope` and the reserved `cluster` kind.

use serde_yaml_ng::Value;

use super::fields::{to_json, type_name, Entry};
use crate::error::ConfigErrorKind;
use crate::model::{
    kind, ClusterConfig, ClusterTls, MemoryStore, PgScope, ProcessHost, ProcessService,
    RestartPolicy,
};

/// Fields of `process.host` with a typed meaning; the rest go to `options`.
const HOST_FIELDS: &[&str] = &["name", "kind", "meta", "workers", "max_processes"];

pub(super) fn host(entry: &mut Entry<'_>) -> Option<ProcessHost> {
    let workers = entry.opt_positive("workers").map(to_usize);
    let max_processes = entry.opt_positive("max_processes").map(to_usize);
    let options = entry
        .raw
        .fields
        .iter()
        .filter_map(|(key, value)| {
            let key = key.as_str()?;
            (!HOST_FIELDS.contains(&key)).then(|| (key.to_owned(), to_json(value)))
        })
        .collect();
    if entry.failed() {
        return None;
    }
    Some(ProcessHost {
        id: entry.id().clone(),
        file: entry.file(),
        workers,
        max_processes,
        options,
    })
}

pub(super) fn pg_scope(entry: &mut Entry<'_>) -> Option<PgScope> {
    let max_groups = entry.opt_count("max_groups");
    let max_members_per_group = entry.opt_count("max_members_per_group");
    let max_remote_members = entry.opt_count("max_remote_members");
    if entry.failed() {
        return None;
    }
    Some(PgScope {
        id: entry.id().clone(),
        file: entry.file(),
        max_groups,
        max_members_per_group,
        max_remote_members,
    })
}

pub(super) fn memory_store(entry: &mut Entry<'_>) -> Option<MemoryStore> {
    let max_size = entry.opt_positive("max_size");
    if entry.failed() {
        return None;
    }
    Some(MemoryStore {
        id: entry.id().clone(),
        file: entry.file(),
        max_size,
    })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(super) fn service(entry: &mut Entry<'_>) -> Option<ProcessService> {
    let process = entry.reference("process", true, &[kind::PROCESS_LUA]);
    let host = entry.reference("host", true, &[kind::PROCESS_HOST]);
    let input = match entry.get("input") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(to_json).collect(),
        Some(value) => vec![to_json(value)],
    };
    let auto_start = entry.bool_or("lifecycle.auto_start", false);
    let restart = restart_policy(entry);
    if entry.failed() {
        return None;
    }
    Some(ProcessService {
        id: entry.id().clone(),
        file: entry.file(),
        process: process?,
        host: host?,
        input,
        auto_start,
        restart,
    })
}

/// `lifecycle.restart`: absent or `true` = defaults, `false` = never restart,
/// or a map of `initial_delay`, `max_delay`, `backoff_factor`, `max_attempts`.
fn restart_policy(entry: &mut Entry<'_>) -> RestartPolicy {
    const FIELD: &str = "lifecycle.restart";
    let defaults = RestartPolicy::default();
    match entry.get(FIELD) {
        None | Some(Value::Bool(true)) => return defaults,
        Some(Value::Bool(false)) => {
            return RestartPolicy {
                max_attempts: Some(0),
                ..defaults
            }
        }
        Some(Value::Mapping(_)) => {}
        Some(other) => {
            entry.error(
                FIELD,
                ConfigErrorKind::WrongType {
                    expected: "a map or a boolean",
                    found: type_name(other),
                },
            );
            return defaults;
        }
    }
    let initial_delay =
        entry.duration_or("lifecycle.restart.initial_delay", defaults.initial_delay);
    let max_delay = entry.duration_or("lifecycle.restart.max_delay", defaults.max_delay);
    if max_delay < initial_delay {
        entry.error(
            "lifecycle.restart.max_delay",
            ConfigErrorKind::InvalidValue {
                value: crate::format_duration(max_delay),
                reason: format!(
                    "must not be shorter than initial_delay ({})",
                    crate::format_duration(initial_delay)
                ),
            },
        );
    }
    let backoff_factor = match entry.get("lifecycle.restart.backoff_factor") {
        None => defaults.backoff_factor,
        Some(value) => match value.as_f64() {
            Some(factor) if factor >= 1.0 && factor.is_finite() => factor,
            _ => {
                entry.error(
                    "lifecycle.restart.backoff_factor",
                    ConfigErrorKind::InvalidValue {
                        value: super::fields::scalar_text(value)
                            .unwrap_or_else(|| type_name(value).to_owned()),
                        reason: "must be a number >= 1".into(),
                    },
                );
                defaults.backoff_factor
            }
        },
    };
    let max_attempts = match entry.get("lifecycle.restart.max_attempts") {
        None => None,
        Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                entry.error(
                    "lifecycle.restart.max_attempts",
                    ConfigErrorKind::WrongType {
                        expected: "a non-negative integer",
                        found: type_name(value),
                    },
                );
                None
            }
        },
    };
    RestartPolicy {
        initial_delay,
        max_delay,
        backoff_factor,
        max_attempts,
    }
}

pub(super) fn cluster(entry: &mut Entry<'_>) -> Option<ClusterConfig> {
    let node = entry.opt_str("node");
    let nats_urls = entry.str_list("nats_urls");
    if nats_urls.is_empty() && entry.get("nats_urls").is_none() {
        entry.error("nats_urls", ConfigErrorKind::MissingField);
    }
    let credentials = entry
        .opt_str("credentials")
        .and_then(|text| entry.app_path("credentials", &text));
    // A key, not app code: it may live outside the app (a mounted secret), and must not be
    // written in the YAML itself, so only its file is named here.
    let secret_file = entry
        .opt_str("secret_file")
        .and_then(|text| entry.file_path("secret_file", &text));
    let max_peers = entry.opt_positive("max_peers").map(to_usize);
    let tls = match entry.get("tls") {
        None => None,
        Some(Value::Mapping(_)) => {
            let mut path = |name: &str| {
                let field = format!("tls.{name}");
                entry
                    .opt_str(&field)
                    .and_then(|text| entry.app_path(&field, &text))
            };
            Some(ClusterTls {
                ca: path("ca"),
                cert: path("cert"),
                key: path("key"),
            })
        }
        Some(other) => {
            entry.error(
                "tls",
                ConfigErrorKind::WrongType {
                    expected: "a map of ca, cert, key",
                    found: type_name(other),
                },
            );
            None
        }
    };
    if entry.failed() {
        return None;
    }
    Some(ClusterConfig {
        id: entry.id().clone(),
        file: entry.file(),
        node,
        nats_urls,
        credentials,
        tls,
        secret_file,
        max_peers,
    })
}
