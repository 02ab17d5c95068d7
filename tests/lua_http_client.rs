//! The Lua `http_client` module against real servers on 127.0.0.1: plain HTTP and TLS with
//! the test CA, requests allowed by an entry's `http_client: {allow_private: true}` and
//! refused (PERMISSION_DENIED) by default, timeouts, body limits, redirects.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::ops::{body_of, get, status_of, TestApp};

/// A function.lua entry per policy (`fetch`: private addresses allowed, a 1 KiB request
/// body limit; `fetch_default`: no `http_client` field), one source for both: the `case`
/// query parameter picks the call, `base` is the test server's URL.
const ENTRIES: &str = r#"  - name: fetch
    kind: function.lua
    modules: [http, http_client]
    method: handler
    source: file://fetch.lua
    http_client:
      allow_private: true
      max_request_body: 1024
      max_timeout: 5s
  - name: fetch_default
    kind: function.lua
    modules: [http, http_client]
    method: handler
    source: file://fetch.lua
  - name: fetch_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /fetch
    func: fetch
  - name: fetch_default_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /fetch_default
    func: fetch_default
"#;

const FETCH: &str = r#"
local http = require("http")
local client = require("http_client")
local cases = {
  get = function(base) return client.get(base .. "/hello") end,
  post = function(base)
    return client.post(base .. "/echo", {
      body = "ping", headers = { ["X-Test"] = "yes" }, query = { q = "a b" },
    })
  end,
  form = function(base) return client.request("put", base .. "/echo", { form = { a = "1", b = "x y" } }) end,
  head = function(base) return client.head(base .. "/hello") end,
  localhost = function(base) return client.get((base:gsub("127.0.0.1", "localhost")) .. "/hello") end,
  slow = function(base) return client.get(base .. "/slow", { timeout = 0.3 }) end,
  big = function(base) return client.get(base .. "/big", { max_response_body = 1000 }) end,
  big_ok = function(base) return client.get(base .. "/big") end,
  big_request = function(base) return client.post(base .. "/echo", { body = string.rep("x", 1025) }) end,
  redirect = function(base) return client.get(base .. "/redirect") end,
  loop = function(base) return client.get(base .. "/loop") end,
  tls = function(base, ca) return client.get(base .. "/hello", { tls = { ca = ca } }) end,
  tls_untrusted = function(base) return client.get(base .. "/hello") end,
  tls_insecure = function(base) return client.get(base .. "/hello", { tls = { insecure_skip_verify = true } }) end,
  bad_url = function() return client.get("ftp://example.com/") end,
  bad_option = function(base) return client.get(base, { unix_socket = "/tmp/s" }) end,
  -- The body read from `stream` in pieces of at most 30,000 bytes (the count of pieces
  -- goes in front of it), or the error of the read that failed.
  streamed = function(base, _, limit)
    local r, err = client.get(base .. "/big", { stream = true, max_response_body = tonumber(limit) })
    if not r then return nil, err end
    local pieces = {}
    while true do
      local piece, rerr = r.stream:read(30000)
      if rerr then return nil, rerr end
      if not piece then break end
      assert(#piece > 0 and #piece <= 30000, "a piece of 1 to 30000 bytes")
      pieces[#pieces + 1] = piece
    end
    local body = table.concat(pieces)
    return { status_code = r.status_code, body = body, headers = {}, url = tostring(#pieces > 1) .. " " .. r.body_size }
  end,
  uri = function()
    local e = client.encode_uri("a b&c/é")
    local d = client.decode_uri(e)
    local _, err = client.decode_uri("%zz")
    return { status_code = 0, body = e .. " " .. d .. " " .. err:kind(), headers = {}, url = "" }
  end,
}
local function handler()
  local req, res = http.request(), http.response()
  local r, err = cases[req:query("case")](req:query("base"), req:query("ca"), req:query("limit"))
  if r == nil then
    res:write("err " .. err:kind() .. " " .. tostring(err:retryable()) .. " " .. err:message())
    return
  end
  res:write(r.status_code .. "|" .. #r.body .. "|" .. r.body .. "|" .. (r.headers["x-test"] or "") .. "|" .. r.url)
end
return { handler = handler }
"#;

/// Reads one request head and its `Content-Length` body (bounded: 64 KiB).
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 65536 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len.min(65536) {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// Serves one connection: `/hello`, `/echo` (method, target, `X-Test`, content type and
/// body), `/slow` (answers after 10 s), `/big` (100 KB), `/redirect` (to `/hello`) and
/// `/loop` (to itself).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let Some((head, body)) = read_request(&mut s).await else {
        return;
    };
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let path = target.split('?').next().unwrap_or("");
    let (status, extra, out): (&str, String, Vec<u8>) = match path {
        "/hello" => ("200 OK", "X-Test: 1\r\n".into(), b"hello".to_vec()),
        "/echo" => (
            "200 OK",
            String::new(),
            format!(
                "{method} {target} {} {} {}",
                header("x-test"),
                header("content-type"),
                String::from_utf8_lossy(&body)
            )
            .into_bytes(),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            ("200 OK", String::new(), b"late".to_vec())
        }
        "/big" => ("200 OK", String::new(), vec![b'b'; 100_000]),
        "/redirect" => ("302 Found", "Location: /hello\r\n".into(), Vec::new()),
        "/loop" => ("302 Found", "Location: /loop\r\n".into(), Vec::new()),
        _ => ("404 Not Found", String::new(), Vec::new()),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = s.write_all(answer.as_bytes()).await;
    if method != "HEAD" {
        let _ = s.write_all(&out).await;
    }
    let _ = s.shutdown().await;
}

/// A plain and a TLS server (the test certificate for 127.0.0.1 and localhost).
async fn servers() -> (SocketAddr, SocketAddr) {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = plain.accept().await {
            tokio::spawn(serve(s));
        }
    });
    let acceptor =
        tokio_rustls::TlsAcceptor::from(wsrelay_http::test_util::tls_files().load().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = tls.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(s) = acceptor.accept(s).await {
                    serve(s).await;
                }
            });
        }
    });
    addrs
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~:/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `case` on the entry behind `endpoint` against `base`; the handler's text.
async fn call(t: &TestApp, endpoint: &str, case: &str, base: &str) -> String {
    let ca = std::fs::read_to_string(wsrelay_http::test_util::fixture("ca.pem")).unwrap();
    let path = format!(
        "/api/{endpoint}?case={case}&base={}&ca={}",
        query_escape(base),
        query_escape(&ca)
    );
    let answer = get(t.addr, &path, "").await;
    assert_eq!(status_of(&answer), 200, "{case}: {answer}");
    body_of(&answer).to_owned()
}

