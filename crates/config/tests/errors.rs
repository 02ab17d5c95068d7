//! Every error class names the file, the entry and the field; the loader
//! reports all errors at once.

use crate::util::{find_error, App, BASE};

/// An app with the valid `BASE` stack in `base.yaml` plus `extra` in `bad.yaml`.
fn with_extra(extra: &str) -> App {
    App::new().file("base.yaml", BASE).file("bad.yaml", extra)
}

fn entries(yaml_entries: &str) -> String {
    format!("namespace: app\nentries:\n{yaml_entries}")
}

#[test]
fn unknown_kind() {
    let errs = with_extra(&entries("  - name: x\n    kind: http.serviec\n")).load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:x", "field kind"]);
    assert!(line.contains(r#"unknown kind "http.serviec""#), "{line}");
    assert!(line.contains("known: http.service"), "{line}");
}

#[test]
fn missing_field() {
    let errs = with_extra(&entries(
        "  - name: ep\n    kind: http.endpoint\n    meta: {router: api}\n    method: GET\n    func: handler\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:ep", "field path"]);
    assert!(line.ends_with("missing required field"), "{line}");

    let errs = with_extra(&entries("  - kind: http.service\n")).load_err();
    find_error(
        &errs,
        &[
            "app/bad.yaml",
            "field entries[0].name",
            "missing required field",
        ],
    );

    let errs = with_extra("entries: []\n").load_err();
    find_error(
        &errs,
        &["app/bad.yaml", "field namespace", "missing required field"],
    );
}

#[test]
fn dangling_reference_names_expected_kind() {
    let errs = with_extra(&entries(
        "  - name: r\n    kind: http.router\n    meta:\n      server: nowhere\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:r", "field meta.server"]);
    assert!(
        line.contains("reference to app:nowhere: no such entry (expected a http.service)"),
        "{line}"
    );
}

#[test]
fn reference_of_wrong_kind() {
    // `handler` is a function.lua, `api` a router: both wrong here.
    let errs = with_extra(&entries(
        "  - name: svc\n    kind: process.service\n    process: handler\n    host: api\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:svc", "field process"]);
    assert!(
        line.contains("app:handler: it is a function.lua, expected a process.lua"),
        "{line}"
    );
    let line = find_error(&errs, &["entry app:svc", "field host"]);
    assert!(
        line.contains("it is a http.router, expected a process.host"),
        "{line}"
    );
}

#[test]
fn duplicate_id_names_both_files() {
    let errs = with_extra(&entries(
        "  - name: gateway\n    kind: http.service\n    addr: \":1\"\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:gateway", "field name"]);
    assert!(line.contains("duplicate entry id app:gateway"), "{line}");
    assert!(
        line.contains("first defined in") && line.contains("app/base.yaml"),
        "{line}"
    );
}

#[test]
fn bad_address() {
    for addr in ["8080", "example.com:80", "127.0.0.1:http", "::1:80"] {
        let errs = with_extra(&entries(&format!(
            "  - name: srv\n    kind: http.service\n    addr: \"{addr}\"\n"
        )))
        .load_err();
        let line = find_error(&errs, &["app/bad.yaml", "entry app:srv", "field addr"]);
        assert!(line.contains(&format!("bad address {addr:?}")), "{line}");
    }
}

#[test]
fn unreadable_file_source() {
    let errs = with_extra(&entries(
        "  - name: f\n    kind: function.lua\n    source: file://missing.lua\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:f", "field source"]);
    assert!(
        line.contains("cannot read") && line.contains("missing.lua"),
        "{line}"
    );
}

#[test]
fn file_source_must_stay_in_app() {
    for (path, reason) in [
        ("../outside.lua", "outside the app directory"),
        ("/etc/passwd", "absolute paths are not allowed"),
    ] {
        let errs = with_extra(&entries(&format!(
            "  - name: f\n    kind: function.lua\n    source: file://{path}\n"
        )))
        .load_err();
        let line = find_error(&errs, &["app/bad.yaml", "entry app:f", "field source"]);
        assert!(line.contains(reason), "{line}");
    }
}

#[test]
fn lua_syntax_error_from_checker() {
    let app = with_extra(&entries(
        "  - name: f\n    kind: process.lua\n    source: file://f.lua\n",
    ))
    .file("f.lua", "local x = @@\n");
    let errs = app.load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:f", "field source"]);
    assert!(line.contains("Lua syntax error in"), "{line}");
    assert!(
        line.contains("f.lua:1: unexpected symbol near '@@'"),
        "{line}"
    );
}

#[test]
fn yaml_syntax_error_has_file_and_line() {
    let errs = with_extra("namespace: app\nentries:\n  - name: x\n    kind: [oops\n").load_err();
    let line = find_error(&errs, &["app/bad.yaml", "YAML syntax error at line"]);
    assert!(!line.contains("entry "), "{line}");
    let errs = with_extra("namespace: app\nentries:\n\t- bad tab\n").load_err();
    let line = find_error(&errs, &["app/bad.yaml", "YAML syntax error at line 3"]);
    assert_eq!(
        line.matches("line 3").count(),
        1,
        "location printed once: {line}"
    );
}

#[test]
fn unknown_middleware_matches_documented_message() {
    let errs = with_extra(
        r#"namespace: app
entries:
  - name: ws_router
    kind: http.router
    meta:
      server: gateway
    post_middleware: [websocket_rely]
"#,
    )
    .load_err();
    let line = find_error(&errs, &["entry app:ws_router"]);
    assert!(
        line.ends_with(
            "app/bad.yaml: entry app:ws_router: field post_middleware[0]: unknown middleware \"websocket_rely\" (known: websocket_relay, cors)"
        ),
        "{line}"
    );
}

#[test]
fn unknown_module() {
    let errs = with_extra(&entries(
        "  - name: f\n    kind: function.lua\n    source: return 1\n    modules: [http, sql]\n",
    ))
    .load_err();
    let line = find_error(&errs, &["app/bad.yaml", "entry app:f", "field modules[1]"]);
    assert!(
        line.contains(
            r#"unknown module "sql" (known: http, json, process, channel, time, pg, errors, base64, hash, uuid, env, crypto, logger, store, metrics, http_client, events)"#
        ),
        "{line}"
    );
}

#[test]
fn wippy_utility_modules_are_known() {
    let app = with_extra(&entries(
        "  - name: f\n    kind: function.lua\n    source: return 1\n    modules: [errors, base64, hash, uuid, env, crypto]\n",
    ))
    .load_ok();
    let f = app
        .functions
        .iter()
        .find(|f| f.id.to_string() == "app:f")
        .expect("app:f is loaded");
    assert_eq!(
        f.modules,
        ["errors", "base64", "hash", "uuid", "env", "crypto"]
    );
}

#[test]
fn bad_duration() {
    let errs = with_extra(&entries(
        "  - name: svc\n    kind: process.service\n    process: worker\n    host: processes\n    lifecycle:\n      restart:\n        initial_delay: 5 parsecs\n        max_delay: 0s\n",
    ))
    .load_err();
    let line = find_error(
        &errs,
        &[
            "app/bad.yaml",
            "entry app:svc",
            "field lifecycle.restart.initial_delay",
        ],
    );
    assert!(line.contains("invalid duration \"5 parsecs\""), "{line}");
    let line = find_error(
        &errs,
        &["entry app:svc", "field lifecycle.restart.max_delay"],
    );
    assert!(line.contains("must be greater than zero"), "{line}");
}

#[test]
fn wrong_types_and_values() {
    let errs = with_extra(
        r#"namespace: app
entries:
  - name: ep
    kind: http.endpoint
    meta: {router: api}
    method: FETCH
    path: "/users/{id"
    func: handler
  - name: r2
    kind: http.router
    meta: {server: gateway}
    prefix: api
    options: [a, b]
  - name: srv
    kind: http.service
    addr: 8080
    lifecycle: {auto_start: "yes"}
  - name: m
    kind: http.router
    meta: gateway
  - name: st
    kind: http.static
    meta: {router: api, server: gateway}
    path: /s
    directory: nope
  - name: dots
    kind: http.static
    meta: {router: api}
    path: /t
    directory: www
    dotfiles: yes-please
"#,
    )
    .load_err();
    find_error(
        &errs,
        &["entry app:ep", "field method", "unknown HTTP method"],
    );
    find_error(
        &errs,
        &["entry app:dots", "field dotfiles", "`deny`", "`allow`"],
    );
    find_error(&errs, &["entry app:ep", "field path", "whole segment"]);
    find_error(
        &errs,
        &["entry app:r2", "field prefix", "must start with \"/\""],
    );
    find_error(
        &errs,
        &[
            "entry app:r2",
            "field options",
            "expected a map, found a list",
        ],
    );
    find_error(
        &errs,
        &[
            "entry app:srv",
            "field addr",
            "expected a string, found a number",
        ],
    );
    find_error(
        &errs,
        &[
            "entry app:srv",
            "field lifecycle.auto_start",
            "expected a boolean",
        ],
    );
    find_error(&errs, &["entry app:st", "field meta.server", "not both"]);
    find_error(
        &errs,
        &[
            "entry app:m",
            "field meta:",
            "expected a map, found a string",
        ],
    );
    find_error(
        &errs,
        &[
            "entry app:st",
            "field directory",
            "not an existing directory",
        ],
    );
}

#[test]
fn all_errors_are_collected_across_files() {
    let app = App::new()
        .file("a.yaml", "namespace: app\nentries:\n  - name: x\n    kind: nope\n")
        .file("b.yaml", "namespace: app\nentries: [\n")
        .file(
            "c.yaml",
            "namespace: app\nentries:\n  - name: r\n    kind: http.router\n    meta: {server: gone}\n    middleware: [zip]\n",
        );
    let errs = app.load_err();
    assert_eq!(errs.len(), 4, "{errs}");
    let text = errs.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].contains("a.yaml"));
    assert!(lines[1].contains("b.yaml"));
    assert!(lines[2].contains("c.yaml") && lines[3].contains("c.yaml"));
}

