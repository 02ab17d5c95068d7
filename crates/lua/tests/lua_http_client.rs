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
    HttpClient, HttpClientPolicy, OutboundError, OutboundErrorKind, OutboundFuture,
    OutboundRequest, OutboundResponse,
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
            let res = client::send(req, &options)
                .await
                .map_err(|e| OutboundError {
                    kind: if matches!(e, client::ClientError::Forbidden { .. }) {
                        OutboundErrorKind::Forbidden
                    } else {
                        OutboundErrorKind::Network
                    },
                    message: e.to_string(),
                })?;
            Ok(OutboundResponse {
                status: res.status.as_u16(),
                headers: Vec::new(),
                body: res.body,
                url: res.url,
            })
        })
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
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            got.extend_from_slice(&buf[..n]);
        }
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
    let fetch = register(&engine, FETCH, "main", &["http_client"]);
    engine.set_http_client_policy(
        &fetch,
        HttpClientPolicy {
            allow_private: true,
            ..HttpClientPolicy::default()
        },
    );
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
    let batch = register(&engine, BATCH, "main", &["http_client"]);
    engine.set_http_client_policy(
        &batch,
        HttpClientPolicy {
            allow_private: true,
            ..HttpClientPolicy::default()
        },
    );
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
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            got.extend_from_slice(&buf[..n]);
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
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
    let upload = register(&engine, UPLOAD, "main", &["http_client"]);
    engine.set_http_client_policy(
        &upload,
        HttpClientPolicy {
            allow_private: true,
            ..HttpClientPolicy::default()
        },
    );
    let url = echo_server().await;
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(&me, &upload, vec![Value::from(url.as_str())]);
    let result = exit_of(&me, &pid).await;
    assert_eq!(result.error, None);
    assert_eq!(result.value, Value::Bool(true));
}
