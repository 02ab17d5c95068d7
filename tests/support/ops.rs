//! Helpers of the `ops_*` tests: a test app (Lua handler that spawns or names a target,
//! routers with different origin and limit options), raw HTTP, WebSocket clients and a
//! metrics scraper.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsrelay_app::{load_options, App, AppOptions, RunningApp};
use wsrelay_config::AppConfig;

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The test apps' room: registers the name it is given, if any, and echoes.
pub const ROOM: &str = r#"
local function run(name)
    if name then process.registry.register(name) end
    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        if msg:topic() == "ws.message" then
            local d = msg:payload():data()
            process.send(d.client_pid, "ws.send", { type = "text", data = d.data })
        end
    end
end
return { run = run }
"#;

/// The relay handler of the test apps: the target is `?target=` (a name, `echo` by
/// default, or `spawn`: a new room process), and `?id=`, when given, the connection's
/// metadata `id`.
pub const JOIN: &str = r#"
local http = require("http")
local json = require("json")
local function handler()
    local req = http.request()
    local res = http.response()
    local target = req:query("target") or "echo"
    if target == "spawn" then
        local pid, err = process.spawn("app:room", "app:processes")
        if not pid then
            res:set_status(500)
            res:write(tostring(err))
            return
        end
        target = pid
    end
    local relay = { target_pid = target }
    local id = req:query("id")
    if id then
        relay.metadata = { id = id }
    end
    res:set_header("X-WS-Relay", json.encode(relay))
end
return { handler = handler }
"#;

const BOOM: &str = r#"
local function handler() error("boom") end
return { handler = handler }
"#;

const OK: &str = r#"
local http = require("http")
local function handler() http.response():write("ok\n") end
return { handler = handler }
"#;

/// An extra entry for [`TestApp::start`]: the ops listener with the admin API on, behind the
/// token [`ADMIN_AUTH`] sends.
pub const ADMIN: &str = "  - name: ops
    kind: wsrelay.ops
    addr: \"127.0.0.1:0\"
    admin:
      enabled: true
      token: s3cret-token-0123456789
";

/// The request header that passes [`ADMIN`]'s token.
pub const ADMIN_AUTH: &str = "Authorization: Bearer s3cret-token-0123456789\r\n";

/// Relay routers of the test app: (prefix, post_options as YAML lines).
pub const ROUTERS: &[(&str, &str)] = &[
    ("ws", ""),
    (
        "strict",
        "wsrelay.allowed.origins: \"https://app.example.com\"",
    ),
    (
        "wild",
        "wsrelay.allowed.origins: \"https://*.example.com, http://localhost:3000\"",
    ),
    ("hostonly", "wsrelay.allowed.origins: \"app.example.com\""),
    ("any", "wsrelay.allowed.origins: \"*\""),
    (
        "limited",
        "wsrelay.max_connections: 2\n      wsrelay.upgrade_rate: \"off\"",
    ),
    (
        "slow",
        "wsrelay.upgrade_rate: \"1/m\"\n      wsrelay.upgrade_burst: 1",
    ),
];

/// The app's YAML, plus `extra` entries.
pub fn app_yaml(extra: &str) -> String {
    let mut yaml = String::from(
        "namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: \"127.0.0.1:0\"
  - name: processes
    kind: process.host
  - name: room
    kind: process.lua
    source: file://room.lua
    method: run
  - name: echo
    kind: process.service
    process: room
    host: processes
    input: [echo]
    lifecycle: { auto_start: true }
  - name: join
    kind: function.lua
    source: file://join.lua
    method: handler
    modules: [http, json]
  - name: boom
    kind: function.lua
    source: file://boom.lua
    method: handler
    modules: [http]
  - name: ok
    kind: function.lua
    source: file://ok.lua
    method: handler
    modules: [http]
  - name: api
    kind: http.router
    meta: { server: gateway }
    prefix: /api
  - name: boom_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /boom
    func: boom
  - name: ok_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /ok
    func: ok
",
    );
    for (name, options) in ROUTERS {
        yaml.push_str(&format!(
            "  - name: {name}
    kind: http.router
    meta: {{ server: gateway }}
    prefix: /{name}
    post_middleware: [websocket_relay]
"
        ));
        if !options.is_empty() {
            yaml.push_str(&format!("    post_options:\n      {options}\n"));
        }
        yaml.push_str(&format!(
            "  - name: {name}_join
    kind: http.endpoint
    meta: {{ router: {name} }}
    method: GET
    path: /
    func: join
"
        ));
    }
    yaml.push_str(extra);
    yaml
}

