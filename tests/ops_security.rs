//! Security promises through a real app (`App::start`, Lua handlers, real
//! sockets): cross-site WebSocket hijacking is refused before the handler runs, origin
//! patterns behave as docs/spec.md §5 says, handshake abuse gets the right status and never stops the
//! server, and the admission limits answer `503`/`429` with `Retry-After`.

use std::time::Duration;

use crate::support::ops::{app_dir, get, header_of, raw, status_of, ws, TestApp};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn cross_site_websocket_hijacking_is_refused_before_the_handler() {
    let t = TestApp::start("", false).await;
    let url = t.url("/strict?target=spawn");
    let before = t.app.node().process_count();

    // A page on a foreign site opens a WebSocket with the victim's cookies: refused.
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "null",
    ] {
        assert_eq!(ws(&url, Some(origin)).await.err(), Some(403), "{origin}");
    }
    // The handler spawns a process on every run: none was spawned, so it never ran.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        t.app.node().process_count(),
        before,
        "a refused upgrade spawned something"
    );

    // The allowed origin gets through: the handler runs and spawns the target.
    let _client = ws(&url, Some("https://app.example.com"))
        .await
        .expect("allowed");
    // The spawned room plus the connection.
    assert_eq!(t.app.node().process_count(), before + 2);
    t.stop().await;
}

#[tokio::test]
async fn origin_patterns_end_to_end() {
    let t = TestApp::start("", false).await;
    let same = format!("http://{}", t.addr);
    // (router, Origin, upgraded?)
    let table: &[(&str, Option<&str>, bool)] = &[
        // No patterns: same origin only; no Origin (non-browser client) is allowed.
        ("ws", None, true),
        ("ws", Some(same.as_str()), true),
        ("ws", Some("http://evil.example"), false),
        ("ws", Some("null"), false),
        // Scheme, host and port must all match a pattern with `://`; case does not matter.
        ("strict", Some("https://app.example.com"), true),
        ("strict", Some("HTTPS://APP.EXAMPLE.COM"), true),
        ("strict", Some("http://app.example.com"), false),
        ("strict", Some("https://app.example.com:8443"), false),
        ("strict", Some(same.as_str()), false),
        ("strict", None, true),
        // Wildcards and lists.
        ("wild", Some("https://a.example.com"), true),
        ("wild", Some("https://a.b.example.com"), true),
        ("wild", Some("https://example.com"), false),
        ("wild", Some("https://evil.com/.example.com"), false),
        ("wild", Some("http://localhost:3000"), true),
        ("wild", Some("http://localhost:3001"), false),
        // A pattern without `://` matches host[:port] under any scheme.
        ("hostonly", Some("https://app.example.com"), true),
        ("hostonly", Some("http://app.example.com"), true),
        ("hostonly", Some("http://app.example.com:81"), false),
        ("hostonly", Some("garbage"), false),
        // `*` allows everything, `null` included.
        ("any", Some("https://evil.example"), true),
        ("any", Some("null"), true),
    ];
    for (router, origin, allowed) in table {
        let result = ws(&t.url(&format!("/{router}")), *origin).await;
        match (result, allowed) {
            (Ok(_), true) => {}
            (Err(403), false) => {}
            (other, _) => panic!(
                "/{router} Origin {origin:?}: expected {}, got {:?}",
                if *allowed { "101" } else { "403" },
                other.map(|_| 101)
            ),
        }
    }
    t.stop().await;
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn upgrade(method: &str, version: &str, headers: &str) -> String {
    format!("{method} /ws HTTP/{version}\r\nHost: x\r\n{headers}\r\n")
}

#[tokio::test]
async fn handshake_abuse_gets_the_right_status_and_the_server_keeps_serving() {
    let t = TestApp::start("", false).await;
    let up = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    // The head limit (`max_header_bytes`, 64 KiB) is enforced by hyper between reads, so a head
    // a little over it may pass; well over it never does.
    let long = "a".repeat(256 * 1024);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    // (what, request bytes, acceptable statuses; 0 = closed without an answer)
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "missing Upgrade",
            upgrade("GET", "1.1", &format!("Connection: Upgrade\r\n{v13}{KEY}")).into(),
            &[426],
        ),
        (
            "missing Connection",
            upgrade("GET", "1.1", &format!("Upgrade: websocket\r\n{v13}{KEY}")).into(),
            &[426],
        ),
        (
            "missing key",
            upgrade("GET", "1.1", &format!("{up}{v13}")).into(),
            &[400],
        ),
        (
            "bad key",
            upgrade(
                "GET",
                "1.1",
                &format!("{up}{v13}Sec-WebSocket-Key: short\r\n"),
            )
            .into(),
            &[400],
        ),
        (
            "duplicate key",
            upgrade("GET", "1.1", &format!("{up}{v13}{KEY}{KEY}")).into(),
            &[400],
        ),
        (
            "wrong version",
            upgrade(
                "GET",
                "1.1",
                &format!("{up}Sec-WebSocket-Version: 8\r\n{KEY}"),
            )
            .into(),
            &[400, 426],
        ),
        (
            "missing version",
            upgrade("GET", "1.1", &format!("{up}{KEY}")).into(),
            &[400, 426],
        ),
        (
            "non-GET",
            upgrade(
                "POST",
                "1.1",
                &format!("{up}{v13}{KEY}Content-Length: 0\r\n"),
            )
            .into(),
            &[405],
        ),
        (
            "HTTP/1.0",
            upgrade("GET", "1.0", &format!("{up}{v13}{KEY}")).into(),
            &[400, 426, 505],
        ),
        (
            "oversized header",
            upgrade("GET", "1.1", &format!("{up}{v13}{KEY}X-Big: {long}\r\n")).into(),
            &[431, 400, 0],
        ),
        (
            "too many headers",
            upgrade("GET", "1.1", &format!("{up}{v13}{KEY}{many}")).into(),
            &[431, 400, 0],
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            &[400, 0],
        ),
        ("bare newline", b"\r\n\r\n\r\n".to_vec(), &[400, 0]),
        (
            "huge body",
            b"POST /api/ok HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
            &[413, 405],
        ),
    ];
    for (what, request, want) in &cases {
        let answer = raw(t.addr, request).await;
        let status = status_of(&answer);
        assert!(
            want.contains(&status),
            "{what}: got {status}: {answer:.200}"
        );
        if status == 400 && *what == "wrong version" {
            assert_eq!(
                header_of(&answer, "sec-websocket-version"),
                Some("13"),
                "{what}"
            );
        }
        // The server is still serving after each one.
        assert_eq!(
            status_of(&get(t.addr, "/api/ok", "").await),
            200,
            "after {what}"
        );
    }
    // A real client still connects.
    ws(&t.url("/ws"), None).await.expect("upgrade after abuse");
    t.stop().await;
}

