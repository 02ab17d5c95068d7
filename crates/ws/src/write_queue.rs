//! The write queue: frames waiting to be written, as inline headers beside `Bytes` payloads,
//! written with vectored writes.
//!
//! Nothing is copied into a write buffer: a payload is written from the `Bytes` it came in
//! (a shared frame's from the one compressed copy every connection shares), its header from
//! the 10-byte array next to it. When the queue empties, its storage goes back to a small
//! per-thread pool of spare queues (module docs of [`spare`]), so an idle connection holds
//! none and a connection that writes one frame per wake-up — a broadcast to thousands of
//! clients — takes its queue from the pool instead of allocating and freeing one per frame.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::frame::Header;

/// The most slices one vectored write gathers (two per frame).
const MAX_SLICES: usize = 64;

/// Slices gathered on the stack for the common write of one or two frames: filling the full
/// `MAX_SLICES` array costs more than writing one small frame.
const FEW_SLICES: usize = 4;

/// The per-thread pool of empty queue storage.
///
/// Every shard is one thread, and a connection's writes happen on its shard, so a queue
/// emptied by one connection's flush is reused by the next connection's frame on the same
/// thread: a broadcast then costs no allocation per recipient for the queue. The pool is
/// bounded twice — at most [`spare::MAX_SPARES`] queues, each of at most
/// [`spare::MAX_CAPACITY`] chunks — so it never holds more than a few KiB per thread; a
/// queue that grew larger in a burst is freed as before.
mod spare {
    use super::{Chunk, RefCell, VecDeque};

    /// The most empty queues kept per thread.
    pub(super) const MAX_SPARES: usize = 16;
    /// The largest queue (in chunks) worth keeping.
    pub(super) const MAX_CAPACITY: usize = 16;

    thread_local! {
        static SPARES: RefCell<Vec<VecDeque<Chunk>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty queue, with storage when the pool has some.
    pub(super) fn take() -> VecDeque<Chunk> {
        SPARES
            .try_with(|spares| spares.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Gives the storage of an emptied queue back to the pool, or frees it.
    pub(super) fn give(queue: VecDeque<Chunk>) {
        debug_assert!(queue.is_empty());
        let capacity = queue.capacity();
        if capacity == 0 || capacity > MAX_CAPACITY {
            return;
        }
        // `try_with`: during thread teardown the pool may be gone; the queue is freed then.
        let _ = SPARES.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < MAX_SPARES {
                spares.push(queue);
            }
        });
    }

    /// How many spare queues this thread holds (tests).
    #[cfg(test)]
    pub(super) fn count() -> usize {
        SPARES.with(|spares| spares.borrow().len())
    }
}

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
        if self.chunks.capacity() == 0 {
            self.chunks = spare::take();
        }
        self.chunks.push_back(Chunk { header, payload });
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until the queue is empty (then flushes the I/O and hands the queue's storage to
    /// the per-thread pool).
    ///
    /// Cancel safe: what was written is accounted for, the rest stays queued.
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.chunks.is_empty() {
            let n = if self.chunks.len() * 2 <= FEW_SLICES {
                let mut slices = [IoSlice::new(&[]); FEW_SLICES];
                let count = self.gather(&mut slices);
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let count = self.gather(&mut slices);
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        // The storage leaves with the last frame: an idle connection keeps no queue.
        if self.chunks.capacity() > 0 {
            spare::give(std::mem::take(&mut self.chunks));
        }
        Pin::new(io).poll_flush(cx)
    }

    /// Fills `slices` from the front of the queue; returns how many were filled.
    fn gather<'a, const N: usize>(&'a self, slices: &mut [IoSlice<'a>; N]) -> usize {
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
                if count == N {
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

    fn flushed(queue: &mut WriteQueue) -> Vec<u8> {
        let mut writer = Trickle {
            out: Vec::new(),
            step: usize::MAX,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(queue.poll_flush(&mut writer, &mut cx).is_ready());
        writer.out
    }

    fn frame(byte: u8, len: usize) -> (Header, Bytes) {
        (
            Header::new(true, false, OpCode::Text, len),
            Bytes::from(vec![byte; len]),
        )
    }

    #[test]
    fn an_emptied_queue_lends_its_storage_to_the_next_one() {
        // Each test runs on its own thread: the pool starts empty.
        assert_eq!(spare::count(), 0);
        let mut first = WriteQueue::default();
        let (header, payload) = frame(b'a', 5);
        first.push(header, payload);
        let capacity = first.chunks.capacity();
        assert!(capacity > 0);
        assert_eq!(flushed(&mut first), b"\x81\x05aaaaa");
        // The emptied queue holds nothing; its storage waits in the pool.
        assert_eq!(first.chunks.capacity(), 0);
        assert_eq!(spare::count(), 1);

        let mut second = WriteQueue::default();
        let (header, payload) = frame(b'b', 3);
        second.push(header, payload);
        assert_eq!(spare::count(), 0, "the second queue took the spare storage");
        assert_eq!(second.chunks.capacity(), capacity);
        assert_eq!(flushed(&mut second), b"\x81\x03bbb");
        assert_eq!(spare::count(), 1);
    }

    #[test]
    fn the_pool_keeps_neither_large_queues_nor_too_many() {
        // A burst grows a queue past the largest kept: it is freed, not pooled.
        let mut burst = WriteQueue::default();
        for i in 0..=spare::MAX_CAPACITY {
            let (header, payload) = frame(b'x', i);
            burst.push(header, payload);
        }
        assert!(burst.chunks.capacity() > spare::MAX_CAPACITY);
        assert_eq!(
            flushed(&mut burst).len(),
            burst_len(spare::MAX_CAPACITY + 1)
        );
        assert_eq!(spare::count(), 0);

        // More emptied queues than the pool holds: the pool stops at its bound.
        let mut queues: Vec<WriteQueue> = (0..spare::MAX_SPARES + 4)
            .map(|_| {
                let mut queue = WriteQueue::default();
                let (header, payload) = frame(b'y', 1);
                queue.push(header, payload);
                queue
            })
            .collect();
        for queue in &mut queues {
            assert_eq!(flushed(queue), b"\x81\x01y");
        }
        assert_eq!(spare::count(), spare::MAX_SPARES);
    }

    /// Bytes on the wire for frames of 0, 1, ... `count - 1` payload bytes (2-byte headers).
    fn burst_len(count: usize) -> usize {
        (0..count).map(|i| 2 + i).sum()
    }

    #[test]
    fn writes_of_few_and_of_many_frames_gather_every_byte() {
        // One and two frames take the short slice array, three and more the long one; a
        // trickling writer splits them anywhere.
        for frames in [1usize, 2, 3, 40] {
            for step in [1, 7, usize::MAX] {
                let mut queue = WriteQueue::default();
                let mut expected = Vec::new();
                for i in 0..frames {
                    let (header, payload) = frame(b'0' + (i % 10) as u8, i + 1);
                    expected.extend_from_slice(header.as_bytes());
                    expected.extend_from_slice(&payload);
                    queue.push(header, payload);
                }
                let mut writer = Trickle {
                    out: Vec::new(),
                    step,
                };
                let mut cx = Context::from_waker(std::task::Waker::noop());
                assert!(queue.poll_flush(&mut writer, &mut cx).is_ready());
                assert_eq!(writer.out, expected, "{frames} frames, step {step}");
                assert_eq!(queue.queued(), 0);
            }
        }
    }
}
