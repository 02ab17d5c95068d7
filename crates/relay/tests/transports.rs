//! docs/spec.md §13: the relay over TLS (`wss://`), over HTTP/2 (RFC 8441 extended CONNECT,
//! many WebSockets on one connection) and behind trusted proxies (per-IP limits and
//! `ws.join` use the client's address), with the same semantics as over `ws://`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as T;
use tokio_tungstenite::WebSocketStream;
use wsrelay_http::test_util::{
    fixture, fixture_certificate, presented_certificate, tls_connect, tls_connector, tls_files,
};
use wsrelay_http::{TlsFiles, TrustedProxies};
use wsrelay_process::{Context, Map, Value};

use crate::support::*;

/// Runs `target` as an echo: every `ws.message` goes back to its client as `ws.send`. The
/// `ws.join` payloads are forwarded to the returned channel.
fn echo(target: Context) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (joins, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = target.recv().await;
            let payload = msg.payload().clone().into_plain();
            if msg.topic() == "ws.join" {
                let _ = joins.send(payload);
                continue;
            }
            if msg.topic() != "ws.message" {
                continue;
            }
            let client = payload.get("client_pid").and_then(Value::as_str).unwrap();
            let data = payload.get("data").and_then(Value::as_str).unwrap_or("");
            let reply = Map::new().with("type", "text").with("data", data);
            send(&target, &client.parse().unwrap(), "ws.send", reply);
        }
    });
    rx
}

/// Sends `text` and expects it back, within 10 s.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, text: &str) {
    ws.send(T::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(T::Ping(_) | T::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("an echo within 10 s");
    assert_eq!(reply.unwrap().unwrap(), T::text(text));
}

/// Closes `ws` from the client side and reads until the server ends the connection, so
/// that the gateway's shutdown finds nothing left to drain.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    ws.close(None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await
    .expect("the server ends a closed connection within 10 s");
}