/// Twenty connections that have sent the start of a request head and trickle the rest.
async fn tricklers(addr: std::net::SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /ws HTTP/1.1\r\nX-A: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    slow
}

#[tokio::test]
async fn slowloris_header_trickle_does_not_block_others() {
    // The default header read timeout (30 s) keeps the tricklers connected throughout.
    let t = TestApp::start("", false).await;
    let mut slow = tricklers(t.addr).await;
    for _ in 0..5 {
        assert_eq!(status_of(&get(t.addr, "/api/ok", "").await), 200);
        ws(&t.url("/ws"), None)
            .await
            .expect("upgrade during slowloris");
        for s in &mut slow {
            s.write_all(b"a")
                .await
                .expect("a trickler was closed while the others were served");
        }
    }
    // Others were served while every trickler was still connected: a server that served
    // them only after the tricklers (cut by the header read timeout) would fail here.
    for s in &slow {
        let mut byte = [0u8; 1];
        let still_open =
            matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(
            still_open,
            "a trickler was closed before the others were served"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn slowloris_header_trickle_is_cut_by_the_header_read_timeout() {
    // The server's header read timeout, 3 s here (30 s by default).
    let dir = app_dir("");
    let yaml = dir.path().join("app.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap().replacen(
        "addr: \"127.0.0.1:0\"",
        "addr: \"127.0.0.1:0\"\n    header_read_timeout: 3s",
        1,
    );
    std::fs::write(&yaml, text).unwrap();
    let t = TestApp::start_in(dir, false).await;
    let mut slow = tricklers(t.addr).await;
    let started = tokio::time::Instant::now();
    let mut alive = slow.len();
    while alive > 0 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        alive = 0;
        for s in &mut slow {
            if s.write_all(b"a").await.is_ok() {
                alive += 1;
            }
        }
    }
    assert_eq!(
        alive,
        0,
        "tricklers still connected after {:?}",
        started.elapsed()
    );
    // A real client still connects.
    ws(&t.url("/ws"), None)
        .await
        .expect("upgrade after the cut");
    t.stop().await;
}

#[tokio::test]
async fn connection_limit_and_upgrade_rate_through_the_app() {
    let t = TestApp::start("", false).await;
    let limited = t.url("/limited");
    let _a = ws(&limited, None).await.expect("first");
    let _b = ws(&limited, None).await.expect("second");
    let before = t.app.node().process_count();
    let answer = raw(
        t.addr,
        format!(
            "GET /limited?target=spawn HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{KEY}\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert_eq!(header_of(&answer, "retry-after"), Some("1"));
    assert_eq!(
        t.app.node().process_count(),
        before,
        "a refused upgrade spawned something"
    );
    // Another router has its own pool.
    let _c = ws(&t.url("/ws"), None).await.expect("other router");

    let slow = t.url("/slow");
    let _d = ws(&slow, None).await.expect("within the burst");
    let answer = raw(
        t.addr,
        format!(
            "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{KEY}\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    let retry: u64 = header_of(&answer, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    t.stop().await;
}
