//! The `http_client` module on one worker thread: a request suspends only its process (the
//! worker runs another process meanwhile), the entry's policy decides about private
//! addresses, and an engine without a transport answers INTERNAL. The transport is
//! `wsrelay-http`'s client, as the app wires it; the server is a real socket on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wsrelay_http::client::{self, ClientOptions, ClientRequest};
use wsrelay_lua::{
    ChunkFuture, HttpClient, HttpClientPolicy, OutboundError, OutboundErrorKind, OutboundFuture,
    OutboundRequest, OutboundResponse, OutboundStream,
};
use wsrelay_process::Value;

use crate::support::*;

/// `wsrelay-http`'s client behind the engine's seam (what the app does too).
#[derive(Debug)]
struct Transport;

impl HttpClient for Transport {
    fn send(&self, r: OutboundRequest) -> OutboundFuture {
        Box::pin(async move {
            let options = ClientOptions {
                connect_timeout: r.connect_timeout,
                timeout: r.timeout,
                max_response_body: r.max_response_body,
                max_redirects: r.max_redirects,
                allow_private: r.allow_private,
                ca_pem: r.ca_pem,
                server_name: r.server_name,
            };
            let req = ClientRequest {
                method: r.method.parse().expect("a method"),
                url: r.url,
                headers: r.headers,
                body: r.body,
            };
            if r.stream {
                let res = client::send_streaming(req, &options)
                    .await
                    .map_err(outbound)?;
                return Ok(OutboundResponse {
                    status: res.status.as_u16(),
                    headers: Vec::new(),
                    body: bytes::Bytes::new(),
                    stream: Some(Box::new(Streamed(res.body))),
                    url: res.url,
                });
            }
            let res = client::send(req, &options).await.map_err(outbound)?;
            Ok(OutboundResponse {
                status: res.status.as_u16(),
                headers: Vec::new(),
                body: res.body,
                stream: None,
                url: res.url,
            })
        })
    }
}

fn outbound(e: client::ClientError) -> OutboundError {
    OutboundError {
        kind: if matches!(e, client::ClientError::Forbidden { .. }) {
            OutboundErrorKind::Forbidden
        } else {
            OutboundErrorKind::Network
        },
        message: e.to_string(),
    }
}

#[derive(Debug)]
struct Streamed(client::BodyStream);

impl OutboundStream for Streamed {
    fn next_chunk(&mut self) -> ChunkFuture<'_> {
        Box::pin(async move { self.0.chunk().await.map_err(outbound) })
    }
}

/// Registers `source` (method `main`) under an entry allowed to reach private addresses (the
/// test servers are on 127.0.0.1).
fn register_allowed(engine: &wsrelay_lua::LuaEngine, source: &str, modules: &[&str]) -> String {
    let entry = register(engine, source, "main", modules);
    engine.set_http_client_policy(
        &entry,
        HttpClientPolicy {
            allow_private: true,
            ..HttpClientPolicy::default()
        },
    );
    entry
}

/// Reads a request head from `s`: the bytes read up to and including its blank line, and
/// any that came after it; `None` if the client closed first.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((got, at + 4));
        }
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// A server that answers `held` only when `release` fires, after telling `arrived`.
async fn held_server(
    arrived: tokio::sync::mpsc::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await.expect("a request head");
        arrived.send(()).await.unwrap();
        release.await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld")
            .await
            .unwrap();
    });
    format!("http://{addr}/held")
}

const FETCH: &str = r#"
local function main(url)
  local client = require("http_client")
  local res, err = client.get(url)
  if not res then return "err " .. err:kind() end
  return res.body
