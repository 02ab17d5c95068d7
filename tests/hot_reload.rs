//! `wsrelay run --watch`: edits reload without dropping connections. An open connection keeps
//! its Lua process and that process's code; new connections and HTTP calls get the new code;
//! a broken edit (Lua syntax, YAML) is logged with its file and line and the running version
//! keeps serving; routes follow the YAML; `/metrics` counts each reload.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::ops::{self, body_of, get, metric, status_of};
use crate::support::{bin, relay_gateway_entries, AppDir, Server};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A hang detector for what a reload should bring about, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// The app: a relay gateway whose `connect.lua` names the target (`GET /`), the reply
/// process and the `/version` handler of `reply.lua`, and a router `limited` of one
/// connection.
fn app_yaml() -> String {
    format!(
        r#"namespace: app
entries:
{gateway}  - name: processes
    kind: process.host
{version}  - name: version_endpoint
    kind: http.endpoint
    meta: {{ router: root }}
    method: GET
    path: /version
    func: version
{reply}  - name: limited
    kind: http.router
    meta: {{ server: gateway }}
    prefix: /limited
    post_middleware: [websocket_relay]
    post_options:
      wsrelay.allowed.origins: "*"
      wsrelay.max_connections: "1"
  - name: limited_endpoint
    kind: http.endpoint
    meta: {{ router: limited }}
    method: GET
    path: /
    func: connect
"#,
        gateway = relay_gateway_entries(0),
        version = reply_entry("version", "function.lua", "version"),
        reply = reply_entry("reply", "process.lua", "run"),
    )
}

/// An entry of `kind` that runs `method` of `reply.lua`.
fn reply_entry(name: &str, kind: &str, method: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    source: file://reply.lua\n    method: {method}\n    modules: [http]\n"
    )
}

/// An endpoint the later edit adds: a new route to an existing function.
const EXTRA_ENDPOINT: &str = r#"  - name: again_endpoint
    kind: http.endpoint
    meta: { router: root }
    method: GET
    path: /again
    func: version
"#;

const CONNECT: &str = r#"local http = require("http")
local json = require("json")

local function handler()
    local pid = assert(process.spawn("app:reply", "app:processes"))
    http.response():set_header("X-WS-Relay", json.encode({ target_pid = pid }))
end

return { handler = handler }
"#;

/// The connection's target (`run`) and the HTTP handler (`version`), one file: both answer
/// with `VERSION`.
fn reply(version: &str) -> String {
    format!(
        r#"local http = require("http")
local VERSION = "{version}"

local function run()
    local inbox = process.inbox()
    for msg in function() return inbox:receive() end do
        if msg:topic() == "ws.leave" then return end
        if msg:topic() == "ws.message" then
            local client = msg:payload():data().client_pid
            process.send(client, "ws.send", {{ type = "text", data = VERSION }})
        end
    end
end

local function version()
    http.response():write(VERSION)
end

return {{ run = run, version = version }}
"#
    )
}

/// Writes `text` to `dir/name` the way an editor saves: a temporary file renamed over it.
fn save(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.swp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(temp, dir.join(name)).unwrap();
}

