//! [`UpgradedIo`]: the socket of a connection that hyper upgraded, unwrapped when it can be.
//!
//! hyper hands an upgraded connection over as `Upgraded`, a boxed trait object behind a
//! rewind buffer. When the server serves plain TCP (`TokioIo<TcpStream>`, as the gateway
//! does), [`UpgradedIo::from_upgraded`] takes the `TcpStream` back out with
//! `Upgraded::downcast`, so reads and writes go straight to the socket with no box and no
//! indirection; the bytes hyper had already read past the request are returned beside it,
//! for the connection to decode first. Any other transport (TLS, HTTP/2 streams later) stays
//! wrapped and works the same.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The I/O of a connection taken over from hyper: the bare `TcpStream` when hyper served
/// one, otherwise hyper's `Upgraded`.
#[derive(Debug)]
pub enum UpgradedIo {
    /// The TCP socket itself.
    Tcp(TcpStream),
    /// Any other transport, still inside hyper's wrapper.
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

impl UpgradedIo {
    /// Unwraps `upgraded`; returns the I/O and the bytes hyper read past the request (the
    /// client's first frames, if it sent them without waiting for the `101`).
    pub fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> (UpgradedIo, Bytes) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            // The leftovers are a view of hyper's whole read buffer: copy them out (they are
            // rarely more than a frame or two) so that buffer is freed now.
            Ok(parts) => (
                UpgradedIo::Tcp(parts.io.into_inner()),
                Bytes::copy_from_slice(&parts.read_buf),
            ),
            Err(upgraded) => (UpgradedIo::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpgradedIo::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            UpgradedIo::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpgradedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpgradedIo::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            UpgradedIo::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpgradedIo::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            UpgradedIo::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpgradedIo::Tcp(io) => io.is_write_vectored(),
            UpgradedIo::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpgradedIo::Tcp(io) => Pin::new(io).poll_flush(cx),
            UpgradedIo::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpgradedIo::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            UpgradedIo::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