async fn app() -> TestApp {
    TestApp::start_with_files(ENTRIES, &[("fetch.lua", FETCH)]).await
}

#[tokio::test]
async fn requests_reach_an_allowed_local_server() {
    let (plain, _) = servers().await;
    let t = app().await;
    let base = format!("http://{plain}");
    assert_eq!(
        call(&t, "fetch", "get", &base).await,
        format!("200|5|hello|1|{base}/hello")
    );
    let echo = "POST /echo?q=a%20b yes  ping";
    assert_eq!(
        call(&t, "fetch", "post", &base).await,
        format!("200|{}|{echo}||{base}/echo?q=a%20b", echo.len())
    );
    let echo = "PUT /echo  application/x-www-form-urlencoded a=1&b=x%20y";
    assert_eq!(
        call(&t, "fetch", "form", &base).await,
        format!("200|{}|{echo}||{base}/echo", echo.len())
    );
    assert_eq!(
        call(&t, "fetch", "head", &base).await,
        format!("200|0||1|{base}/hello")
    );
    assert_eq!(
        call(&t, "fetch", "redirect", &base).await,
        format!("200|5|hello|1|{base}/hello")
    );
    assert_eq!(
        call(&t, "fetch", "big_ok", &base).await.split('|').nth(1),
        Some("100000")
    );
    // The same body streamed: in several pieces, whole, `body_size` -1.
    let streamed = call(&t, "fetch", "streamed", &base).await;
    let fields: Vec<&str> = streamed.split('|').collect();
    assert_eq!(fields[0], "200", "{streamed:.80}");
    assert_eq!(fields[1], "100000");
    assert!(fields[2].bytes().all(|b| b == b'b'));
    assert_eq!(fields[4], "true -1");
    // Past `max_response_body`, a read fails (the limit holds for a stream too).
    let over = call(&t, "fetch", "streamed&limit=1000", &base).await;
    assert!(over.starts_with("err INTERNAL false"), "{over}");
    assert!(over.contains("over the limit of 1000 bytes"), "{over}");
    let uri = "a%20b%26c%2F%C3%A9 a b&c/é INVALID";
    assert_eq!(
        call(&t, "fetch", "uri", &base).await,
        format!("0|{}|{uri}||", uri.len())
    );
    t.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_entry_allows_them() {
    let (plain, _) = servers().await;
    let t = app().await;
    let base = format!("http://{plain}");
    for case in ["get", "localhost"] {
        let out = call(&t, "fetch_default", case, &base).await;
        assert!(
            out.starts_with("err PERMISSION_DENIED false"),
            "{case}: {out}"
        );
    }
    // The resolved address is checked, not the name: localhost is loopback too.
    assert!(call(&t, "fetch", "localhost", &base)
        .await
        .starts_with("200|5|hello"));
    t.stop().await;
}

#[tokio::test]
async fn timeouts_limits_and_redirect_loops_fail_wippy_style() {
    let (plain, _) = servers().await;
    let t = app().await;
    let base = format!("http://{plain}");
    let out = call(&t, "fetch", "slow", &base).await;
    assert!(out.starts_with("err INTERNAL true"), "{out}");
    assert!(out.contains("timed out"), "{out}");
    let out = call(&t, "fetch", "big", &base).await;
    assert!(out.starts_with("err INTERNAL false"), "{out}");
    assert!(out.contains("over the limit of 1000 bytes"), "{out}");
    let out = call(&t, "fetch", "big_request", &base).await;
    assert!(out.starts_with("err INVALID"), "{out}");
    assert!(out.contains("1024"), "{out}");
    let out = call(&t, "fetch", "loop", &base).await;
    assert!(out.starts_with("err INTERNAL false"), "{out}");
    assert!(out.contains("more than 10 redirects"), "{out}");
    for case in ["bad_url", "bad_option"] {
        let out = call(&t, "fetch", case, &base).await;
        assert!(out.starts_with("err INVALID"), "{case}: {out}");
    }
    t.stop().await;
}

#[tokio::test]
async fn tls_verifies_against_the_given_ca() {
    let (_, tls) = servers().await;
    let t = app().await;
    let base = format!("https://{tls}");
    assert_eq!(
        call(&t, "fetch", "tls", &base).await,
        format!("200|5|hello|1|{base}/hello")
    );
    // The test CA is not among the system's roots.
    let out = call(&t, "fetch", "tls_untrusted", &base).await;
    assert!(out.starts_with("err INTERNAL"), "{out}");
    assert!(out.contains("TLS handshake"), "{out}");
    let out = call(&t, "fetch", "tls_insecure", &base).await;
    assert!(out.starts_with("err PERMISSION_DENIED"), "{out}");
    t.stop().await;
}