end
return { main = main }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_suspends_only_its_process() {
    let (_node, engine) = one_worker();
    engine.set_http_client(Arc::new(Transport));
    let fetch = register_allowed(&engine, FETCH, &["http_client"]);
    let quick = register(
        &engine,
        "return { main = function() return 'quick' end }",
        "main",
        &[],
    );
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel(1);
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let url = held_server(arrived_tx, release_rx).await;
    let (me, _guard) = rust_process(engine.node());
    let waiting = spawn_monitored(&me, &fetch, vec![Value::from(url.as_str())]);
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("the request reached the server");
    // The only worker is free while the request waits: another process runs to its end.
    let other = spawn_monitored(&me, &quick, vec![]);
    let done = tokio::time::timeout(Duration::from_secs(5), exit_of(&me, &other))
        .await
        .expect("the worker ran another process during the request");
    assert_eq!(done.value, s("quick"));
    release.send(()).unwrap();
    assert_eq!(exit_of(&me, &waiting).await.value, s("held"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_policy_refuses_loopback_and_no_transport_is_internal() {
    let (_node, engine) = setup();
    let fetch = register(&engine, FETCH, "main", &["http_client"]);
    let (me, _guard) = rust_process(engine.node());
    let url = Value::from("http://127.0.0.1:9/");
    // No transport yet.
    let pid = spawn_monitored(&me, &fetch, vec![url.clone()]);
    assert_eq!(exit_of(&me, &pid).await.value, s("err INTERNAL"));
    // A transport, and the entry has no policy: loopback is refused before any connect.
    engine.set_http_client(Arc::new(Transport));
    let pid = spawn_monitored(&me, &fetch, vec![url]);
    assert_eq!(exit_of(&me, &pid).await.value, s("err PERMISSION_DENIED"));
}

const BATCH: &str = r#"
local function main(a, b)
  local client = require("http_client")
  local responses, errors = client.request_batch({
    { "GET", a },
    { "bogus method", b },
    { "post", b, { body = "x" } },
  })
  local none, err = client.request_batch("not a list")
  return {
    responses[1] and responses[1].body or ("err " .. tostring(errors[1])),
    errors[2] and errors[2]:kind() or "none",
    responses[3] and responses[3].body or ("err " .. tostring(errors[3])),
    responses[2] == nil and errors[1] == nil and errors[3] == nil,
    none == nil and err:kind(),
  }
end
return { main = main }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_its_requests_at_once_and_answers_in_order() {
    let (_node, engine) = setup();
    engine.set_http_client(Arc::new(Transport));
    let batch = register_allowed(&engine, BATCH, &["http_client"]);
    // Each server answers only once both requests have arrived: they run concurrently.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel(2);
    let (release_a, rx_a) = tokio::sync::oneshot::channel();
    let (release_b, rx_b) = tokio::sync::oneshot::channel();
    let a = held_server(arrived_tx.clone(), rx_a).await;
    let b = held_server(arrived_tx, rx_b).await;
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(
        &me,
        &batch,
        vec![Value::from(a.as_str()), Value::from(b.as_str())],
    );
    for _ in 0..2 {
        tokio::time::timeout(WAIT, arrived.recv())
            .await
            .expect("both requests reached their servers before either answered");
    }
    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    assert_eq!(
        exit_of(&me, &pid).await.value,
        Value::Array(vec![
            s("held"),
            s("INVALID"),
            s("held"),
            Value::Bool(true),
            s("INVALID"),
        ])
    );
}

/// A server that answers one request with `CT: <its Content-Type>\n` and its body.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (mut got, head_end) = read_head(&mut s).await.expect("a request head");
        let mut buf = vec![0u8; 4096];
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let length: usize = header("content-length:").parse().unwrap_or(0);
        while got.len() < head_end + length {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            got.extend_from_slice(&buf[..n]);
        }
        let mut answer = format!("CT: {}\n", header("content-type:")).into_bytes();
        answer.extend_from_slice(&got[head_end..head_end + length]);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        response.extend_from_slice(&answer);
        s.write_all(&response).await.unwrap();
    });
    format!("http://{addr}/upload")
}

