//! `${env:NAME}` / `${env:NAME|default}` placeholders in entry fields, and the `http_client`
//! field of Lua entries.

use std::time::Duration;

use wsrelay_config::{AppConfig, ConfigErrors, HttpClientConfig};

use crate::util::{find_error, opts, App};

fn load_with(app: &App, vars: &[(&str, &str)]) -> Result<AppConfig, ConfigErrors> {
    AppConfig::load(app.root(), &opts().with_env(vars.iter().copied()))
}

const STORES: &str = r#"
namespace: app
entries:
  - name: tickets
    kind: store.memory
    max_size: ${env:TICKETS_MAX}
  - name: cache
    kind: store.memory
    max_size: "${env:CACHE_MAX|250}"
"#;

#[test]
fn placeholders_take_the_variable_or_the_default() {
    let app = App::new().file("stores.yaml", STORES);
    let config = load_with(&app, &[("TICKETS_MAX", "500")]).expect("loads");
    let sizes: Vec<Option<u64>> = config.memory_stores.iter().map(|s| s.max_size).collect();
    assert_eq!(sizes, [Some(500), Some(250)]);
    // A set variable wins over the default.
    let config = load_with(&app, &[("TICKETS_MAX", "1"), ("CACHE_MAX", "2")]).expect("loads");
    let sizes: Vec<Option<u64>> = config.memory_stores.iter().map(|s| s.max_size).collect();
    assert_eq!(sizes, [Some(1), Some(2)]);
}

#[test]
fn placeholders_fill_nested_fields_and_mix_with_text() {
    let app = App::new().file(
        "svc.yaml",
        r#"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: "${env:HOST|127.0.0.1}:${env:PORT}"
  - name: handler
    kind: function.lua
    source: "return { h = function() return '${env:NOT_TOUCHED}' end }"
    method: h
    http_client:
      allow_private: ${env:ALLOW_PRIVATE|false}
      timeout: ${env:TIMEOUT}
"#,
    );
    let config = load_with(
        &app,
        &[
            ("PORT", "8081"),
            ("ALLOW_PRIVATE", "true"),
            ("TIMEOUT", "2s"),
        ],
    )
    .expect("loads");
    assert_eq!(config.services[0].addr.to_string(), "127.0.0.1:8081");
    let f = &config.functions[0];
    // Lua source is code: placeholders in it stay text.
    assert!(f.source.contains("${env:NOT_TOUCHED}"));
    assert_eq!(
        f.http_client,
        Some(HttpClientConfig {
            allow_private: true,
            timeout: Some(Duration::from_secs(2)),
            ..HttpClientConfig::default()
        })
    );
}

#[test]
fn a_missing_variable_without_default_names_file_entry_field_and_variable() {
    let app = App::new().file("stores.yaml", STORES);
    let errs = load_with(&app, &[]).unwrap_err();
    let line = find_error(
        &errs,
        &["stores.yaml", "app:tickets", "max_size", "TICKETS_MAX"],
    );
    assert!(line.contains("is not set"), "{line}");
    // The other entry's default kept it valid: one error only.
    assert_eq!(errs.iter().count(), 1, "{errs}");
}

#[test]
fn malformed_placeholders_are_errors() {
    let app = App::new().file(
        "svc.yaml",
        r#"
namespace: app
entries:
  - name: a
    kind: store.memory
    max_size: "${env:OPEN"
  - name: b
    kind: store.memory
    max_size: "${env:BAD-NAME}"
"#,
    );
    let errs = load_with(&app, &[]).unwrap_err();
    find_error(&errs, &["app:a", "max_size", "no closing }"]);
    find_error(&errs, &["app:b", "max_size", "variable name must match"]);
}

#[test]
fn http_client_fields_are_typed_and_checked() {
    let app = App::new().file(
        "f.yaml",
        r#"
namespace: app
entries:
  - name: ok
    kind: process.lua
    source: "return { run = function() end }"
    method: run
    http_client:
      allow_private: true
      timeout: 5s
      max_timeout: 1m
      connect_timeout: 2s
      max_request_body: 1024
      max_response_body: 2048
      max_redirects: 0
"#,
    );
    let config = app.load_ok();
    assert_eq!(
        config.processes[0].http_client,
        Some(HttpClientConfig {
            allow_private: true,
            timeout: Some(Duration::from_secs(5)),
            max_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Some(Duration::from_secs(2)),
            max_request_body: Some(1024),
            max_response_body: Some(2048),
            max_redirects: Some(0),
        })
    );
    let errs = App::new()
        .file(
            "f.yaml",
            r#"
namespace: app
entries:
  - name: bad
    kind: function.lua
    source: "return { h = function() end }"
    method: h
    http_client:
      allow_privat: true
      max_response_body: 0
"#,
        )
        .load_err();
    find_error(&errs, &["app:bad", "http_client.allow_privat"]);
    find_error(
        &errs,
        &[
            "app:bad",
            "http_client.max_response_body",
            "greater than zero",
        ],
    );
}

