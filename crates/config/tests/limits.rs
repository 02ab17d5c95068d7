//! What the loader refuses to read (`wsrelay_config::limits`): files that are
//! not regular files, oversized files, deep flow nesting, symlink loops and
//! short admin tokens. Each case used to hang, crawl or repeat itself.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsrelay_config::limits::{
    MAX_DIR_DEPTH, MAX_SOURCE_BYTES, MAX_YAML_BYTES, MAX_YAML_FLOW_NESTING,
};
use wsrelay_config::{AppConfig, ConfigErrors};

use crate::fifo::mkfifo;
use crate::util::{find_error, opts, App, BASE};

/// A hang detector, not a timing test: the loads below take milliseconds.
const HANG: Duration = Duration::from_secs(10);

/// Loads `root` on another thread; panics if that takes longer than [`HANG`]
/// (a hung thread is left behind; the test binary exits anyway).
fn load_within_bound(root: &Path) -> Result<AppConfig, ConfigErrors> {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(AppConfig::load(&root, &opts()));
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("loading did not finish within {HANG:?}"))
}

fn load_err_within_bound(app: &App) -> ConfigErrors {
    match load_within_bound(app.root()) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errs) => errs,
    }
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn a_fifo_named_like_yaml_is_an_error_not_a_hang() {
    let app = App::new().file("base.yaml", BASE);
    mkfifo(&app.root().join("x.yaml"));
    let errs = load_err_within_bound(&app);
    let line = find_error(&errs, &["app/x.yaml", "not a regular file", "a FIFO"]);
    assert_eq!(errs.len(), 1, "{errs}");
    assert!(!line.contains("entry"), "{line}");
}

#[test]
fn a_fifo_as_file_source_or_static_directory_is_an_error_not_a_hang() {
    let app = App::new().file("base.yaml", BASE).file(
        "more.yaml",
        "namespace: app
entries:
  - name: piped
    kind: function.lua
    source: file://pipe.lua
  - name: site
    kind: http.static
    meta: { router: api }
    path: /site
    directory: pipe_dir
",
    );
    mkfifo(&app.root().join("pipe.lua"));
    mkfifo(&app.root().join("pipe_dir"));
    let errs = load_err_within_bound(&app);
    find_error(
        &errs,
        &[
            "entry app:piped",
            "field source",
            "pipe.lua",
            "not a regular file (it is a FIFO)",
        ],
    );
    find_error(
        &errs,
        &[
            "entry app:site",
            "field directory",
            "not an existing directory",
        ],
    );
}

#[test]
fn yaml_over_the_size_limit_is_refused_and_at_the_limit_loaded() {
    let limit = usize::try_from(MAX_YAML_BYTES).unwrap();
    let padded = |size: usize| {
        let mut text = format!("{BASE}#");
        text.push_str(&"x".repeat(size - text.len()));
        text
    };
    App::new().file("app.yaml", &padded(limit)).load_ok();

    let app = App::new().file("app.yaml", &padded(limit + 1));
    let errs = app.load_err();
    let line = find_error(&errs, &["app/app.yaml", "over the limit of 1 MiB"]);
    assert!(line.contains(&format!("{} bytes", limit + 1)), "{line}");

    // The same limit applies to YAML text given directly.
    let errs = AppConfig::from_sources(
        vec![(PathBuf::from("app.yaml"), padded(limit + 1))],
        app.root(),
        &opts(),
    )
    .unwrap_err();
    find_error(&errs, &["app/app.yaml", "over the limit of 1 MiB"]);
}

#[test]
fn a_file_source_over_the_size_limit_is_refused() {
    let big = "-".repeat(usize::try_from(MAX_SOURCE_BYTES).unwrap() + 1);
    let app = App::new()
        .file("base.yaml", BASE)
        .file(
            "more.yaml",
            "namespace: app\nentries:\n  - name: big\n    kind: function.lua\n    source: file://big.lua\n",
        )
        .file("big.lua", &big);
    let errs = app.load_err();
    find_error(
        &errs,
        &[
            "entry app:big",
            "field source",
            "big.lua",
            "over the limit of 4 MiB",
        ],
    );
}

