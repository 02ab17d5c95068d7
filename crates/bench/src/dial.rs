//! Opening client WebSockets: `ws://` on TCP, `wss://` on TLS (rustls, trusting the CA given
//! with `--ca`, so a test certificate can be measured), from a chosen source address.
//!
//! Both kinds go through the same [`ClientIo`] enum, so a `ws://` and a `wss://` run pay the
//! same (static) dispatch and differ only by TLS.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// A client WebSocket of the load generator.
pub type ClientWs = tokio_websockets::WebSocketStream<ClientIo>;

/// Where and how to open connections.
#[derive(Clone)]
pub struct Dialer {
    uri: http::Uri,
    target: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("uri", &self.uri)
            .field("target", &self.target)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Resolves `uri`; a `wss://` URI needs `ca`, the PEM file of the CA to trust.
    ///
    /// # Errors
    ///
    /// When the host does not resolve, or `wss://` comes without a usable `--ca`.
    pub async fn new(uri: http::Uri, ca: Option<&Path>) -> anyhow::Result<Dialer> {
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().context("--url has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .with_context(|| format!("{host} does not resolve"))?;
        let tls = if secure {
            let ca = ca.context("a wss:// URL needs --ca FILE (the CA that signed the server)")?;
            let name = ServerName::try_from(host).context("--url host")?;
            Some((connector(ca)?, name))
        } else {
            None
        };
        Ok(Dialer { uri, target, tls })
    }

    /// The server's address.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Opens a connection from `source` (port chosen by the kernel) and upgrades it.
    ///
    /// # Errors
    ///
    /// When the TCP connection, the TLS handshake or the upgrade fails.
    pub async fn open(&self, source: IpAddr) -> anyhow::Result<ClientWs> {
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let tcp = socket.connect(self.target).await?;
        tcp.set_nodelay(true)?;
        let io = match &self.tls {
            None => Either::Left(tcp),
            Some((connector, name)) => {
                Either::Right(Box::new(connector.connect(name.clone(), tcp).await?))
            }
        };
        let (ws, _) = tokio_websockets::ClientBuilder::from_uri(self.uri.clone())
            .connect_on(io)
            .await?;
        Ok(ws)
    }
}

impl Dialer {
    /// Opens `count` connections, `concurrency` handshakes at a time, spreading them round
    /// robin over `sources` (`127.0.0.1` when empty); `what` names a connection in errors.
    ///
    /// # Errors
    ///
    /// The first connection that cannot be opened.
    pub async fn open_many(
        &self,
        count: usize,
        sources: &[IpAddr],
        concurrency: usize,
        what: &str,
    ) -> anyhow::Result<Vec<ClientWs>> {
        let loopback = [IpAddr::from([127, 0, 0, 1])];
        let sources = if sources.is_empty() {
            &loopback[..]
        } else {
            sources
        };
        futures_util::stream::iter(0..count)
            .map(|i| {
                let source = sources[i % sources.len()];
                async move {
                    self.open(source)
                        .await
                        .with_context(|| format!("{what} {i} from {source}"))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// The loopback source for a target: `127.0.0.1` or `::1`.
pub fn loopback_for(target: SocketAddr) -> IpAddr {
    if target.is_ipv4() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
    }
}

fn connector(ca: &Path) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("--ca {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("--ca {}", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection is a full handshake: what a crowd of distinct clients costs the
    // server, and what `upgrade` over wss:// means to measure.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A client connection's I/O: TCP (`ws://`, left) or TLS over TCP (`wss://`, right).
/// `tokio_util`'s `Either` forwards reads and writes to whichever it holds.
pub type ClientIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;
