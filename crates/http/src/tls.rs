//! TLS for a server: certificates from PEM files (rustls), ALPN `h2` and `http/1.1`,
//! optional client certificates, and reloading when the files change.
//!
//! A server with [`TlsFiles`] loads them when it is configured ([`TlsFiles::load`]), so a
//! missing, unreadable or mismatched file is an error before anything listens. Each accepted
//! connection takes the *current* rustls config, so a reload ([`TlsReloader::reload`], from a
//! file watch or SIGHUP) changes what new handshakes present while connections already
//! established keep the session they negotiated: nothing is dropped.
//!
//! A reload that fails (a file half written, a key that does not match the new certificate
//! yet) keeps the config in use and logs the error; the next change of either file tries
//! again. That is why the watch compares the files' modification time and length, not
//! their content: a change is what makes a retry worth it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocols a TLS server offers, most preferred first.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The largest PEM file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The PEM files of a TLS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; with it, a client without
    /// a valid certificate fails the handshake.
    pub client_ca: Option<PathBuf>,
}

/// Why a server's TLS files cannot be used. Each variant names the field (`tls.cert`,
/// `tls.key`, `tls.client_ca`) and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{field} {}: cannot read: {source}", path.display())]
    Read {
        /// The config field.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than a PEM file can sensibly be.
    #[error("{field} {}: larger than {MAX_PEM_BYTES} bytes", path.display())]
    TooLarge {
        /// The config field.
        field: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A file holds no usable PEM block of the expected kind.
    #[error("{field} {}: {problem}", path.display())]
    Pem {
        /// The config field.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        problem: String,
    },
    /// The key does not belong to the certificate, or rustls refused the pair.
    #[error("tls.key {} does not fit tls.cert {}: {source}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA file holds no certificate rustls accepts as a trust anchor.
    #[error("tls.client_ca {}: {problem}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl TlsFiles {
    /// Reads the files and builds the rustls config: ALPN `h2` and `http/1.1`, client
    /// certificates required when [`client_ca`](Self::client_ca) is set.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the field and the file at fault.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs("tls.cert", &self.cert)?;
        let key = read_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| self.mismatch(source))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|source| self.mismatch(source))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        Ok(Arc::new(config))
    }

    fn mismatch(&self, source: rustls::Error) -> TlsError {
        TlsError::Mismatch {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        }
    }

    /// The files a reload depends on.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

fn read_pem(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        field,
        path: path.to_owned(),
        source,
    };
    let size = fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            field,
            path: path.to_owned(),
        });
    }
    fs::read(path).map_err(read_error)
}

fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(field, path)?;
    let pem_error = |problem: String| TlsError::Pem {
        field,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        field: "tls.key",
        path: path.to_owned(),
        problem: format!("no usable private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })
}

fn client_verifier(
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let ca_error = |problem: String| TlsError::ClientCa {
        path: path.to_owned(),
        problem,
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs("tls.client_ca", path)? {
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("not a CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| ca_error(e.to_string()))
}

// ===== impl TlsReloader =====

/// The rustls config a server uses now, and how to replace it.
///
/// Cloned into every accept loop; [`current`](Self::current) is a read lock and an `Arc`
/// clone per accepted connection.
#[derive(Debug, Clone)]
pub struct TlsReloader {
    inner: Arc<ReloaderInner>,
}

#[derive(Debug)]
struct ReloaderInner {
    server: Arc<str>,
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    /// The files' modification time and length when last looked at.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl TlsReloader {
    /// Loads `files` for server `server`.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`].
    pub fn new(server: &str, files: TlsFiles) -> Result<TlsReloader, TlsError> {
        let stamps = stamps(&files);
        let config = files.load()?;
        Ok(TlsReloader {
            inner: Arc::new(ReloaderInner {
                server: server.into(),
                files,
                config: RwLock::new(config),
                stamps: Mutex::new(stamps),
            }),
        })
    }

    /// The config new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.config.read().clone()
    }

    /// The id of the server these files belong to.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// Reads the files again and, if they load, uses them for every new handshake.
    /// Connections already established are not touched.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`]; the config in use is kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.inner.stamps.lock() = stamps(&self.inner.files);
        let config = self.inner.files.load()?;
        *self.inner.config.write() = config;
        tracing::info!(server = %self.inner.server, "TLS certificates reloaded");
        Ok(())
    }

    /// Reloads when a file's modification time or length changed since the last look;
    /// logs the outcome. Returns whether a reload was tried.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.inner.files);
        if *self.inner.stamps.lock() == now {
            return false;
        }
        if let Err(error) = self.reload() {
            tracing::error!(
                server = %self.inner.server,
                %error,
                "TLS reload failed; keeping the certificates in use"
            );
        }
        true
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    files
        .paths()
        .map(|path| {
            let meta = fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
