//! The command line: `check` on good and bad apps, `run` and its signals,
//! exit statuses (docs/spec.md §12).

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::fifo::mkfifo;
use crate::support::{bin, output_within, repo, run, AppDir, Server};

/// A hang detector for `wsrelay check` of broken apps, which takes milliseconds.
const HANG: Duration = Duration::from_secs(10);

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

/// `wsrelay check DIR` with a hang detector; returns the exit code and stderr.
fn check_within_bound(dir: &Path) -> (Option<i32>, String, Duration) {
    let mut cmd = bin();
    cmd.arg("check").arg(dir);
    let (output, elapsed) = output_within(cmd, HANG);
    (output.status.code(), stderr(&output), elapsed)
}

#[test]
fn check_refuses_a_fifo_named_like_yaml_instead_of_hanging() {
    let dir = AppDir::new().file("app.yaml", GOOD_HEAD);
    mkfifo(&dir.path().join("x.yaml"));
    let (code, err, _) = check_within_bound(dir.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("x.yaml") && err.contains("not a regular file (it is a FIFO)"),
        "{err}"
    );
}

#[test]
fn check_fails_fast_on_deeply_nested_yaml_naming_file_and_line() {
    let deep = format!("namespace: app\nentries: {}", "[".repeat(100_000));
    let dir = AppDir::new()
        .file("app.yaml", GOOD_HEAD)
        .file("deep.yaml", &deep);
    let (code, err, elapsed) = check_within_bound(dir.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("deep.yaml"), "{err}");
    assert!(err.contains("nested deeper than 64 levels"), "{err}");
    assert!(err.contains("at line 2 column 74"), "{err}");
    eprintln!("check of 100,000 unclosed [ took {elapsed:?}");
}

#[test]
fn check_reports_a_directory_symlink_loop_on_one_line() {
    let dir = AppDir::new()
        .file("app.yaml", GOOD_HEAD)
        .file("sub/readme.txt", "");
    std::os::unix::fs::symlink("..", dir.path().join("sub/up")).expect("symlink");
    let (code, err, _) = check_within_bound(dir.path());
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("sub/up") && err.contains("directory symlink loop"),
        "{err}"
    );
}

/// A `wsrelay.ops` entry with the admin API on; `token` is the YAML of the token source.
fn ops_app(token: &str) -> AppDir {
    AppDir::new().file("app.yaml", GOOD_HEAD).file(
        "ops.yaml",
        &format!(
            "namespace: sys
entries:
  - name: ops
    kind: wsrelay.ops
    addr: \"127.0.0.1:0\"
    admin: {{ enabled: true, {token} }}
"
        ),
    )
}

#[test]
fn check_refuses_a_short_literal_admin_token() {
    let dir = ops_app("token: \"fifteen-bytes!!\"");
    let (code, err, _) = check_within_bound(dir.path());
    assert_eq!(code, Some(2), "{err}");
    for word in [
        "ops.yaml",
        "entry sys:ops",
        "field admin.token",
        "15 bytes long",
    ] {
        assert!(err.contains(word), "{word:?} not in {err}");
    }
    assert!(!err.contains("fifteen"), "the token leaked: {err}");
}

