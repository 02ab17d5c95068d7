//! Test helpers shared by the workspace's tests (feature `test-util`; not part of the API):
//! the test certificates of `tests/fixtures/tls` (made by `scripts/gen-test-certs.sh`) and
//! a TLS client that trusts them.

#![allow(clippy::missing_panics_doc)]

/// A file of the test certificates (`scripts/gen-test-certs.sh`).
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tls")
        .join(name)
}

/// The test server certificate (a chain to the test CA) and its key.
pub fn tls_files() -> crate::TlsFiles {
    crate::TlsFiles {
        cert: fixture("server.pem"),
        key: fixture("server.key"),
        client_ca: None,
    }
}

/// A TLS client trusting the test CA, offering `alpn`, with the test client certificate
/// when `client_cert`.
///
/// # Panics
///
/// When the fixtures cannot be read.
pub fn tls_connector(alpn: &[&[u8]], client_cert: bool) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if client_cert {
        let certs = CertificateDer::pem_file_iter(fixture("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(fixture("client.key")).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Connects to `addr` over TLS as `localhost`.
///
/// # Errors
///
/// The connection or the handshake failed.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// The certificate a new TLS connection to `addr` is shown (the chain's first), to tell
/// which files a server uses after a reload.
///
/// # Panics
///
/// When the connection or the handshake fails.
pub async fn presented_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    let tls = tls_connect(addr, &tls_connector(&[b"http/1.1"], false))
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The first certificate of fixture file `name` (e.g. `server2.pem`), DER.
///
/// # Panics
///
/// When the fixture cannot be read.
pub fn fixture_certificate(name: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(fixture(name))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}
