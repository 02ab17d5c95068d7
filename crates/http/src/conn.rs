//! One accepted connection: the PROXY header, the TLS handshake, the choice of HTTP/1.1 or
//! HTTP/2, and hyper serving it until it ends or shutdown closes it.
//!
//! | listener | how the protocol is chosen | hyper |
//! |---|---|---|
//! | TLS | ALPN: `h2` → HTTP/2, anything else → HTTP/1.1 | `http2` / `http1` |
//! | cleartext, `h2c` on | the client's first bytes: the HTTP/2 preface → HTTP/2 (prior knowledge) | `auto` |
//! | cleartext | HTTP/1.1 only | `http1` |
//!
//! Plain HTTP/1.1 is served on the bare `TcpStream`, so an upgraded WebSocket gets the
//! socket itself back (see `wsrelay_ws::UpgradedIo`); `h2c` wraps the stream to look at its
//! first bytes, which costs that shortcut, so it is off unless asked for.
//!
//! HTTP/2 runs each stream's service on an executor: [`ShardExecutor`] spawns on the
//! gateway's task tracker, that is on the runtime (the shard) that accepted the connection,
//! where every other task of the connection already lives, and shutdown waits for them.
//! RFC 8441 (extended CONNECT) is enabled, so browsers may open WebSockets as streams of
//! an HTTP/2 connection; hyper's flow control applies to each of them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy_protocol;
use crate::server::ServerConfig;
use crate::site::{handle, Peer, Site};
use crate::tls::ALPN_H2;
use crate::Shutdown;

/// Spawns HTTP/2 stream tasks on the gateway's tracker: on the current runtime (the
/// accepting shard), and waited for by shutdown.
#[derive(Debug, Clone)]
pub(crate) struct ShardExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for ShardExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    site: Arc<Site>,
    shutdown: Shutdown,
    force: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut peer = Peer {
        addr,
        proxied: None,
        tls: site.tls.is_some(),
    };
    if site.config.proxy_protocol {
        match Box::pin(proxy_header(&mut stream, &site, addr, &shutdown)).await {
            Some(source) => peer.proxied = source,
            None => return,
        }
    }
    let run = Run {
        site,
        peer,
        shutdown,
        force,
    };
    // Every connection's task holds this future, and a spawn moves it into the task's cell
    // and back out at the end: the TLS and `h2c` paths, whose futures are several times the
    // plain HTTP/1.1 one, are boxed, so a plain connection carries and moves only its own.
    match run.site.tls.clone() {
        Some(tls) => Box::pin(run.tls(stream, TlsAcceptor::from(tls.current()))).await,
        None if run.site.config.h2c => {
            let conn = auto_builder(&run.site.config, run.executor());
            let conn = conn.serve_connection_with_upgrades(TokioIo::new(stream), run.service());
            Box::pin(run.drive(conn)).await;
        }
        None => {
            let conn = http1_builder(&run.site.config)
                .serve_connection(TokioIo::new(stream), run.service())
                .with_upgrades();
            run.drive(conn).await;
        }
    }
}

/// The PROXY header of a connection from a trusted balancer: `Some(source)` to go on
/// (`Some(None)`: a health check, no client address), `None` to close.
async fn proxy_header(
    stream: &mut TcpStream,
    site: &Site,
    addr: SocketAddr,
    shutdown: &Shutdown,
) -> Option<Option<SocketAddr>> {
    if !site.proxies.trusts(addr.ip()) {
        tracing::debug!(server = %site.id, remote = %addr, "PROXY header from an untrusted peer refused");
        return None;
    }
    let read = tokio::time::timeout(
        site.config.header_read_timeout,
        proxy_protocol::read_header(stream),
    );
    let result = tokio::select! {
        result = read => result,
        () = shutdown.token().cancelled() => return None,
    };
    match result {
        Ok(Ok(header)) => Some(header.source),
        Ok(Err(error)) => {
            tracing::debug!(server = %site.id, remote = %addr, %error, "connection refused");
            None
        }
        Err(_) => {
            tracing::debug!(server = %site.id, remote = %addr, "PROXY header timed out");
            None
        }
    }
}