#[test]
fn check_reads_the_cluster_secret_file_unless_the_variable_names_another() {
    let dir = AppDir::new()
        .file(
            "app.yaml",
            "namespace: app
entries:
  - name: cluster
    kind: cluster
    nats_urls: [\"nats://127.0.0.1:4222\"]
    secret_file: cluster.secret
    max_peers: 8
",
        )
        .file("cluster.secret", "too-short\n");
    let (code, err, _) = check_within_bound(dir.path());
    assert_eq!(code, Some(2), "{err}");
    for word in [
        "app.yaml",
        "entry app:cluster",
        "field secret_file",
        "9 bytes; a secret needs at least 16",
    ] {
        assert!(err.contains(word), "{word:?} not in {err}");
    }
    assert!(!err.contains("too-short"), "the secret leaked: {err}");
    // The variable wins: the entry's file is not read.
    let good = dir.path().join("good.secret");
    std::fs::write(&good, "a secret of more than sixteen bytes\n").unwrap();
    let mut cmd = bin();
    cmd.env("WSRELAY_CLUSTER_SECRET_FILE", &good)
        .arg("check")
        .arg(dir.path());
    let (output, _) = output_within(cmd, HANG);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn run_refuses_a_short_admin_token_from_the_environment() {
    const VAR: &str = "WSRELAY_CLI_TEST_ADMIN_TOKEN";
    let dir = ops_app(&format!("token_env: {VAR}"));
    let mut cmd = bin();
    cmd.env(VAR, "fifteen-bytes!!")
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(dir.path());
    let (output, _) = output_within(cmd, HANG);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    for word in [
        "ops.yaml",
        "entry sys:ops",
        "field admin.token_env",
        VAR,
        "15 bytes long; at least 16",
    ] {
        assert!(err.contains(word), "{word:?} not in {err}");
    }
    assert!(!err.contains("fifteen"), "the token leaked: {err}");
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "it served"
    );

    // Sixteen bytes are enough.
    let server = Server::start_with_env(Some(dir.path()), &[(VAR, "sixteen-bytes-ok")]);
    assert_eq!(server.terminate().code(), Some(0));
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
fn sigterm_right_after_the_serving_line_stops_gracefully() {
    // The signal handlers must be in place before the app says it serves: a
    // supervisor that sends SIGTERM as soon as it reads that line must get a
    // graceful stop (exit 0), not the default action (killed by the signal).
    // Several at once: the race shows when the machine is busy.
    let stops: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                let server = Server::start(Some(&repo("examples/echo")));
                server.terminate().code()
            })
        })
        .collect();
    for stop in stops {
        assert_eq!(stop.join().unwrap(), Some(0));
    }
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