/// Writes the test app into a temporary directory.
pub fn app_dir(extra: &str) -> tempfile::TempDir {
    app_dir_with(extra, &[])
}

/// [`app_dir`] with more files (name, text) next to `app.yaml`.
pub fn app_dir_with(extra: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("app.yaml", app_yaml(extra)),
        ("room.lua", ROOM.to_owned()),
        ("join.lua", JOIN.to_owned()),
        ("boom.lua", BOOM.to_owned()),
        ("ok.lua", OK.to_owned()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A running test app and its address.
pub struct TestApp {
    pub app: RunningApp,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts the app (with the ops listener on a free port when `ops`); the `echo` service
    /// has registered by then.
    pub async fn start(extra: &str, ops: bool) -> TestApp {
        TestApp::start_in(app_dir(extra), ops).await
    }

    /// Starts the app with `extra` entries and more files, without the ops listener.
    pub async fn start_with_files(extra: &str, files: &[(&str, &str)]) -> TestApp {
        TestApp::start_in(app_dir_with(extra, files), false).await
    }

    /// Starts the app in `dir` (made by [`app_dir`] and perhaps edited).
    pub async fn start_in(dir: tempfile::TempDir, ops: bool) -> TestApp {
        let config = AppConfig::load(dir.path(), &load_options()).expect("valid test app");
        let options =
            AppOptions::default().with_ops_listen(ops.then(|| "127.0.0.1:0".parse().unwrap()));
        let app = App::start(config, options).await.expect("app starts");
        let addr = app.addrs()[0].1;
        // Services have come to their first wait before the listeners opened.
        assert!(
            app.node().lookup("echo").is_some(),
            "the echo service had not registered when the app started"
        );
        TestApp {
            app,
            addr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn ops(&self) -> SocketAddr {
        self.app.ops_addr().expect("ops listener")
    }

    /// Stops the app at the end of a test. The drain is short: clients a test still holds
    /// are not read, so they never answer the server's close, and a longer drain would only
    /// wait for them (draining itself is tested in `ops_metrics`).
    pub async fn stop(self) {
        self.app.shutdown(Duration::from_millis(500)).await;
    }
}

/// Upgrades with an optional `Origin`; `Err(status)` when refused.
pub async fn ws(url: &str, origin: Option<&str>) -> Result<Client, u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((client, _)) => Ok(client),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The code and reason of the close frame `client` receives next (pings, pongs and text
/// frames before it are skipped); panics after 10 s or on anything else.
pub async fn close_frame(client: &mut Client) -> (u16, String) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as T;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a close within 10s");
        match frame {
            Some(Ok(T::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(T::Ping(_) | T::Pong(_) | T::Text(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Sends raw bytes and returns what the server answered before closing (or within 5 s).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    // Read until the server closes, or shortly after a complete head (kept-alive answers).
    let mut buf = Vec::new();
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    deadline =
                        deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status code of a raw HTTP answer (0 when the server closed without one).
pub fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A header of a raw HTTP answer.
pub fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `GET path` with optional extra header lines; returns the raw answer.
pub async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

/// The body of a raw HTTP answer.
pub fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Scrapes `/metrics` and returns the value of the sample `series` (name with labels, as
/// printed), or `None`.
pub async fn metric(ops: SocketAddr, series: &str) -> Option<f64> {
    let answer = get(ops, "/metrics", "").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    body_of(&answer).lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Polls `metric` until it equals `want` (5 s at most).
pub async fn wait_metric(ops: SocketAddr, series: &str, want: f64) {
    let mut last = None;
    for _ in 0..250 {
        last = metric(ops, series).await;
        if last == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series}: want {want}, last {last:?}");
}