/// A connection being served.
struct Run {
    site: Arc<Site>,
    peer: Peer,
    shutdown: Shutdown,
    force: CancellationToken,
}

impl Run {
    fn executor(&self) -> ShardExecutor {
        ShardExecutor(self.shutdown.tracker().clone())
    }

    fn service(
        &self,
    ) -> impl hyper::service::Service<
        http::Request<Incoming>,
        Response = crate::Response,
        Error = std::convert::Infallible,
        Future = impl Future<Output = Result<crate::Response, std::convert::Infallible>> + Send,
    > + Clone
           + Send
           + 'static {
        let (site, peer, shutdown) = (
            self.site.clone(),
            Arc::new(self.peer.clone()),
            self.shutdown.clone(),
        );
        service_fn(move |req| handle(site.clone(), peer.clone(), shutdown.clone(), req))
    }

    /// The TLS handshake (bounded by the header read timeout, as a slow client must not
    /// hold a connection open without sending a request), then HTTP/1.1 or HTTP/2 by ALPN.
    async fn tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        let handshake = tokio::time::timeout(
            self.site.config.header_read_timeout,
            acceptor.accept(stream),
        );
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(server = %self.site.id, remote = %self.peer.addr, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(server = %self.site.id, remote = %self.peer.addr, "TLS handshake timed out");
                    return;
                }
            },
            () = self.shutdown.token().cancelled() => return,
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let io = TokioIo::new(stream);
        if h2 {
            let conn = http2_builder(&self.site.config, self.executor())
                .serve_connection(io, self.service());
            self.drive(conn).await;
        } else {
            let conn = http1_builder(&self.site.config)
                .serve_connection(io, self.service())
                .with_upgrades();
            self.drive(conn).await;
        }
    }

    /// Runs `conn` until it ends; on shutdown asks it to finish its in-flight requests,
    /// and drops it when the drain timeout forces the end.
    async fn drive<C: Graceful>(self, conn: C) {
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return self.log_end(result),
            () = self.shutdown.token().cancelled() => {}
        }
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            result = conn.as_mut() => self.log_end(result),
            () = self.force.cancelled() => {}
        }
    }

    fn log_end<E: std::fmt::Display>(&self, result: Result<(), E>) {
        if let Err(error) = result {
            tracing::debug!(server = %self.site.id, remote = %self.peer.addr, %error, "connection error");
        }
    }
}

/// A hyper connection future that can be asked to shut down gracefully.
trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = crate::ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S> Graceful for http2::Connection<I, S, ShardExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = crate::ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

impl<I, S> Graceful for auto::UpgradeableConnection<'_, I, S, ShardExecutor>
where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = crate::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// hyper panics below this buffer size.
const MIN_BUF: usize = 8 * 1024;

pub(crate) fn http1_builder(config: &ServerConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF));
    builder
}

fn http2_builder(config: &ServerConfig, executor: ShardExecutor) -> http2::Builder<ShardExecutor> {
    let mut builder = http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(header_list_size(config));
    builder
}

fn auto_builder(config: &ServerConfig, executor: ShardExecutor) -> auto::Builder<ShardExecutor> {
    let mut builder = auto::Builder::new(executor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(header_list_size(config));
    builder
}

/// HTTP/2 bounds a request head by its decoded size, as HTTP/1.1 does by its buffer.
fn header_list_size(config: &ServerConfig) -> u32 {
    u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, R, F: FnOnce(A, B, C, D, E) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every connection's task holds this future, moved into the task's cell when it is
    /// spawned and out of it when it ends: the TLS and `h2c` paths are boxed, so a plain
    /// HTTP/1.1 connection does not carry them (7,560 B when they were inline).
    #[test]
    fn a_connection_future_is_at_most_2_kib() {
        let size = future_size(&super::serve);
        assert!(size <= 2048, "the connection's future is {size} B");
    }
}
