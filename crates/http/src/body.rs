//! Request and response bodies.
//!
//! [`Body`] is what handlers and middleware receive: it wraps hyper's
//! [`Incoming`] stream and enforces the server's body size limit while it is
//! read, so a handler that calls [`Body::collect_bytes`] never buffers more
//! than the limit. [`ResponseBody`] is a boxed, `Send` body whose
//! [`size_hint`](http_body::Body::size_hint) is that of the body it wraps: a
//! response built with [`ResponseBody::empty`] (or from an empty string)
//! reports an exact size of zero, which is how a middleware tells that a
//! handler wrote nothing ([`ResponseBody::is_known_empty`]).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

/// The error type carried by boxed response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A body from anywhere (hyper, axum, a handler): `Bytes` data, `Send`, an error that boxes.
/// What [`Body::new`] and [`ResponseBody::from_send`] wrap, and what an embedding app's
/// services may hand over; every such body is one.
pub trait SendBody: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<B> SendBody for B where B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{}

/// What polling a body gives: the next frame, an error `E`, the end, or not yet.
type Polled<E> = Poll<Option<Result<Frame<Bytes>, E>>>;

// ===== impl Body =====

/// The body of a [`Request`](crate::Request).
///
/// Requests that come from the network carry hyper's [`Incoming`] stream,
/// limited to the server's [`max_body_size`](crate::ServerConfig::max_body_size):
/// reading past the limit yields [`BodyError::TooLarge`]. Requests built in
/// tests or by middleware can use [`Body::empty`] or [`Body::from`].
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming {
        inner: Incoming,
        limit: u64,
        seen: u64,
    },
    /// A body from another server (an embedding app's), boxed.
    Boxed {
        inner: BoxBody<Bytes, BoxError>,
        limit: u64,
        seen: u64,
    },
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// Wraps a body received by hyper; reading more than `limit` bytes fails.
    pub(crate) fn incoming(inner: Incoming, limit: u64) -> Self {
        Self {
            kind: Kind::Incoming {
                inner,
                limit,
                seen: 0,
            },
        }
    }

    /// Wraps a body that another server received (an app that embeds wsrelay, such as an
    /// axum service): reading more than `limit` bytes fails with [`BodyError::TooLarge`],
    /// as it does for a body wsrelay's own servers receive, and a read error of the body
    /// becomes [`BodyError::Other`].
    ///
    /// The body need only be `Send` (axum's is not `Sync`).
    ///
    /// ```
    /// use http_body_util::Full;
    /// use wsrelay_http::{Body, BodyError};
    ///
    /// # tokio_test_block_on(async {
    /// let body = Body::new(Full::new(bytes::Bytes::from_static(b"12345")), 4);
    /// assert!(matches!(body.collect_bytes().await, Err(BodyError::TooLarge { limit: 4 })));
    /// # });
    /// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub fn new<B>(body: B, limit: u64) -> Self
    where
        B: SendBody,
    {
        Self {
            kind: Kind::Boxed {
                inner: SyncBody::boxed(body),
                limit,
                seen: 0,
            },
        }
    }

    /// Reads the whole body into memory.
    ///
    /// # Errors
    ///
    /// [`BodyError::TooLarge`] when the body is longer than the server's
    /// limit (answer it with [`BodyError::to_response`], a `413`), and
    /// [`BodyError::Read`] when the connection fails mid-body.
    pub async fn collect_bytes(self) -> Result<Bytes, BodyError> {
        Ok(BodyExt::collect(self).await?.to_bytes())
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

/// `From<String>`, `From<&'static str>` and `From<Vec<u8>>` for a body type that has
/// `From<Bytes>`, all through that one conversion (no copy).
macro_rules! from_byte_likes {
    ($body:ty) => {
        impl From<String> for $body {
            fn from(text: String) -> Self {
                Self::from(Bytes::from(text))
            }
        }

        impl From<&'static str> for $body {
            fn from(text: &'static str) -> Self {
                Self::from(Bytes::from_static(text.as_bytes()))
            }
        }

        impl From<Vec<u8>> for $body {
            fn from(bytes: Vec<u8>) -> Self {
                Self::from(Bytes::from(bytes))
            }
        }
    };
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }
}

