//! The per-thread read buffer: every connection polled on a thread reads into the same
//! 64 KiB, so an idle connection holds no read buffer at all.
//!
//! A read is synchronous inside a poll (`poll_read` either fills the buffer or returns
//! `Pending`), and the decoder consumes the bytes before the poll returns, so one buffer per
//! thread is enough; what a poll cannot consume (the frames behind the message it returns)
//! is copied into the connection's own leftover buffer. Work-stealing runtimes move tasks
//! between threads between polls, never during one, so this holds for them too.

use std::cell::Cell;

/// Size of each thread's read buffer.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;

thread_local! {
    static READ_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's read buffer (allocated on first use). The buffer is taken out
/// of the thread-local for the call, so a nested call (none happens in this crate, but a
/// `poll_read` could poll another connection) finds it gone and gets a buffer of its own.
// Inlined into the read path (one caller per instantiation): a call of its own cost ~126 Ir
// per read in the relay's echo (callgrind).
#[inline]
pub(crate) fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buffer = READ_BUFFER.try_with(Cell::take).unwrap_or_default();
    if buffer.len() != READ_BUFFER_SIZE {
        buffer = vec![0u8; READ_BUFFER_SIZE];
    }
    let result = f(&mut buffer);
    let _ = READ_BUFFER.try_with(|cell| cell.set(buffer));
    result
}
