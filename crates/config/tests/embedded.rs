//! Apps compiled into the binary: YAML text plus an in-memory file map.

use std::path::{Path, PathBuf};

use wsrelay_config::{AppConfig, MemoryFiles, SourceOrigin};

use crate::util::{find_error, opts};

const DEMO: &str = r#"
namespace: demo
entries:
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:8080"
  - name: handler
    kind: function.lua
    source: file://lua/handler.lua
    method: handler
  - name: site
    kind: http.static
    meta: {server: gateway}
    path: /
    directory: static
"#;

#[test]
fn embedded_app_reads_memory_files() {
    let files = MemoryFiles::new()
        .with_file(
            "demo/lua/handler.lua",
            "return { handler = function() end }",
        )
        .with_file("demo/static/index.html", "<h1>demo</h1>");
    let app = AppConfig::from_sources_with(
        vec![(PathBuf::from("demo.yaml"), DEMO.to_owned())],
        Path::new("demo"),
        &files,
        &opts(),
    )
    .unwrap_or_else(|errs| panic!("{errs}"));
    let handler = &app.functions[0];
    assert_eq!(handler.source, "return { handler = function() end }");
    assert_eq!(
        handler.origin,
        SourceOrigin::File(PathBuf::from("demo/lua/handler.lua"))
    );
    assert_eq!(app.statics[0].directory, Path::new("demo/static"));
    assert_eq!(app.services[0].file, Path::new("demo/demo.yaml"));
}

#[test]
fn embedded_app_reports_missing_files() {
    let errs = AppConfig::from_sources_with(
        vec![(PathBuf::from("demo.yaml"), DEMO.to_owned())],
        Path::new("demo"),
        &MemoryFiles::new(),
        &opts(),
    )
    .unwrap_err();
    find_error(
        &errs,
        &[
            "demo/demo.yaml",
            "entry demo:handler",
            "field source",
            "cannot read",
        ],
    );
    find_error(
        &errs,
        &["demo/demo.yaml", "entry demo:site", "field directory"],
    );
}