#[test]
fn broken_target_does_not_cascade() {
    // The router is invalid (bad prefix) but exists: its endpoint must not
    // also report a dangling reference.
    let errs = with_extra(&entries(
        "  - name: r\n    kind: http.router\n    meta: {server: gateway}\n    prefix: nope\n  - name: ep\n    kind: http.endpoint\n    meta: {router: r}\n    method: GET\n    path: /\n    func: handler\n",
    ))
    .load_err();
    assert_eq!(errs.len(), 1, "{errs}");
}

#[test]
fn duplicate_route_and_cluster() {
    let errs = with_extra(&entries(
        "  - name: e1\n    kind: http.endpoint\n    meta: {router: api}\n    method: GET\n    path: /u/{id}\n    func: handler\n  - name: e2\n    kind: http.endpoint\n    meta: {router: api}\n    method: get\n    path: /u/{name}\n    func: handler\n  - name: c1\n    kind: cluster\n    nats_urls: [nats://127.0.0.1:4222]\n  - name: c2\n    kind: cluster\n    nats_urls: [nats://127.0.0.1:4222]\n",
    ))
    .load_err();
    find_error(
        &errs,
        &[
            "entry app:e2",
            "field path",
            "already routed on app:api by app:e1",
        ],
    );
    find_error(
        &errs,
        &["entry app:c2", "field kind", "only one cluster entry"],
    );
}