const UPLOAD: &str = r#"
local function main(url)
  local client = require("http_client")
  -- Refused before anything is sent: a body with files, a reader instead of content.
  local none, err = client.post(url, { body = "x", files = { { name = "f", content = "c" } } })
  assert(none == nil and err:kind() == "INVALID", tostring(err))
  none, err = client.post(url, { files = { { name = "f", reader = {} } } })
  assert(none == nil and err:kind() == "INVALID" and tostring(err):find("reader"), tostring(err))
  local res = assert(client.post(url, {
    headers = { ["Content-Type"] = "text/plain" },
    form = { note = "hi" },
    files = {
      { name = "avatar", filename = 'a"b.png', content = "\0\1PNG" },
      { name = "doc", content = "plain text" },
    },
  }))
  local ct, body = res.body:match("^CT: ([^\n]*)\n(.*)$")
  local boundary = ct:match("^multipart/form%-data; boundary=(%x+)$")
  assert(boundary and #boundary == 32, ct)
  local want = table.concat({
    "--" .. boundary, 'content-disposition: form-data; name="note"', "", "hi",
    "--" .. boundary, 'content-disposition: form-data; name="avatar"; filename="a%22b.png"',
    "content-type: application/octet-stream", "", "\0\1PNG",
    "--" .. boundary, 'content-disposition: form-data; name="doc"', "", "plain text",
    "--" .. boundary .. "--", "",
  }, "\r\n")
  return body:gsub("Content%-Disposition", "content-disposition"):gsub("Content%-Type", "content-type") == want
end
return { main = main }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn files_go_as_multipart_form_data() {
    let (_node, engine) = setup();
    engine.set_http_client(Arc::new(Transport));
    let upload = register_allowed(&engine, UPLOAD, &["http_client"]);
    let url = echo_server().await;
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(&me, &upload, vec![Value::from(url.as_str())]);
    let result = exit_of(&me, &pid).await;
    assert_eq!(result.error, None);
    assert_eq!(result.value, Value::Bool(true));
}

const STREAM: &str = r#"
local http_client = require("http_client")
local function main(url, probe)
  local res, err = http_client.get(url .. "chunks", { stream = true })
  if not res then error(tostring(err)) end
  assert(res.status_code == 200 and res.body == "" and res.body_size == -1, "a streamed head")
  -- Read before the rest of the body exists: the server sends it only after this message.
  local first = res.stream:read(3)
  process.send(probe, "first", first)
  local rest = {}
  while true do
    local piece, e = res.stream:read()
    if e then error(tostring(e)) end
    if not piece then break end
    rest[#rest + 1] = piece
  end
  assert(res.stream:close() and res.stream:close(), "close twice")
  assert(res.stream:read() == nil, "nothing after close")

  -- A body that stops arriving: a read waits the request's timeout, then fails.
  local stalled = assert(http_client.get(url .. "stall", { stream = true, timeout = 0.3 }))
  assert(stalled.stream:read() == "xy", "the piece that arrived")
  local none, terr = stalled.stream:read()
  assert(none == nil and terr and terr:retryable(), "a stalled read times out: " .. tostring(terr))

  -- The body limit holds for a stream too, checked as it arrives.
  local big = assert(http_client.get(url .. "big", { stream = true, max_response_body = 4 }))
  local over, oerr = big.stream:read()
  assert(over == nil and oerr and oerr:kind() == "INTERNAL", "over the limit: " .. tostring(oerr))

  -- A batch does not stream; the option is a boolean.
  local responses, errors = http_client.request_batch({ { "GET", url .. "chunks", { stream = true } } })
  assert(responses[1] == nil and errors[1]:kind() == "INVALID", "a batch refuses stream")
  local bad, berr = http_client.get(url, { stream = "yes" })
  assert(bad == nil and berr:kind() == "INVALID", "stream is a boolean")
  local _, rerr = (assert(http_client.get(url .. "chunks2", { stream = true }))).stream:read(0)
  assert(rerr and rerr:kind() == "INVALID", "read(0) is refused")
  return table.concat(rest)
end
return { main = main }
"#;

/// Serves `/chunks`: a chunked body whose first chunk comes at once and the rest when
/// `release` fires; `/stall`: a first chunk, then nothing; `/big`: 10 bytes; else `z`.
async fn chunked_server(release: tokio::sync::oneshot::Receiver<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(tokio::sync::Mutex::new(Some(release)));
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let release = release.clone();
            tokio::spawn(async move {
                let Some((got, _)) = read_head(&mut s).await else {
                    return;
                };
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                let path = String::from_utf8_lossy(&got)
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                match path.as_str() {
                    "/chunks" => {
                        s.write_all(head).await.unwrap();
                        s.write_all(b"6\r\nabcdef\r\n").await.unwrap();
                        let release = release.lock().await.take().expect("one /chunks");
                        release.await.unwrap();
                        s.write_all(b"5\r\nghijk\r\n0\r\n\r\n").await.unwrap();
                    }
                    "/stall" => {
                        s.write_all(head).await.unwrap();
                        s.write_all(b"2\r\nxy\r\n").await.unwrap();
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    "/big" => {
                        s.write_all(head).await.unwrap();
                        s.write_all(b"a\r\n0123456789\r\n0\r\n\r\n").await.unwrap();
                    }
                    _ => {
                        s.write_all(head).await.unwrap();
                        s.write_all(b"1\r\nz\r\n0\r\n\r\n").await.unwrap();
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_body_is_read_as_it_arrives() {
    let (_node, engine) = setup();
    engine.set_http_client(Arc::new(Transport));
    let entry = register_allowed(&engine, STREAM, &["http_client", "process"]);
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let url = chunked_server(release_rx).await;
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(
        &me,
        &entry,
        vec![Value::from(url.as_str()), Value::from(me.pid().as_str())],
    );
    let first = recv(&me).await;
    assert_eq!(first.topic(), "first");
    assert_eq!(first.payload(), &s("abc"));
    release.send(()).unwrap();
    let result = exit_of(&me, &pid).await;
    assert_eq!(result.error, None);
    assert_eq!(result.value, s("defghijk"));
}
