//! A minimal HTTP/1.1 server with upgrades on a current-thread runtime.
//!
//! Every benchmark server uses it, so the candidates differ only in the WebSocket library.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The response body every benchmark server uses.
pub type Body = Full<Bytes>;

/// Builds a current-thread runtime (the "one core per server" rule) and runs `future` on it.
///
/// # Errors
///
/// When the runtime cannot be built.
pub fn block_on_current_thread<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// Accepts connections on `addr` forever and serves each with `handler` over HTTP/1.1 with
/// upgrades enabled. Prints `listening on ADDR` to stderr once bound.
///
/// # Errors
///
/// When binding fails.
pub async fn serve<H, Fut>(addr: SocketAddr, handler: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // EMFILE and friends: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .with_upgrades()
                .await;
        });
    }
}

/// A plain-text response with `status`.
pub fn text(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// Serves `router` on `addr` with the relay's own HTTP stack (`wsrelay-http`) until Ctrl-C;
/// prints `NAME listening on SCHEME://ADDR/PATH` to stderr once bound (`path` is what the
/// banner names, e.g. `/rust`).
///
/// # Errors
///
/// When the server cannot be set up or bound, or the signal cannot be waited for.
pub async fn serve_router(
    name: &str,
    addr: SocketAddr,
    router: wsrelay_http::Router,
    scheme: &str,
    path: &str,
) -> anyhow::Result<()> {
    let server_id = format!("bench:{name}");
    let mut server =
        wsrelay_http::Server::new(server_id.clone(), wsrelay_http::ServerConfig::new(addr));
    server.add_router(router)?;
    let mut gateway = wsrelay_http::Gateway::new();
    gateway.add_server(server)?;
    let running = gateway.bind().await?;
    let bound = running.local_addr(&server_id).unwrap_or(addr);
    eprintln!("{name} listening on {scheme}://{bound}{path}");
    tokio::signal::ctrl_c().await?;
    running.shutdown().await?;
    Ok(())
}