#[test]
fn version_prints_build_information() {
    let output = run(&["version"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(concat!("wsrelay ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for key in ["commit: ", "target: ", "profile: "] {
        let value = lines
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key:?} in {text}"));
        assert!(!value.is_empty(), "{text}");
    }
    // The target is the triple this test was built for (the same build).
    assert!(text.contains(std::env::consts::ARCH), "{text}");
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef wsrelay"),
        ("fish", "complete -c wsrelay"),
    ] {
        let output = run(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        // Subcommands are completed.
        assert!(
            script.contains("check") && script.contains("run"),
            "{shell}"
        );
    }
    assert_eq!(run(&["completions", "nushell-2000"]).status.code(), Some(2));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut cmd = bin();
    cmd.env("RUST_LOG", "info")
        .args(["run", "--json", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped());
    let server = Server::spawn(cmd);
    let output = server.terminate_with_output();
    let logs = String::from_utf8_lossy(&output);
    let mut messages = Vec::new();
    for line in logs.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string(), "{line}");
        messages.push(object["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(messages.iter().any(|m| m == "stopped"), "{logs}");
}

#[test]
fn run_prints_the_dashboard_url_when_admin_is_on() {
    const VAR: &str = "WSRELAY_CLI_TEST_DASHBOARD_TOKEN";
    let dir = ops_app(&format!("token_env: {VAR}"));
    let mut cmd = bin();
    cmd.env(VAR, "a-token-long-enough-0123")
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped());
    /// Kills the child if the test fails before it stops it.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Child(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let dashboard = loop {
        let line = lines.next().expect("a dashboard line").unwrap();
        seen.push(line.clone());
        if let Some(url) = line.strip_prefix("wsrelay: dashboard ") {
            break url.split(' ').next().unwrap().to_owned();
        }
    };
    let ops = seen
        .iter()
        .find_map(|l| l.split("ops serving http://").nth(1))
        .expect("the ops line comes first");
    let ops: std::net::SocketAddr = ops.trim_end_matches("/metrics").parse().unwrap();
    assert_eq!(dashboard, format!("http://{ops}/dashboard"));
    let (status, body) = support::http_get(ops, "/dashboard");
    assert_eq!(status, 200);
    assert!(body.contains(r#"name="token""#), "{body}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

/// A server entry with `fields` (YAML lines indented four spaces), on a port of its own.
fn service_app(fields: &str) -> AppDir {
    AppDir::new().file(
        "app.yaml",
        &format!(
            "namespace: app\nentries:\n  - name: gateway\n    kind: http.service\n    addr: \"127.0.0.1:0\"\n{fields}"
        ),
    )
}

#[test]
fn strict_makes_unknown_fields_errors_for_check_and_run() {
    // `tsl:` (a typo, or `tls:` on an older build) would silently serve plain HTTP.
    let dir = service_app("    tsl: { cert: a.pem, key: b.pem }\n");
    let path = dir.path().to_str().unwrap();
    let output = run(&["check", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for command in ["check", "run"] {
        let output = run(&[command, "--strict", path]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {err}");
        for word in ["app.yaml", "app:gateway", "tsl", "unknown field"] {
            assert!(err.contains(word), "{command}: {word:?} not in {err}");
        }
    }
}

#[test]
fn check_refuses_unusable_tls_files_naming_entry_field_and_file() {
    let fixtures = repo("tests/fixtures/tls");
    let fixture = |name: &str| fixtures.join(name).display().to_string();
    let cases = [
        (
            "a missing certificate",
            (fixture("nope.pem"), fixture("server.key")),
            &["tls.cert", "nope.pem"],
        ),
        (
            "a key that does not fit the certificate",
            (fixture("server.pem"), fixture("server2.key")),
            &["tls.key", "server2.key"],
        ),
    ];
    for (what, (cert, key), words) in cases {
        let dir = service_app(&format!(
            "    tls:\n      cert: \"{cert}\"\n      key: \"{key}\"\n"
        ));
        let output = run(&["check", "--strict", dir.path().to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{what}: {err}");
        for word in words.iter().chain(&["app:gateway", "app.yaml"]) {
            assert!(err.contains(word), "{what}: {word:?} not in {err}");
        }
    }
}

#[test]
fn run_serves_https_and_reloads_certificates_on_sighup() {
    use wsrelay_http::test_util::{fixture, fixture_certificate, presented_certificate};
    let certs = tempfile::tempdir().unwrap();
    let install = |name: &str| {
        std::fs::copy(
            fixture(&format!("{name}.pem")),
            certs.path().join("cert.pem"),
        )
        .unwrap();
        std::fs::copy(
            fixture(&format!("{name}.key")),
            certs.path().join("key.pem"),
        )
        .unwrap();
    };
    install("server");
    let dir = service_app(&format!(
        "    tls:\n      cert: \"{}\"\n      key: \"{}\"\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    ));
    let log = certs.path().join("wsrelay.log");
    let mut cmd = bin();
    cmd.env("RUST_LOG", "info")
        .args(["run", "--strict"])
        .arg(dir.path())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut server = Server::spawn(cmd);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let presented = || rt.block_on(presented_certificate(server.addr));
    assert_eq!(presented(), fixture_certificate("server.pem"));

    install("server2");
    server.signal("HUP");
    // SIGHUP reloads at once (the file watcher would within 10 s); the bound is a hang
    // detector: what must hold is that the server lives on and shows the new certificate.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while presented() != fixture_certificate("server2.pem") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload within 20 s"
        );
        #[allow(clippy::disallowed_methods)] // a synchronous test, not a runtime worker
        std::thread::sleep(Duration::from_millis(20));
    }
    // The certificate may already be new by the TLS file watcher's own look (its first
    // tick can come right after the files change), before the signal is handled: wait for
    // the signal's line too.
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("SIGHUP: reloading TLS certificates") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SIGHUP line: {text}"
        );
        #[allow(clippy::disallowed_methods)] // a synchronous test, not a runtime worker
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.is_running(), "SIGHUP must not end the server");
    assert_eq!(server.terminate().code(), Some(0));
}

/// A `store.memory` entry is a store Lua code can open by its id, with its `max_size`.
#[test]
fn run_registers_memory_stores_from_their_entries() {
    let dir = AppDir::new()
        .file(
            "app.yaml",
            &format!(
                "{GOOD_HEAD}  - name: tickets
    kind: store.memory
    max_size: 1
  - name: ticket
    kind: function.lua
    source: file://ticket.lua
    modules: [http, store]
  - name: ep
    kind: http.endpoint
    meta: {{ router: api }}
    method: GET
    path: /ticket
    func: ticket
"
            ),
        )
        .file(
            "ticket.lua",
            r#"
local http, store = require("http"), require("store")
return function()
    local req, res = http.request(), http.response()
    local s = assert(store.get("app:tickets"))
    local _, err = s:put(req:query("id"), true, { only_if_absent = true })
    res:write(err and err:kind() or "stored")
end
"#,
        );
    let server = Server::start(Some(dir.path()));
    let answers: Vec<String> = ["a", "a", "b"]
        .iter()
        .map(|id| support::http_get(server.addr, &format!("/api/ticket?id={id}")))
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body
        })
        .collect();
    // once only; then full at max_size 1
    assert_eq!(answers, ["stored", "ALREADY_EXISTS", "UNAVAILABLE"]);
    assert_eq!(server.terminate().code(), Some(0));
}