#[test]
fn cluster_secret_file_and_max_peers_are_checked() {
    let cluster = |fields: &str| {
        with_extra(&entries(&format!(
            "  - name: cluster\n    kind: cluster\n    nats_urls: [nats://127.0.0.1:4222]\n{fields}"
        )))
        .load_err()
    };
    let errs = cluster("    secret_file: ''\n");
    let line = find_error(
        &errs,
        &["app/bad.yaml", "entry app:cluster", "field secret_file"],
    );
    assert!(line.contains("empty path"), "{line}");
    let errs = cluster("    secret_file: [a, b]\n");
    find_error(
        &errs,
        &["app/bad.yaml", "entry app:cluster", "field secret_file"],
    );
    for bad in ["0", "-1", "many", "[1]"] {
        let errs = cluster(&format!("    max_peers: {bad}\n"));
        let line = find_error(
            &errs,
            &["app/bad.yaml", "entry app:cluster", "field max_peers"],
        );
        assert!(
            line.contains("greater than zero") || line.contains("a positive integer"),
            "{bad}: {line}"
        );
    }
    // Both at once: every error is reported.
    let errs = cluster("    secret_file: 7\n    max_peers: 0\n");
    find_error(&errs, &["entry app:cluster", "field secret_file"]);
    find_error(&errs, &["entry app:cluster", "field max_peers"]);
}

#[test]
fn missing_or_empty_app_dir() {
    let app = App::new();
    let errs = app.load_err();
    find_error(&errs, &["no *.yaml or *.yml files found"]);
    let errs = wsrelay_config::AppConfig::load(&app.root().join("nope"), &crate::util::opts())
        .unwrap_err();
    find_error(&errs, &["cannot read"]);
}
