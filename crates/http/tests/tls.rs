//! TLS: HTTPS over HTTP/1.1 and HTTP/2 (ALPN), client certificates, errors that name the
//! file, and certificate reloads that keep established connections.

use std::time::Duration;

use http::{Method, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use wsrelay_http::{Error, Server, TlsFiles};

use crate::support::{
    self, fixture, fixture_certificate, presented_certificate, tls_connect, tls_connector,
    whoami_router, ID,
};

async fn start_tls(files: TlsFiles, watch: Duration) -> support::TestGateway {
    let mut config = support::config();
    config.tls_watch_interval = watch;
    let mut server = Server::new(ID, config);
    server.tls(files).unwrap();
    server.add_router(whoami_router()).unwrap();
    support::start_server(server).await
}

fn get(path: &str) -> http::Request<Empty<bytes::Bytes>> {
    http::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

/// An HTTP/1.1 connection over TLS to `addr`, presenting the client certificate if
/// `client_cert`.
async fn http1_over_tls(
    addr: std::net::SocketAddr,
    client_cert: bool,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>> {
    let tls = tls_connect(addr, &tls_connector(&[b"http/1.1"], client_cert)).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

#[tokio::test]
async fn https_serves_http11_and_http2_chosen_by_alpn() {
    let gw = start_tls(support::tls_files(), Duration::from_secs(10)).await;

    let tls = tls_connect(gw.addr, &tls_connector(&[b"http/1.1"], false))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, version, body) =
        support::body_of(sender.send_request(get("/whoami")).await.unwrap()).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11));
    assert!(body.contains("https=true"), "{body}");

    let tls = tls_connect(gw.addr, &tls_connector(&[b"h2", b"http/1.1"], false))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (status, version, body) =
        support::body_of(sender.send_request(get("/whoami")).await.unwrap()).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    // HTTP/2 has no Host header: the gateway fills it from the authority.
    assert!(body.contains("https=true host=localhost"), "{body}");
    gw.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn unusable_files_are_errors_naming_the_field_and_file() {
    let with_cert = |name| TlsFiles {
        cert: fixture(name),
        ..support::tls_files()
    };
    let with_key = |name| TlsFiles {
        key: fixture(name),
        ..support::tls_files()
    };
    let cases = [
        (with_cert("missing.pem"), "tls.cert", "missing.pem"),
        (with_key("ca.pem"), "tls.key", "ca.pem"),
        (with_cert("server.key"), "tls.cert", "no CERTIFICATE"),
        (
            with_key("server2.key"),
            "does not fit tls.cert",
            "server2.key",
        ),
        (
            TlsFiles {
                client_ca: Some(fixture("nothing-here.pem")),
                ..support::tls_files()
            },
            "tls.client_ca",
            "nothing-here.pem",
        ),
    ];
    for (files, field, detail) in cases {
        let mut server = Server::new(ID, support::config());
        let error = server.tls(files).unwrap_err();
        assert!(matches!(error, Error::Tls { .. }));
        let text = format!("{error}");
        assert!(
            text.contains(ID) && text.contains(field) && text.contains(detail),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_client_ca_requires_client_certificates() {
    let files = TlsFiles {
        client_ca: Some(fixture("client-ca.pem")),
        ..support::tls_files()
    };
    let gw = start_tls(files, Duration::from_secs(10)).await;
    // Without a certificate the server refuses the handshake: the request fails.
    let refused = async {
        let mut sender = http1_over_tls(gw.addr, false).await?;
        sender
            .send_request(get("/whoami"))
            .await
            .map_err(std::io::Error::other)
    };
    assert!(refused.await.is_err());
    // With one signed by the client CA it is served.
    let mut sender = http1_over_tls(gw.addr, true).await.unwrap();
    let (status, _, _) = support::body_of(sender.send_request(get("/whoami")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    gw.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn changed_files_are_reloaded_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(fixture("server.pem"), &cert).unwrap();
    std::fs::copy(fixture("server.key"), &key).unwrap();
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    };
    let gw = start_tls(files, Duration::from_millis(50)).await;
    assert_eq!(
        presented_certificate(gw.addr).await,
        fixture_certificate("server.pem")
    );

    // An open keep-alive connection, made before the change.
    let mut sender = http1_over_tls(gw.addr, false).await.unwrap();
    let (status, _, _) = support::body_of(sender.send_request(get("/whoami")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    // A key that does not fit yet: the files in use stay (no outage between two writes).
    std::fs::copy(fixture("server2.key"), &key).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        presented_certificate(gw.addr).await,
        fixture_certificate("server.pem")
    );
    std::fs::copy(fixture("server2.pem"), &cert).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while presented_certificate(gw.addr).await != fixture_certificate("server2.pem") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection made before is still served.
    let (status, _, _) = support::body_of(sender.send_request(get("/whoami")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    // A reload on demand (SIGHUP) with the files broken keeps the certificate and says why.
    std::fs::write(&cert, "not a certificate").unwrap();
    let error = gw.running.reload_tls().unwrap_err();
    assert!(format!("{error}").contains("tls.cert"), "{error}");
    assert_eq!(
        presented_certificate(gw.addr).await,
        fixture_certificate("server2.pem")
    );
    gw.running.shutdown().await.unwrap();
}
