//! The relay as tower middleware: [`RelayLayer`] / [`RelayService`] around a handler service
//! of the host app, and [`LuaHandler`], a `function.lua` entry as a tower service.
//!
//! Both adapt requests and responses and hand everything else to the code `wsrelay run` runs:
//! the relay's checks and connection process are `wsrelay-relay`'s `websocket_relay`
//! middleware, called with the host's handler at the end of its chain.

use std::convert::Infallible;
use std::fmt;
use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::StatusCode;
use tower_layer::Layer;
use tower_service::Service;
use wsrelay_http::{
    response, Body, BoxError, BoxFuture, ConnectInfo, Handler, Middleware, Next, Request, Response,
    ResponseBody, SendBody, Shutdown,
};

/// The `Service` items [`RelayService`] and [`LuaHandler`] share. Always ready: the work
/// starts in `call` (a wrapped service is driven to readiness when the relay runs it, after
/// the checks, so a refused request costs it nothing). Never an error: a failure is a
/// response (`500`, `503`, ...).
macro_rules! always_ready_infallible {
    () => {
        type Response = Response;
        type Error = Infallible;
        type Future = BoxFuture<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
    };
}

/// Reads the client's address from a request's extensions (where the host's server put it).
type ClientAddr = Arc<dyn Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync>;

/// The address used when the listener or the client is unknown: unspecified, so it is
/// neither a loopback listener nor anybody's own address.
const UNKNOWN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// A relay route as a tower [`Layer`]: made by [`Runtime::relay`](crate::Runtime::relay).
///
/// The service it wraps is the host's handler. For each request the relay first refuses what
/// `wsrelay run` refuses before a handler (a foreign `Origin`: `403`; admission limits:
/// `429`/`503`; a bad upgrade: `400`/`405`/`426`), runs the handler, and, when the response
/// carries `X-WS-Relay` (see [`RelayTo`](crate::RelayTo)), answers `101` and relays the
/// connection to the target process; other responses pass through untouched.
///
/// Tell the layer where requests come from, or it cannot apply the checks that need it:
/// [`listener`](Self::listener) (a loopback listener accepts only loopback `Host` names, as
/// in `wsrelay run`) and [`client_addr`](Self::client_addr) (per-IP limits; without it every
/// client counts as one).
///
/// # Examples
///
/// With axum (`axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`
/// puts the client's address in the extensions):
///
/// ```ignore
/// let relay = runtime
///     .relay(wsrelay::RelayConfig::new())?
///     .listener(local_addr)
///     .client_addr(|ext| ext.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0));
/// let app = axum::Router::new().route("/ws", get(connect).route_layer(relay));
/// ```
#[derive(Clone)]
pub struct RelayLayer {
    middleware: Arc<dyn Middleware>,
    host: Arc<str>,
    gateway: Shutdown,
    listener: SocketAddr,
    client_addr: Option<ClientAddr>,
    https: bool,
    max_body_size: u64,
}

impl fmt::Debug for RelayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayLayer")
            .field("host", &self.host)
            .field("listener", &self.listener)
            .field("client_addr", &self.client_addr.is_some())
            .field("https", &self.https)
            .field("max_body_size", &self.max_body_size)
            .finish_non_exhaustive()
    }
}

impl RelayLayer {
    /// The largest request body a handler behind the layer may read, unless
    /// [`max_body_size`](Self::max_body_size) says otherwise: 1 MiB, the gateway's default.
    pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;

    pub(crate) fn new(middleware: Arc<dyn Middleware>, host: Arc<str>, gateway: Shutdown) -> Self {
        RelayLayer {
            middleware,
            host,
            gateway,
            listener: UNKNOWN,
            client_addr: None,
            https: false,
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
        }
    }

    /// The address the host's server listens on.
    #[must_use]
    pub fn listener(mut self, addr: SocketAddr) -> Self {
        self.listener = addr;
        self
    }