from_byte_likes!(Body);

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Incoming { .. } => "incoming",
            Kind::Boxed { .. } => "boxed",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<BodyError> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming { inner, limit, seen } => {
                poll_limited(Pin::new(inner), *limit, seen, cx, BodyError::Read)
            }
            Kind::Boxed { inner, limit, seen } => {
                poll_limited(Pin::new(inner), *limit, seen, cx, BodyError::Other)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Incoming { inner, .. } => inner.is_end_stream(),
            Kind::Boxed { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming { inner, .. } => inner.size_hint(),
            Kind::Boxed { inner, .. } => inner.size_hint(),
        }
    }
}

fn poll_limited<B: http_body::Body<Data = Bytes>>(
    inner: Pin<&mut B>,
    limit: u64,
    seen: &mut u64,
    cx: &mut Context<'_>,
    read_error: fn(B::Error) -> BodyError,
) -> Polled<BodyError> {
    let frame = match http_body::Body::poll_frame(inner, cx) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(None) => return Poll::Ready(None),
        Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(read_error(err)))),
        Poll::Ready(Some(Ok(frame))) => frame,
    };
    if let Some(data) = frame.data_ref() {
        *seen = seen.saturating_add(data.len() as u64);
        if *seen > limit {
            return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
        }
    }
    Poll::Ready(Some(Ok(frame)))
}

// ===== impl BodyError =====

/// Why reading a request [`Body`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is longer than the server's limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The connection failed while the body was read.
    #[error("failed to read the request body")]
    Read(#[source] hyper::Error),
    /// A body wrapped with [`Body::new`] failed while it was read.
    #[error("failed to read the request body")]
    Other(#[source] BoxError),
}

impl BodyError {
    /// The status that answers this error: `413` for a body over the limit,
    /// `400` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Read(_) | Self::Other(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A plain-text response with [`status`](Self::status) and the error's message.
    pub fn to_response(&self) -> crate::Response {
        crate::response::text(self.status(), self.to_string())
    }
}

// ===== impl ResponseBody =====

/// The body of a [`Response`](crate::Response).
///
/// Any [`http_body::Body`] with `Bytes` data can be boxed into one with
/// [`ResponseBody::new`]; its size hint is kept, so a middleware can learn
/// whether a handler wrote a body with [`is_known_empty`](Self::is_known_empty).
pub struct ResponseBody {
    inner: BoxBody<Bytes, BoxError>,
}

impl ResponseBody {
    /// Boxes any body.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            inner: body.map_err(Into::into).boxed(),
        }
    }

    /// Boxes a body that is `Send` but not `Sync` (axum's, for one); its size hint is kept
    /// as [`new`](Self::new) keeps it.
    pub fn from_send<B>(body: B) -> Self
    where
        B: SendBody,
    {
        Self {
            inner: SyncBody::boxed(body),
        }
    }

    /// An empty body; [`is_known_empty`](Self::is_known_empty) is true for it.
    pub fn empty() -> Self {
        Self::new(Empty::<Bytes>::new())
    }

    /// Whether the body is known to have no bytes (its exact size hint is 0).
    ///
    /// This is the test a middleware uses to learn whether a handler wrote a
    /// body: bodies built from bytes or strings have an exact size, and an
    /// empty one reports zero. A streaming body of unknown length is not
    /// known to be empty, even if it later yields nothing.
    pub fn is_known_empty(&self) -> bool {
        http_body::Body::size_hint(self).exact() == Some(0)
    }
}

impl Default for ResponseBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        Self::new(Full::new(bytes))
    }
}

from_byte_likes!(ResponseBody);

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("size_hint", &http_body::Body::size_hint(self))
            .finish()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<BoxError> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ===== impl SyncBody =====

/// Makes a `Send` body `Sync`, so it fits a [`BoxBody`]: polling takes `&mut self` and needs
/// no lock; only the size hint and end-of-stream queries (`&self`) take it, briefly, and never
/// across an await.
struct SyncBody<B> {
    /// Pinned on the heap, so the wrapper itself is `Unpin` whatever `B` is.
    inner: std::sync::Mutex<Pin<Box<B>>>,
}

impl<B> SyncBody<B>
where
    B: SendBody,
{
    fn boxed(body: B) -> BoxBody<Bytes, BoxError> {
        SyncBody {
            inner: std::sync::Mutex::new(Box::pin(body)),
        }
        .boxed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pin<Box<B>>> {
        // A poisoned lock only means a query panicked; the body itself is intact.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<B> http_body::Body for SyncBody<B>
where
    B: SendBody,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<BoxError> {
        let inner = self
            .get_mut()
            .inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint()
    }
}