/// Sends one message and returns the text that comes back.
async fn ask(client: &mut ops::Client) -> String {
    client.send(Message::text("which?")).await.expect("send");
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("no error");
        match frame {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The version a new connection's process answers with.
async fn new_connection(server: &Server) -> String {
    let mut client = ops::ws(&format!("ws://{}/", server.addr), None)
        .await
        .expect("upgrade");
    let answer = ask(&mut client).await;
    let _ = client.close(None).await;
    answer
}

async fn http_body(server: &Server, path: &str) -> (u16, String) {
    let answer = get(server.addr, path, "").await;
    (status_of(&answer), body_of(&answer).to_owned())
}

/// Polls until `GET /version` answers `want`.
async fn wait_version(server: &Server, want: &str) {
    let started = Instant::now();
    loop {
        let (status, body) = http_body(server, "/version").await;
        if status == 200 && body == want {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "GET /version: want {want}, last {status} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the child's stderr contains every one of `words` on one line; returns it.
async fn wait_log(log: &Arc<Mutex<String>>, words: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let found = log
            .lock()
            .unwrap()
            .lines()
            .find(|line| words.iter().all(|word| line.contains(word)))
            .map(str::to_owned);
        if let Some(line) = found {
            return line;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no log line with {words:?} in:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reloads(server: &Server, result: &str) -> f64 {
    let series = format!(r#"wsrelay_reloads_total{{result="{result}"}}"#);
    metric(server.ops.expect("ops listener"), &series)
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reload_without_dropping_connections_and_broken_edits_keep_the_old_version() {
    let app = AppDir::new()
        .file("app.yaml", &app_yaml())
        .file("connect.lua", CONNECT)
        .file("reply.lua", &reply("v1"));
    let mut cmd = bin();
    cmd.args([
        "run",
        "--watch",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .arg(app.path())
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped());
    let mut server = Server::spawn_with_ops(cmd);
    let log = server.stderr_log();
    wait_log(&log, &["watching for Lua and YAML changes"]).await;

    let mut old = ops::ws(&format!("ws://{}/", server.addr), None)
        .await
        .expect("upgrade");
    assert_eq!(ask(&mut old).await, "v1");
    // The one connection `/limited` admits, held across every reload.
    let limited = format!("ws://{}/limited", server.addr);
    let mut held = ops::ws(&limited, None).await.expect("upgrade");
    assert_eq!(ask(&mut held).await, "v1");
    assert_eq!(http_body(&server, "/version").await, (200, "v1".to_owned()));

    // A good edit: new calls and new connections get v2, the open connection keeps v1.
    save(app.path(), "reply.lua", &reply("v2"));
    wait_version(&server, "v2").await;
    assert_eq!(new_connection(&server).await, "v2");
    assert_eq!(
        ask(&mut old).await,
        "v1",
        "a running process keeps its code"
    );
    wait_log(&log, &["reloaded", "app:reply", "app:version"]).await;
    assert!(reloads(&server, "ok").await >= 1.0);

    // A syntax error: logged with file and line, v2 keeps serving.
    save(
        app.path(),
        "reply.lua",
        "local VERSION = \"v3\"\nlocal broken = = 1\nreturn {}\n",
    );
    let line = wait_log(&log, &["reload failed", "reply.lua:2:"]).await;
    assert!(
        line.contains("app:reply") || line.contains("app:version"),
        "{line}"
    );
    assert_eq!(http_body(&server, "/version").await, (200, "v2".to_owned()));
    assert_eq!(new_connection(&server).await, "v2");
    assert_eq!(ask(&mut old).await, "v1");
    assert!(reloads(&server, "error").await >= 1.0);

    // Bad YAML (the Lua fixed after it, so no reload sees the fix alone): logged with the
    // file, v2 keeps serving.
    save(
        app.path(),
        "app.yaml",
        &format!("{}  - name: [broken\n", app_yaml()),
    );
    save(app.path(), "reply.lua", &reply("v3"));
    wait_log(
        &log,
        &["reload failed", "app.yaml: YAML syntax error at line"],
    )
    .await;
    assert_eq!(http_body(&server, "/version").await, (200, "v2".to_owned()));
    assert_eq!(new_connection(&server).await, "v2");
    assert!(reloads(&server, "error").await >= 2.0);

    // The YAML repaired, with a new route: both edits apply, the old connection lives on.
    save(
        app.path(),
        "app.yaml",
        &format!("{}{EXTRA_ENDPOINT}", app_yaml()),
    );
    wait_version(&server, "v3").await;
    assert_eq!(http_body(&server, "/again").await, (200, "v3".to_owned()));
    assert_eq!(new_connection(&server).await, "v3");
    assert_eq!(ask(&mut old).await, "v1");
    // The routing tables were rebuilt; the unchanged router kept its middleware, so the held
    // connection still fills it.
    assert_eq!(ops::ws(&limited, None).await.err(), Some(503));
    assert_eq!(ask(&mut held).await, "v1");

    // A listener change is reported, not applied: the server keeps its address.
    save(
        app.path(),
        "app.yaml",
        &format!("{}{EXTRA_ENDPOINT}", app_yaml()).replace("127.0.0.1:0", "127.0.0.1:1"),
    );
    wait_log(&log, &["needs a restart: app:gateway.addr"]).await;
    assert_eq!(http_body(&server, "/again").await, (200, "v3".to_owned()));

    old.close(None).await.expect("close");
    held.close(None).await.expect("close");
    assert_eq!(server.terminate().code(), Some(0));
}