    /// How to find the client's address in a request's extensions (with axum:
    /// `|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)`). Behind a proxy, return the
    /// address the proxy reports, as the host app trusts it.
    #[must_use]
    pub fn client_addr<F>(mut self, find: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync + 'static,
    {
        self.client_addr = Some(Arc::new(find));
        self
    }

    /// Whether clients reach the host over `https`/`wss` (its server terminates TLS).
    #[must_use]
    pub fn https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// The largest request body a handler behind the layer may read (`413` above it).
    #[must_use]
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The request as the relay sees it: wsrelay's body (limited) and the connection's facts.
    fn adapt<B>(&self, req: http::Request<B>) -> Request
    where
        B: SendBody,
    {
        let client = self
            .client_addr
            .as_ref()
            .and_then(|find| find(req.extensions()))
            .unwrap_or(UNKNOWN);
        let info =
            ConnectInfo::new(self.host.clone(), self.listener, client).with_https(self.https);
        let limit = self.max_body_size;
        let mut req = req.map(|body| Body::new(body, limit));
        req.extensions_mut().insert(info);
        req.extensions_mut().insert(self.gateway.clone());
        req
    }
}

impl<S> Layer<S> for RelayLayer {
    type Service = RelayService<S>;

    fn layer(&self, inner: S) -> RelayService<S> {
        RelayService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service of a [`RelayLayer`] around the host's handler `S`.
///
/// `S` takes a [`Request`] (wsrelay's body, which is an [`http_body::Body`]) and may answer
/// with any body; the response is a [`Response`]. Errors of `S` are answered with `500`.
#[derive(Clone)]
pub struct RelayService<S> {
    layer: RelayLayer,
    inner: S,
}

impl<S> fmt::Debug for RelayService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for RelayService<S>
where
    S: Service<Request, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: SendBody,
    B: SendBody,
{
    always_ready_infallible!();

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.layer.gateway.is_triggered() {
            // As `wsrelay run` stops accepting: no new connection during the drain.
            return Box::pin(async {
                Ok(response::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down\n",
                ))
            });
        }
        let req = self.layer.adapt(req);
        let handler = Arc::new(Inner {
            service: Mutex::new(Some(self.inner.clone())),
        });
        let run = self.layer.middleware.call(req, Next::handler(handler));
        Box::pin(async move { Ok(run.await) })
    }
}

/// The host's service as the relay's handler, for one request.
struct Inner<S> {
    /// Taken by the one call the relay makes.
    service: Mutex<Option<S>>,
}

impl<S, ResBody> Handler for Inner<S>
where
    S: Service<Request, Response = http::Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: SendBody,
{
    fn call(&self, req: Request) -> BoxFuture<Response> {
        let service = self
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async move {
            let Some(mut service) = service else {
                // The relay runs its handler once per request; a second call is a bug here.
                tracing::error!("relay handler called twice");
                return response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            };
            // Errors become `BoxError` at once: `S::Error` need not be `Send`.
            let ready = poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into);
            let answer = match ready {
                Ok(()) => service.call(req).await.map_err(Into::into),
                Err(error) => Err(error),
            };
            match answer {
                Ok(res) => res.map(ResponseBody::from_send),
                Err(error) => failed(&error),
            }
        })
    }
}

/// The `500` of a handler service that failed (logged: the client learns nothing of it).
fn failed(error: &BoxError) -> Response {
    tracing::error!(%error, "handler failed");
    response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
}

/// A `function.lua` entry as a tower service: made by
/// [`Runtime::lua_handler`](crate::Runtime::lua_handler).
///
/// The Lua function sees the request as a `wsrelay run` endpoint would (method, path,
/// query, headers, body) and its response comes back as a [`Response`]; one that sets
/// `X-WS-Relay` needs a [`RelayLayer`] around the service to become a connection.
#[derive(Clone)]
pub struct LuaHandler {
    handler: Arc<dyn Handler>,
    max_body_size: u64,
}

impl fmt::Debug for LuaHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaHandler")
            .field("max_body_size", &self.max_body_size)
            .finish_non_exhaustive()
    }
}

impl LuaHandler {
    /// The largest request body the function reads, unless
    /// [`max_body_size`](Self::max_body_size) says otherwise: 1 MiB, the gateway's default.
    pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;

    pub(crate) fn new(handler: Arc<dyn Handler>) -> LuaHandler {
        LuaHandler {
            handler,
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
        }
    }

    /// The largest request body the function reads (`413` above it).
    #[must_use]
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }
}

impl<B> Service<http::Request<B>> for LuaHandler
where
    B: SendBody,
{
    always_ready_infallible!();

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let limit = self.max_body_size;
        let run = self.handler.call(req.map(|body| Body::new(body, limit)));
        Box::pin(async move { Ok(run.await) })
    }
}
