//! permessage-deflate negotiation (RFC 7692 §5, §7.1): read the client's offers in
//! `Sec-WebSocket-Extensions`, accept the first one we can honour, and write the response.
//!
//! What we answer, and why:
//!
//! * **Always `server_no_context_takeover` and `client_no_context_takeover`** (RFC 7692
//!   §7.1.1.1 and §7.1.1.2 let a server add both to any offer it accepts). Each message is
//!   then compressed and inflated on its own, so the deflate and inflate state is per thread
//!   (module `deflate`), not per connection: a compressed connection costs no more memory
//!   than a plain one, and a message compressed once is valid on every connection that
//!   negotiated the same window ([`crate::SharedFrame`]). Keeping the context would cost
//!   each connection a zlib state (about 256 KiB to compress at window 15, 40 KiB to
//!   inflate) for a better ratio on small repetitive messages.
//! * **`server_max_window_bits`**: when offered, the answer carries the smaller of the offer
//!   and our own setting ([`Compression::server_max_window_bits`]). An offer of 8 is
//!   declined: zlib cannot compress raw deflate with a 256-byte window.
//! * **`client_max_window_bits`** is ignored (allowed by §7.1.2.2): we inflate with a
//!   32 KiB window, which reads any smaller one, and hold no window between messages.
//! * An offer with an unknown or repeated parameter, or a bad value, is declined (§7.1), and
//!   the next offer is tried; when none fits, the connection is not compressed.

use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};

/// The extension token (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The smallest and largest LZ77 window (as a power of two) RFC 7692 allows.
const WINDOW_BITS: std::ops::RangeInclusive<u8> = 8..=15;

/// How a server compresses: whether and what it negotiates, and which messages it compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// Messages shorter than this many bytes are sent uncompressed: deflate's fixed cost
    /// (a block header, the flush marker) outweighs the gain on them. Default 256.
    pub threshold: usize,
    /// The zlib level, 0 (store) to 9 (smallest). Default 1: JSON messages of a few KiB lose
    /// little ratio at 1 and compress several times faster than at 6.
    pub level: u32,
    /// The largest window we compress with, 9 to 15. Default 15 (32 KiB, the best ratio; the
    /// state is per thread, so it costs no memory per connection).
    pub server_max_window_bits: u8,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            threshold: 256,
            level: 1,
            server_max_window_bits: 15,
        }
    }
}

impl Compression {
    /// Sets [`Compression::threshold`].
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets [`Compression::level`] (clamped to 0–9).
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`Compression::server_max_window_bits`] (clamped to 9–15).
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Accepts the first offer in `headers` we can honour; `None` when there is none.
    pub fn negotiate(&self, headers: &HeaderMap) -> Option<Deflate> {
        offers(headers).find_map(|params| self.accept(&params))
    }

    /// The parameters we answer to one offer, or `None` to decline it.
    fn accept(&self, params: &[(&str, Option<&str>)]) -> Option<Deflate> {
        let mut seen = Vec::with_capacity(params.len());
        let mut server_bits = None;
        for &(name, value) in params {
            if seen.contains(&name) {
                return None;
            }
            seen.push(name);
            match (name, value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
                ("server_max_window_bits", Some(value)) => {
                    server_bits = Some(window_bits(value)?);
                }
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(value)) => {
                    window_bits(value)?;
                }
                _ => return None,
            }
        }
        let ours = self.server_max_window_bits.clamp(9, 15);
        let server_max_window_bits = match server_bits {
            Some(8) => return None,
            Some(offered) => Some(offered.min(ours)),
            None if ours < 15 => Some(ours),
            None => None,
        };
        Some(Deflate {
            server_max_window_bits: server_max_window_bits.unwrap_or(15),
            announce_window_bits: server_max_window_bits.is_some(),
            threshold: u32::try_from(self.threshold).unwrap_or(u32::MAX),
            level: self.level.min(9) as u8,
        })
    }
}

