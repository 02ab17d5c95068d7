//! permessage-deflate compression and inflation (RFC 7692 §7.2) with per-thread zlib state.
//!
//! Every connection negotiates no context takeover in both directions
//! ([`crate::extension`]), so each message is compressed or inflated on its own, from a reset
//! state, within one synchronous call. The zlib state therefore lives in thread-locals, one
//! compressor per window size in use and one inflater: a compressed connection holds none.
//! Memory per thread: about 256 KiB per compressor window in use (zlib's window plus hash
//! tables at memLevel 8) and 40 KiB for the inflater.

use std::cell::{Cell, RefCell};

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with; RFC 7692 §7.2.1 removes it from the wire and §7.2.2 puts it
/// back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// Compressors by window bits and level, made on first use (one per pair in use).
    static COMPRESSORS: RefCell<Vec<(u8, u32, Compress)>> = const { RefCell::new(Vec::new()) };
    static INFLATER: Cell<Option<Decompress>> = const { Cell::new(None) };
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit.
    TooBig,
    /// It is not valid deflate data.
    Corrupt(String),
}

/// Compresses `data` as one message with a `window_bits` window at `level`; returns the
/// payload to send (RFC 7692 §7.2.1: the sync flush's tail removed).
///
/// Data that does not compress comes out a few bytes longer (zlib falls back to stored
/// blocks). It is still sent compressed: RFC 7692 §6 would allow sending such a message
/// as it is, but at least one conformance client (kosoku) mishandles uncompressed messages
/// on a compressed connection, and a stored block costs 5 bytes per 64 KiB.
pub(crate) fn compress(data: &[u8], window_bits: u8, level: u32) -> Vec<u8> {
    let window_bits = window_bits.clamp(9, 15);
    let level = level.min(9);
    // zlib's deflateBound for stored blocks, plus the sync flush: enough in one go.
    let mut out = Vec::with_capacity(data.len() + data.len() / 4096 * 5 + 64);
    with_compressor(window_bits, level, |compressor| {
        compressor.reset();
        loop {
            let consumed = compressor.total_in() as usize;
            let input = data.get(consumed..).unwrap_or_default();
            let status = compressor.compress_vec(input, &mut out, FlushCompress::Sync);
            // The flush is complete when all input is taken and output room is left.
            let done = compressor.total_in() as usize == data.len() && out.len() < out.capacity();
            if status.is_err() || done {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
    });
    if out.ends_with(&SYNC_TAIL) {
        out.truncate(out.len() - SYNC_TAIL.len());
    }
    out
}

/// Inflates one compressed message, refusing to produce more than `max` bytes.
pub(crate) fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflater = INFLATER
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Decompress::new(false));
    inflater.reset(false);
    let result = inflate_with(&mut inflater, data, max);
    let _ = INFLATER.try_with(|cell| cell.set(Some(inflater)));
    result
}

fn inflate_with(
    inflater: &mut Decompress,
    data: &[u8],
    max: usize,
) -> Result<Vec<u8>, InflateError> {
    let initial = data.len().saturating_mul(3).max(256);
    let mut out = Vec::with_capacity(initial.min(max.saturating_add(1)));
    for input in [data, &SYNC_TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                // Grow by doubling, but never past one byte over the limit: that byte is
                // how an inflation past the limit shows.
                let room = (max + 1).saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(out.capacity().max(1024).min(room));
            }
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            pos += (inflater.total_in() - before_in) as usize;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): what follows, the tail included, is not data.
                return Ok(out);
            }
            let progressed = inflater.total_in() != before_in || inflater.total_out() != before_out;
            let room_left = out.len() < out.capacity();
            if room_left && (pos == input.len() || !progressed) {
                break;
            }
        }
    }
    Ok(out)
}

/// Runs `f` with this thread's compressor for `window_bits` and `level`, made on first use.
fn with_compressor<R>(window_bits: u8, level: u32, f: impl FnOnce(&mut Compress) -> R) -> R {
    let taken = COMPRESSORS
        .try_with(|cell| {
            let mut compressors = cell.try_borrow_mut().ok()?;
            let at = compressors
                .iter()
                .position(|(bits, lvl, _)| *bits == window_bits && *lvl == level)?;
            Some(compressors.swap_remove(at).2)
        })
        .ok()
        .flatten();
    let mut compressor = taken.unwrap_or_else(|| {
        Compress::new_with_window_bits(flate2::Compression::new(level), false, window_bits)
    });
    let result = f(&mut compressor);
    let _ = COMPRESSORS.try_with(|cell| {
        if let Ok(mut compressors) = cell.try_borrow_mut() {
            compressors.push((window_bits, level, compressor));
        }
    });
    result
}

// The integration tests' data, so that both kinds of tests compress the same messages.
#[cfg(test)]
#[path = "../tests/support/data.rs"]
mod test_data;

#[cfg(test)]
mod tests {
    use super::test_data::json;
    use super::*;

    #[test]
    fn round_trip_at_every_window() {
        let data = json(10_000);
        for bits in 9..=15 {
            let compressed = compress(&data, bits, 1);
            assert!(compressed.len() < data.len() / 2, "window {bits}");
            assert_eq!(
                inflate(&compressed, data.len()).unwrap(),
                data,
                "window {bits}"
            );
        }
    }

    #[test]
    fn incompressible_data_grows_by_a_few_bytes_and_round_trips() {
        let mut state = 0x1234_5678u32;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let compressed = compress(&noise, 15, 6);
        // Stored blocks: 5 bytes per block of at most 64 KiB (zlib uses 16 KiB here).
        assert!(
            compressed.len() < noise.len() + noise.len() / 1000 + 16,
            "{}",
            compressed.len()
        );
        assert_eq!(inflate(&compressed, noise.len()).unwrap(), noise);
        assert_eq!(inflate(&compress(b"", 15, 1), 0).unwrap(), b"");
    }

    #[test]
    fn inflation_past_the_limit_is_too_big() {
        let zeros = vec![0u8; 1 << 20];
        let compressed = compress(&zeros, 15, 9);
        assert!(
            compressed.len() < 2048,
            "a zip bomb: {} bytes",
            compressed.len()
        );
        assert_eq!(
            inflate(&compressed, (1 << 20) - 1),
            Err(InflateError::TooBig)
        );
        assert_eq!(inflate(&compressed, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert!(matches!(
            inflate(&[0xff, 0xff, 0xff, 0x00, 0x12], 1024),
            Err(InflateError::Corrupt(_))
        ));
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&hello, 1024).unwrap(), b"Hello");
        assert_eq!(inflate(&[0x00], 1024).unwrap(), b"");
    }
}