async fn wss_connect(
    h: &Harness,
) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = tls_connect(h.addr, &tls_connector(&[b"http/1.1"], false))
        .await
        .unwrap();
    let request = format!("wss://localhost:{}/ws", h.addr.port());
    let (ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn wss_relays_like_ws() {
    let h = Harness::builder().tls(tls_files()).start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut joins = echo(target);
    let mut ws = wss_connect(&h).await;
    let join = joins.recv().await.unwrap();
    assert_eq!(
        join.get("remote_addr").and_then(Value::as_str),
        Some("127.0.0.1")
    );
    round_trip(&mut ws, "over TLS").await;
    close(ws).await;
    h.stop().await;
}

/// An RFC 8441 extended CONNECT on `sender`, as a WebSocket client.
async fn h2_websocket(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    authority: &str,
    origin: Option<&str>,
) -> Result<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, http::StatusCode> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{authority}/ws"))
        .header("sec-websocket-version", "13");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let mut req = req.body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = sender.send_request(req).await.unwrap();
    if res.status() != http::StatusCode::OK {
        return Err(res.status());
    }
    let upgraded = hyper::upgrade::on(&mut res).await.unwrap();
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

#[tokio::test]
async fn rfc8441_websockets_share_one_http2_connection() {
    let h = Harness::builder()
        .server(|config| config.h2c = true)
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut joins = echo(target);
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let authority = h.addr.to_string();
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(h2_websocket(&mut sender, &authority, None).await.unwrap());
    }
    let mut pids = Vec::new();
    for _ in 0..4 {
        let join = joins.recv().await.unwrap();
        pids.push(
            join.get("client_pid")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned(),
        );
    }
    pids.sort();
    pids.dedup();
    assert_eq!(
        pids.len(),
        4,
        "each stream is a connection process of its own"
    );
    for (i, ws) in sockets.iter_mut().enumerate() {
        round_trip(ws, &format!("stream {i}")).await;
    }
    // A message larger than the default stream window (64 KiB) goes through flow control.
    let big = "x".repeat(200 * 1024);
    round_trip(&mut sockets[0], &big).await;
    // Origins are checked as for HTTP/1.1: the authority is the same origin, others are not.
    let same = format!("http://{authority}");
    sockets.push(
        h2_websocket(&mut sender, &authority, Some(&same))
            .await
            .expect("same origin accepted"),
    );
    let refused = h2_websocket(&mut sender, &authority, Some("http://evil.example")).await;
    assert_eq!(refused.err(), Some(http::StatusCode::FORBIDDEN));
    for ws in sockets {
        close(ws).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn rfc8441_over_tls_by_alpn() {
    let h = Harness::builder().tls(tls_files()).start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let _joins = echo(target);
    let tls = tls_connect(h.addr, &tls_connector(&[b"h2"], false))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut ws = h2_websocket(&mut sender, "localhost", None).await.unwrap();
    round_trip(&mut ws, "h2 over TLS").await;
    close(ws).await;
    h.stop().await;
}

/// A WebSocket to `h` whose request says it was forwarded for `forwarded_for`, or the
/// refusal's status.
async fn connect_as(h: &Harness, forwarded_for: &str) -> Result<Client, u16> {
    let mut request = h.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((client, _)) => Ok(client),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(other) => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn per_ip_limits_count_clients_behind_a_trusted_proxy_apart() {
    // Regression: every client behind one load balancer shared its per-IP budget.
    let h = Harness::builder()
        .two_upgrades_per_ip()
        .server(|config| {
            config.trusted_proxies = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
        })
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let mut joins = echo(target);
    let first = connect_as(&h, "198.51.100.1").await.expect("first upgrade");
    let second = connect_as(&h, "198.51.100.1")
        .await
        .expect("second upgrade");
    assert_eq!(connect_as(&h, "198.51.100.1").await.err(), Some(429));
    // Another client behind the same proxy has a budget of its own.
    let other = connect_as(&h, "198.51.100.2")
        .await
        .expect("another client");
    let join = joins.recv().await.unwrap();
    assert_eq!(
        join.get("remote_addr").and_then(Value::as_str),
        Some("198.51.100.1")
    );
    for ws in [first, second, other] {
        close(ws).await;
    }
    h.stop().await;

    // Without trusted proxies the header is the client's word and is ignored: one budget.
    let h = Harness::builder().two_upgrades_per_ip().start().await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let _joins = echo(target);
    let first = connect_as(&h, "198.51.100.1").await.expect("first upgrade");
    let second = connect_as(&h, "198.51.100.2")
        .await
        .expect("second upgrade");
    assert_eq!(connect_as(&h, "198.51.100.3").await.err(), Some(429));
    for ws in [first, second] {
        close(ws).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn certificate_reload_under_load_drops_no_connection() {
    const CLIENTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        client_ca: None,
    };
    let install = |name: &str| {
        // Written beside and renamed, as certbot and friends do: never half a file.
        for (from, to) in [
            (format!("{name}.pem"), &files.cert),
            (format!("{name}.key"), &files.key),
        ] {
            let scratch = to.with_extension("new");
            std::fs::copy(fixture(&from), &scratch).unwrap();
            std::fs::rename(&scratch, to).unwrap();
        }
    };
    install("server");
    let h = Harness::builder()
        .no_upgrade_rate_limit()
        .tls(files.clone())
        .server(|config| config.tls_watch_interval = Duration::from_millis(50))
        .start()
        .await;
    let (target, _g) = h.probe();
    h.relay_to(target.pid().as_str(), "");
    let _joins = echo(target);
    let mut load = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..CLIENTS {
        let mut ws = wss_connect(&h).await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round_trip(&mut ws, &format!("client {i} message {sent}")).await;
                sent += 1;
            }
            close(ws).await;
            sent
        }));
    }
    for swap in ["server2", "server", "server2"] {
        install(swap);
        let wanted = fixture_certificate(&format!("{swap}.pem"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while presented_certificate(h.addr).await != wanted {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload to {swap} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // New wss connections work with the new certificate.
        let mut fresh = wss_connect(&h).await;
        round_trip(&mut fresh, "after reload").await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in load {
        // A client whose connection dropped panics in `round_trip`, failing the join.
        total += client
            .await
            .expect("no connection dropped during the reloads");
    }
    assert!(total >= CLIENTS as u64, "every client echoed");
    h.stop().await;
}