// ----------------------------------------------------------------------- env entries

/// The env entries the end-to-end tests read from Lua too.
const ENV_ENTRIES: &str = include_str!("fixtures/env_entries.yaml");

/// An app whose `env.yaml` has these `entries` (the items of the list, namespace `app`).
fn env_app(entries: &str) -> App {
    App::new().file("env.yaml", &format!("namespace: app\nentries:\n{entries}"))
}

#[test]
fn env_storages_and_variables_load() {
    use wsrelay_config::EnvStorageKind;
    let config = env_app(ENV_ENTRIES)
        .file("app.env", "# secrets\nJWT_SECRET=\"s3cret\"\n")
        .load_ok();
    let kinds: Vec<(String, &EnvStorageKind)> = config
        .env_storages
        .iter()
        .map(|s| (s.id.to_string(), &s.kind))
        .collect();
    assert_eq!(kinds[0], ("app:os".to_owned(), &EnvStorageKind::Os));
    assert_eq!(kinds[1], ("app:mem".to_owned(), &EnvStorageKind::Memory));
    let EnvStorageKind::File { variables, .. } = kinds[2].1 else {
        panic!("{kinds:?}");
    };
    assert_eq!(variables["JWT_SECRET"], "s3cret");
    let EnvStorageKind::Static { variables } = kinds[3].1 else {
        panic!("{kinds:?}");
    };
    assert_eq!(variables["RETRIES"], "3");
    let EnvStorageKind::Router { storages } = kinds[4].1 else {
        panic!("{kinds:?}");
    };
    let routed: Vec<String> = storages.iter().map(ToString::to_string).collect();
    assert_eq!(routed, ["app:mem", "app:dotenv", "app:fixed", "app:os"]);
    let vars: Vec<(&str, String, Option<&str>, bool)> = config
        .env_variables
        .iter()
        .map(|v| {
            (
                v.variable.as_str(),
                v.storage.to_string(),
                v.default.as_deref(),
                v.read_only,
            )
        })
        .collect();
    assert_eq!(
        vars,
        [
            ("JWT_SECRET", "app:all".to_owned(), None, true),
            ("REGION", "app:all".to_owned(), Some("us-1"), false)
        ]
    );
}

#[test]
fn env_entry_errors_name_file_entry_and_field() {
    let errs = env_app(
        r#"
  - name: dotenv
    kind: env.storage.file
    file_path: missing.env
  - name: broken
    kind: env.storage.file
    file_path: broken.env
  - name: loop
    kind: env.storage.router
    storages: [loop, nowhere]
  - name: empty
    kind: env.storage.router
  - name: v
    kind: env.variable
    storage: broken_ref
  - name: w
    kind: env.variable
    variable: "bad name"
    storage: loop
  - name: x
    kind: env.variable
    storage: v
"#,
    )
    .file("broken.env", "A=1\nthis is not a line\n")
    .load_err();
    find_error(
        &errs,
        &["env.yaml", "app:dotenv", "file_path", "missing.env"],
    );
    find_error(
        &errs,
        &["app:broken", "file_path", "broken.env:2", "NAME=value"],
    );
    find_error(&errs, &["app:loop", "storages", "itself"]);
    find_error(&errs, &["app:loop", "storages[1]", "app:nowhere"]);
    find_error(&errs, &["app:empty", "storages", "missing"]);
    find_error(&errs, &["app:v", "storage", "app:broken_ref"]);
    find_error(&errs, &["app:w", "variable", "bad name"]);
    find_error(&errs, &["app:x", "storage", "env.variable"]);
}

#[test]
fn env_router_cycles_and_duplicate_names_are_refused() {
    let errs = env_app(
        r#"
  - name: mem
    kind: env.storage.memory
  - name: a
    kind: env.storage.router
    storages: [mem, b]
  - name: b
    kind: env.storage.router
    storages: [a]
  - name: one
    kind: env.variable
    variable: TOKEN
    storage: mem
  - name: two
    kind: env.variable
    variable: TOKEN
    storage: mem
"#,
    )
    .load_err();
    find_error(&errs, &["app:a", "storages", "cycle"]);
    find_error(&errs, &["app:b", "storages", "cycle"]);
    find_error(&errs, &["app:two", "variable", "declared by app:one"]);
}
