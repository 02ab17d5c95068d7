//! The write queue: frames waiting to be written, as inline headers beside `Bytes` payloads,
//! written with vectored writes.
//!
//! Nothing is copied into a write buffer: a payload is written from the `Bytes` it came in
//! (a shared frame's from the one compressed copy every connection shares), its header from
//! the 10-byte array next to it. When the queue empties, its storage is freed, so an idle
//! connection holds none.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::frame::Header;

/// The most slices one vectored write gathers (two per frame).
const MAX_SLICES: usize = 64;

/// One queued frame (or fragment): its header and its payload.
#[derive(Debug)]
struct Chunk {
    header: Header,
    payload: Bytes,
}

impl Chunk {
    fn len(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
}

impl WriteQueue {
    /// Queues a frame: `header` then `payload`.
    pub(crate) fn push(&mut self, header: Header, payload: Bytes) {
        self.queued += header.as_bytes().len() + payload.len();
        self.chunks.push_back(Chunk { header, payload });
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until the queue is empty (then flushes the I/O and frees the queue's storage).
    ///
    /// Cancel safe: what was written is accounted for, the rest stays queued.
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.gather(&mut slices);
            let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        // Drop the storage with the last frame: an idle connection keeps no queue.
        self.chunks = VecDeque::new();
        Pin::new(io).poll_flush(cx)
    }

    /// Fills `slices` from the front of the queue; returns how many were filled.
    fn gather<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let mut count = 0;
        let mut skip = self.written;
        for chunk in &self.chunks {
            for part in [chunk.header.as_bytes(), &chunk.payload[..]] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
                if count == MAX_SLICES {
                    return count;
                }
            }
        }
        count
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OpCode;

    /// A writer that takes at most `step` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_keep_the_byte_stream_intact() {
        let mut expected = Vec::new();
        let mut queue = WriteQueue::default();
        for i in 0..100usize {
            let payload = Bytes::from(vec![i as u8; i * 3]);
            let header = Header::new(true, false, OpCode::Binary, payload.len());
            expected.extend_from_slice(header.as_bytes());
            expected.extend_from_slice(&payload);
            queue.push(header, payload);
        }
        assert_eq!(queue.queued(), expected.len());
        for step in [1, 3, 1000] {
            let mut queue_copy = WriteQueue::default();
            for chunk in &queue.chunks {
                queue_copy.push(chunk.header, chunk.payload.clone());
            }
            let mut writer = Trickle {
                out: Vec::new(),
                step,
            };
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(queue_copy.poll_flush(&mut writer, &mut cx).is_ready());
            assert_eq!(writer.out, expected, "step {step}");
            assert!(queue_copy.is_empty());
            assert_eq!(queue_copy.queued(), 0);
            assert_eq!(queue_copy.chunks.capacity(), 0);
        }
    }
}
