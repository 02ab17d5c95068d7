//! The command line: `check` on good and bad apps, `run` and its signals,
//! exit statuses (SPEC §12).

mod support;

use support::{repo, run, AppDir, Server};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_accepts_the_example_apps() {
    for app in ["examples/chat", "examples/seed"] {
        let output = run(&["check", repo(app).to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{app}: {}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("ok: "), "{app}: {stdout}");
    }
}

const GOOD_HEAD: &str = "namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: \"127.0.0.1:0\"
  - name: api
    kind: http.router
    meta: { server: gateway }
    prefix: /api
";

/// Bad apps: (what is wrong, extra YAML entries, extra files, words the error must contain).
/// One bad app: what is wrong, extra YAML entries, extra files, words the error must contain.
type BadApp = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const BAD_APPS: &[BadApp] = &[
    (
        "endpoint names a missing function",
        "  - name: ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /x
    func: nope
",
        &[],
        &["app.yaml", "app:ep", "func"],
    ),
    (
        "Lua syntax error",
        "  - name: broken
    kind: function.lua
    source: file://broken.lua
    method: handler
",
        &[("broken.lua", "local function handler(\n  return {")],
        &["app.yaml", "app:broken", "broken.lua"],
    ),
    (
        "unknown middleware",
        "  - name: other
    kind: http.router
    meta: { server: gateway }
    prefix: /other
    post_middleware: [no_such_middleware]
",
        &[],
        &[
            "app.yaml",
            "app:other",
            "post_middleware",
            "no_such_middleware",
        ],
    ),
    (
        "bad relay option",
        "  - name: ws
    kind: http.router
    meta: { server: gateway }
    prefix: /ws
    post_middleware: [websocket_relay]
    post_options:
      wsrelay.max_message_size: lots
",
        &[],
        &[
            "app.yaml",
            "app:ws",
            "post_middleware",
            "wsrelay.max_message_size",
        ],
    ),
];

#[test]
fn check_rejects_bad_apps_naming_file_entry_and_field() {
    for (what, entries, files, words) in BAD_APPS {
        let mut dir = AppDir::new().file("app.yaml", &format!("{GOOD_HEAD}{entries}"));
        for (name, text) in *files {
            dir = dir.file(name, text);
        }
        let output = run(&["check", dir.path().to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{what}: {err}");
        for word in *words {
            assert!(err.contains(word), "{what}: {word:?} not in {err}");
        }
    }
}

#[test]
fn run_with_a_bad_app_exits_2_and_starts_nothing() {
    let dir = AppDir::new().file("app.yaml", &format!("{GOOD_HEAD}{}", BAD_APPS[0].1));
    let output = run(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("app:ep"));
}

#[test]
fn check_of_a_missing_directory_exits_2() {
    let output = run(&["check", "/nonexistent/wsrelay-app"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn run_serves_the_demo_and_stops_on_sigterm() {
    let server = Server::start(None);
    let (status, body) = support::http_get(server.addr, "/");
    assert_eq!(status, 200);
    assert!(body.contains("wsrelay chat"), "{body}");
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn run_serves_an_app_directory() {
    let server = Server::start(Some(&repo("examples/seed")));
    // Not an upgrade request: the relay answers 426 after the handler ran.
    let (status, _) = support::http_get(server.addr, "/ws/connect?user_id=1");
    assert_eq!(status, 426);
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn run_exits_1_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["run", "--listen", &addr]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(&addr), "{}", stderr(&output));
}

#[test]
fn version_and_help() {
    let output = run(&["--version"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    let output = run(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("Examples:") && help.contains("wsrelay check"),
        "{help}"
    );
}
