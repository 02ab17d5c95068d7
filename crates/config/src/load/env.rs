//! `env.storage.os|memory|file|static|router` and `env.variable`: where the Lua `env`
//! module's declared variables live.

use std::collections::BTreeMap;

use super::fields::Entry;
use crate::error::ConfigErrorKind;
use crate::model::{kind, EnvStorage, EnvStorageKind, EnvVariable};

/// The storage kinds, for references.
const STORAGES: &[&str] = &[
    kind::ENV_STORAGE_OS,
    kind::ENV_STORAGE_MEMORY,
    kind::ENV_STORAGE_FILE,
    kind::ENV_STORAGE_STATIC,
    kind::ENV_STORAGE_ROUTER,
];

/// The most storages one router reads through.
const MAX_ROUTES: usize = 16;
/// The most variables a file or static storage holds.
const MAX_VARIABLES: usize = 4096;

pub(super) fn storage(entry: &mut Entry<'_>, storage_kind: &str) -> Option<EnvStorage> {
    let kind = match storage_kind {
        kind::ENV_STORAGE_OS => EnvStorageKind::Os,
        kind::ENV_STORAGE_MEMORY => EnvStorageKind::Memory,
        kind::ENV_STORAGE_STATIC => {
            let variables = entry.str_map("variables");
            check_names(entry, "variables", &variables);
            EnvStorageKind::Static { variables }
        }
        kind::ENV_STORAGE_FILE => {
            let text = entry.req_str("file_path")?;
            let path = entry.file_path("file_path", &text)?;
            let content = match entry.env.files.read_to_string(&path) {
                Ok(content) => content,
                Err(err) => {
                    entry.error("file_path", ConfigErrorKind::unreadable(path, err));
                    return None;
                }
            };
            match parse_dotenv(&content) {
                Ok(variables) => EnvStorageKind::File { path, variables },
                Err((line, reason)) => {
                    entry.error(
                        "file_path",
                        ConfigErrorKind::InvalidValue {
                            value: format!("{}:{line}", path.display()),
                            reason,
                        },
                    );
                    return None;
                }
            }
        }
        _ => {
            let names = entry.str_list("storages");
            if names.is_empty() {
                entry.error("storages", ConfigErrorKind::MissingField);
            }
            if names.len() > MAX_ROUTES {
                entry.error(
                    "storages",
                    ConfigErrorKind::InvalidValue {
                        value: names.len().to_string(),
                        reason: format!("at most {MAX_ROUTES} storages"),
                    },
                );
            }
            let storages: Vec<_> = names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    entry.resolve_ref(&format!("storages[{i}]"), name, STORAGES)
                })
                .collect();
            if storages.iter().any(|s| s == entry.id()) {
                entry.error(
                    "storages",
                    ConfigErrorKind::InvalidValue {
                        value: entry.id().to_string(),
                        reason: "a router cannot route to itself".into(),
                    },
                );
            }
            EnvStorageKind::Router { storages }
        }
    };
    if entry.failed() {
        return None;
    }
    Some(EnvStorage {
        id: entry.id().clone(),
        file: entry.file(),
        kind,
    })
}

pub(super) fn variable(entry: &mut Entry<'_>) -> Option<EnvVariable> {
    let variable = entry
        .opt_str("variable")
        .unwrap_or_else(|| entry.id().name().to_owned());
    if !valid_name(&variable) {
        entry.error(
            "variable",
            ConfigErrorKind::InvalidValue {
                value: variable.clone(),
                reason: "a variable name is [A-Za-z_][A-Za-z0-9_.-]*, at most 256 bytes".into(),
            },
        );
    }
    let storage = entry.reference("storage", true, STORAGES);
    let default = entry.opt_str("default");
    let read_only = entry.bool_or("read_only", false);
    if entry.failed() {
        return None;
    }
    Some(EnvVariable {
        id: entry.id().clone(),
        file: entry.file(),
        variable,
        storage: storage?,
        default,
        read_only,
    })
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn check_names(entry: &mut Entry<'_>, field: &str, vars: &BTreeMap<String, String>) {
    if vars.len() > MAX_VARIABLES {
        entry.error(
            field,
            ConfigErrorKind::InvalidValue {
                value: vars.len().to_string(),
                reason: format!("at most {MAX_VARIABLES} variables"),
            },
        );
    }
    for name in vars.keys() {
        if !valid_name(name) {
            entry.error(
                format!("{field}.{name}"),
                ConfigErrorKind::InvalidValue {
                    value: name.clone(),
                    reason: "a variable name is [A-Za-z_][A-Za-z0-9_.-]*, at most 256 bytes".into(),
                },
            );
        }
    }
}

/// A `.env` file: `NAME=value` lines; blank lines and lines starting with `#` are skipped;
/// `export ` before the name is allowed; a value in single or double quotes loses them
/// (no escapes, no interpolation). Errors give the 1-based line.
fn parse_dotenv(content: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (i, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, "expected NAME=value".into()));
        };
        let name = name.trim();
        if !valid_name(name) {
            return Err((i + 1, format!("bad variable name {name:?}")));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value);
        if out.len() >= MAX_VARIABLES {
            return Err((i + 1, format!("more than {MAX_VARIABLES} variables")));
        }
        out.insert(name.to_owned(), unquoted.to_owned());
    }
    Ok(out)
}

/// Checks across entries: routers that read through each other in a cycle, and two
/// `env.variable`s declaring the same name.
pub(super) fn check(app: &crate::model::AppConfig, errors: &mut Vec<crate::error::ConfigError>) {
    use std::collections::{HashMap, HashSet};
    let routes: HashMap<&crate::EntryId, &[crate::EntryId]> = app
        .env_storages
        .iter()
        .filter_map(|s| match &s.kind {
            EnvStorageKind::Router { storages } => Some((&s.id, storages.as_slice())),
            _ => None,
        })
        .collect();
    for storage in &app.env_storages {
        // Depth-first from this router; reaching it again is a cycle. Each router is
        // visited once per start, so this is O(routers * routes).
        let mut stack: Vec<&crate::EntryId> = routes
            .get(&storage.id)
            .map_or(Vec::new(), |r| r.iter().collect());
        let mut seen = HashSet::new();
        while let Some(next) = stack.pop() {
            if next == &storage.id {
                errors.push(crate::error::ConfigError::in_entry(
                    &storage.file,
                    &storage.id,
                    "storages",
                    ConfigErrorKind::InvalidValue {
                        value: storage.id.to_string(),
                        reason: "routers read through each other in a cycle".into(),
                    },
                ));
                break;
            }
            if seen.insert(next) {
                stack.extend(routes.get(next).into_iter().flat_map(|r| r.iter()));
            }
        }
    }
    let mut names: HashMap<&str, &crate::EntryId> = HashMap::new();
    for variable in &app.env_variables {
        if let Some(first) = names.insert(&variable.variable, &variable.id) {
            errors.push(crate::error::ConfigError::in_entry(
                &variable.file,
                &variable.id,
                "variable",
                ConfigErrorKind::InvalidValue {
                    value: variable.variable.clone(),
                    reason: format!("declared by {first} already"),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv(
            "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=\n",
        )
        .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "quoted # not a comment");
        assert_eq!(vars["D"], "x");
        assert_eq!(vars["E"], "");
        assert_eq!(parse_dotenv("A=1\nnope\n").unwrap_err().0, 2);
        assert_eq!(parse_dotenv("1A=1\n").unwrap_err().0, 1);
    }
}
