//! Client bytes into a `WsConnection` (RFC 6455 frames, RFC 7692 compressed messages), cut
//! into reads at arbitrary points: never a panic, and the connection always ends with one
//! `Closed` (the input ends with EOF).
//!
//! Input: byte 0 picks compression (bit 0) and the message limit (bits 1..); bytes 1..=8 are
//! read sizes; the rest is what the client sends.

#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsrelay_ws::{Compression, Config, Event, WsConnection};

/// Yields `data` in reads of the given sizes, then EOF; swallows writes.
struct Script {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    read: usize,
}

impl AsyncRead for Script {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = self.sizes[self.read % self.sizes.len()];
        self.read += 1;
        let end = (self.at + size).min(self.data.len()).min(self.at + buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, sizes @ .., ] = input else { return };
    let (sizes, data) = sizes.split_at(sizes.len().min(8));
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();
    let sizes = if sizes.is_empty() { vec![4096] } else { sizes };
    let max = 16 + usize::from(flags >> 1) * 512;
    let deflate = (flags & 1 == 1).then(|| {
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("permessage-deflate"));
        Compression::default().negotiate(&headers)
    }).flatten();
    let io = Script { data: data.to_vec(), at: 0, sizes, read: 0 };
    let config = Config::default().max_message_size(max);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let mut conn = WsConnection::with_parts(io, &config, deflate, Bytes::new());
        // Every read makes progress and the data ends with EOF: the connection ends.
        for _ in 0..data.len() + 16 {
            match conn.next_event().await {
                Event::Message(message) => assert!(message.data().len() <= max),
                Event::Pong(payload) => assert!(payload.len() <= 125),
                Event::Closed(_) => return,
            }
        }
        panic!("the connection did not end at the end of its input");
    });
});