/// The permessage-deflate parameters of one connection, as negotiated. Both directions use no
/// context takeover (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    server_max_window_bits: u8,
    /// Whether the response names `server_max_window_bits` (it must when the offer did).
    announce_window_bits: bool,
    /// Packed (`u32`, saturating): this is kept per connection.
    threshold: u32,
    level: u8,
}

impl Deflate {
    /// The window (as a power of two) of the messages we send on this connection.
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    /// Messages shorter than this are sent uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold as usize
    }

    /// The zlib level of the messages we compress.
    pub fn level(&self) -> u32 {
        u32::from(self.level)
    }

    /// The `Sec-WebSocket-Extensions` value of the `101` answer.
    pub fn response_header(&self) -> HeaderValue {
        let mut value =
            format!("{PERMESSAGE_DEFLATE}; server_no_context_takeover; client_no_context_takeover");
        if self.announce_window_bits {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        // Built from a constant and digits: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The parameters of every permessage-deflate offer, in the client's order of preference.
fn offers(headers: &HeaderMap) -> impl Iterator<Item = Vec<(&str, Option<&str>)>> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|extension| {
            let mut parts = extension.split(';').map(str::trim);
            let name = parts.next()?;
            if !name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
                return None;
            }
            Some(parts.filter(|p| !p.is_empty()).map(param).collect())
        })
}

/// `name` or `name=value` (the value may be a quoted string, RFC 7692 §5.1).
fn param(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        None => (text, None),
        Some((name, value)) => {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (name.trim(), Some(unquoted))
        }
    }
}

/// A window-bits value: 8 to 15, digits only, no leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| WINDOW_BITS.contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(compression: Compression, offers: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for offer in offers {
            headers.append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(offer).unwrap(),
            );
        }
        compression
            .negotiate(&headers)
            .map(|deflate| deflate.response_header().to_str().unwrap().to_owned())
    }

    #[test]
    fn negotiation_table() {
        const BOTH: &str =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        let default = Compression::default();
        // (offers, our answer)
        let cases: &[(&[&str], Option<String>)] = &[
            (&[], None),
            (&["x-webkit-deflate-frame"], None),
            (&["permessage-deflate"], Some(BOTH.into())),
            (
                &["permessage-deflate; client_max_window_bits"],
                Some(BOTH.into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits=10"],
                Some(BOTH.into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits=9"],
                Some(format!("{BOTH}; server_max_window_bits=9")),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"12\""],
                Some(format!("{BOTH}; server_max_window_bits=12")),
            ),
            // 8 cannot be honoured: declined, and the next offer is taken.
            (&["permessage-deflate; server_max_window_bits=8"], None),
            (
                &["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
                Some(BOTH.into()),
            ),
            // Bad or unknown parameters decline the offer.
            (&["permessage-deflate; server_max_window_bits"], None),
            (&["permessage-deflate; server_max_window_bits=16"], None),
            (&["permessage-deflate; server_max_window_bits=010"], None),
            (&["permessage-deflate; client_max_window_bits=7"], None),
            (&["permessage-deflate; server_no_context_takeover=1"], None),
            (&["permessage-deflate; mystery"], None),
            (
                &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
                None,
            ),
            (
                &[
                    "permessage-deflate; mystery",
                    "permessage-deflate; client_max_window_bits",
                ],
                Some(BOTH.into()),
            ),
        ];
        for (offers, expected) in cases {
            assert_eq!(&answer(default, offers), expected, "offers {offers:?}");
        }
        let small = Compression::default().server_max_window_bits(10);
        assert_eq!(
            answer(small, &["permessage-deflate"]),
            Some(format!("{BOTH}; server_max_window_bits=10"))
        );
        assert_eq!(
            answer(small, &["permessage-deflate; server_max_window_bits=12"]),
            Some(format!("{BOTH}; server_max_window_bits=10"))
        );
    }
}