#[test]
fn deep_flow_nesting_fails_fast_naming_file_line_and_column() {
    let deep = format!("namespace: app\nentries: {}", "[".repeat(100_000));
    let app = App::new().file("base.yaml", BASE).file("deep.yaml", &deep);
    let started = Instant::now();
    let errs = load_err_within_bound(&app);
    let elapsed = started.elapsed();
    let line = find_error(&errs, &["app/deep.yaml"]);
    let column = "entries: ".len() + MAX_YAML_FLOW_NESTING + 1;
    assert!(
        line.ends_with(&format!(
            "YAML nested deeper than 64 levels of [ ] and {{ }} at line 2 column {column}"
        )),
        "{line}"
    );
    assert!(elapsed < HANG, "took {elapsed:?}");
}

#[test]
fn flow_nesting_at_the_limit_loads() {
    let depth = MAX_YAML_FLOW_NESTING - 1; // plus the `input` list itself
    let input = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let yaml = format!(
        "namespace: app\nentries:\n  - name: svc\n    kind: process.service\n    process: worker\n    host: processes\n    input: [{input}]\n"
    );
    let config = App::new()
        .file("base.yaml", BASE)
        .file("svc.yaml", &yaml)
        .load_ok();
    assert_eq!(config.process_services.len(), 1);
}

#[test]
fn a_directory_symlink_loop_is_reported_once() {
    let app = App::new().file("base.yaml", BASE).dir("sub/deeper");
    symlink("../..", &app.root().join("sub/deeper/back"));
    let errs = load_err_within_bound(&app);
    assert_eq!(errs.len(), 1, "{errs}");
    let line = find_error(&errs, &["app/sub/deeper/back", "directory symlink loop"]);
    assert!(line.contains("leads back to"), "{line}");
}

#[test]
fn a_directory_reached_twice_is_loaded_once() {
    let app = App::new()
        .file("base.yaml", BASE)
        .file(
            "shared/extra.yaml",
            "namespace: shared\nentries:\n  - name: more\n    kind: process.host\n",
        )
        .dir("site");
    symlink("../shared", &app.root().join("site/shared"));
    let config = load_within_bound(app.root()).unwrap_or_else(|errs| panic!("{errs}"));
    let hosts: Vec<String> = config.hosts.iter().map(|h| h.id.to_string()).collect();
    assert_eq!(hosts, ["app:processes", "shared:more"]);
}

#[test]
fn directories_deeper_than_the_limit_are_reported() {
    let deep: PathBuf = (0..=MAX_DIR_DEPTH).map(|i| format!("d{i}")).collect();
    let app = App::new()
        .file("base.yaml", BASE)
        .file(deep.join("lost.yaml").to_str().unwrap(), "namespace: x\n");
    let errs = app.load_err();
    assert_eq!(errs.len(), 1, "{errs}");
    find_error(
        &errs,
        &[
            &format!("d{MAX_DIR_DEPTH}"),
            "directories nested deeper than 32 levels",
        ],
    );
}

#[test]
fn a_dangling_symlink_named_like_yaml_is_an_error() {
    let app = App::new().file("base.yaml", BASE);
    symlink("nowhere.yaml", &app.root().join("gone.yaml"));
    let errs = app.load_err();
    find_error(&errs, &["app/gone.yaml", "cannot read"]);
}

#[test]
fn a_short_literal_admin_token_is_refused_without_showing_it() {
    let ops = |token: &str| {
        App::new().file(
            "ops.yaml",
            &format!(
                "namespace: sys\nentries:\n  - name: ops\n    kind: wsrelay.ops\n    addr: \":0\"\n    admin: {{ enabled: true, token: \"{token}\" }}\n"
            ),
        )
    };
    let errs = ops("  fifteen-bytes!!  ").load_err();
    let line = find_error(
        &errs,
        &[
            "app/ops.yaml",
            "entry sys:ops",
            "field admin.token",
            "15 bytes long; at least 16",
        ],
    );
    assert!(!line.contains("fifteen"), "the token leaked: {line}");
    ops("sixteen-bytes-ok").load_ok();
}
