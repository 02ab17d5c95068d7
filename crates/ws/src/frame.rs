//! The wire format of one frame (RFC 6455 §5.2): opcodes, header encoding for server frames,
//! header decoding for client frames, and unmasking.
//!
//! Server frames are never masked, so a header is at most 10 bytes and fits in an inline
//! [`Header`]; writes send it beside the payload (vectored) instead of copying the payload
//! behind it.

/// The largest header of a server (unmasked) frame: 2 bytes + an 8-byte length.
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// The largest header of a client (masked) frame: 2 bytes + an 8-byte length + a 4-byte mask.
pub(crate) const MAX_CLIENT_HEADER: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode of the 4-bit value, `None` for the reserved ones (3–7, 11–15).
    pub(crate) fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// An encoded server frame header, kept inline (no allocation per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    bytes: [u8; MAX_SERVER_HEADER],
    len: u8,
}

impl Header {
    /// The header of an unmasked frame: `fin`, `rsv1` (the permessage-deflate bit, RFC 7692
    /// §6), the opcode and the payload length in its shortest form.
    pub(crate) fn new(fin: bool, rsv1: bool, opcode: OpCode, payload_len: usize) -> Header {
        let mut bytes = [0u8; MAX_SERVER_HEADER];
        bytes[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.bits();
        let len = match payload_len {
            0..=125 => {
                bytes[1] = payload_len as u8;
                2
            }
            126..=0xFFFF => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
                10
            }
        };
        Header { bytes, len }
    }

    /// The encoded bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The fixed part of a client frame header, once all of it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientHeader {
    pub(crate) fin: bool,
    pub(crate) rsv1: bool,
    /// RSV2 or RSV3 set: no extension we negotiate defines them.
    pub(crate) rsv23: bool,
    /// The raw 4-bit opcode (reserved values are checked by the decoder).
    pub(crate) opcode_bits: u8,
    pub(crate) masked: bool,
    pub(crate) payload_len: u64,
    pub(crate) mask: [u8; 4],
    /// Bytes the header took.
    pub(crate) header_len: usize,
}

/// What [`parse_client_header`] found in the first bytes of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderParse {
    /// More bytes are needed; at least this many in all.
    Incomplete(usize),
    /// A whole header.
    Complete(ClientHeader),
    /// A 64-bit length with its most significant bit set (RFC 6455 §5.2).
    BadLength,
}

/// Parses the header at the start of `bytes` (a client frame, masked or not).
pub(crate) fn parse_client_header(bytes: &[u8]) -> HeaderParse {
    let [b0, b1, ..] = *bytes else {
        return HeaderParse::Incomplete(2);
    };
    let masked = b1 & 0x80 != 0;
    let (length_bytes, short) = match b1 & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let header_len = 2 + length_bytes + if masked { 4 } else { 0 };
    if bytes.len() < header_len {
        return HeaderParse::Incomplete(header_len);
    }
    let payload_len = match short {
        Some(n) => n,
        None => {
            let mut be = [0u8; 8];
            be[8 - length_bytes..].copy_from_slice(&bytes[2..2 + length_bytes]);
            u64::from_be_bytes(be)
        }
    };
    if payload_len >> 63 != 0 {
        return HeaderParse::BadLength;
    }
    let mut mask = [0u8; 4];
    if masked {
        mask.copy_from_slice(&bytes[header_len - 4..header_len]);
    }
    HeaderParse::Complete(ClientHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv23: b0 & 0x30 != 0,
        opcode_bits: b0 & 0x0F,
        masked,
        payload_len,
        mask,
        header_len,
    })
}

/// Unmasks `data` in place; `phase` is the position in the frame's payload of `data[0]`
/// (mod 4), so a payload can be unmasked in pieces as it arrives.
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut rotated = [0u8; 4];
    for (i, byte) in rotated.iter_mut().enumerate() {
        *byte = mask[(phase + i) % 4];
    }
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_use_the_shortest_form() {
        // (payload length, encoded header length, second byte)
        for (len, header_len, b1) in [
            (0, 2, 0),
            (125, 2, 125),
            (126, 4, 126),
            (65535, 4, 126),
            (65536, 10, 127),
        ] {
            let header = Header::new(true, false, OpCode::Binary, len);
            assert_eq!(header.as_bytes().len(), header_len, "len {len}");
            assert_eq!(header.as_bytes()[0], 0x82);
            assert_eq!(header.as_bytes()[1], b1);
        }
        assert_eq!(
            Header::new(false, true, OpCode::Text, 1).as_bytes()[0],
            0x41
        );
    }

    #[test]
    fn client_headers_parse_in_pieces() {
        // A masked text frame of 300 bytes: 2 + 2 + 4 header bytes.
        let bytes = [0x81, 0xFE, 0x01, 0x2C, 1, 2, 3, 4];
        assert_eq!(parse_client_header(&bytes[..1]), HeaderParse::Incomplete(2));
        assert_eq!(parse_client_header(&bytes[..5]), HeaderParse::Incomplete(8));
        let HeaderParse::Complete(header) = parse_client_header(&bytes) else {
            panic!("complete header expected");
        };
        assert_eq!(header.payload_len, 300);
        assert_eq!(header.mask, [1, 2, 3, 4]);
        assert_eq!(header.header_len, 8);
        assert!(header.fin && header.masked && !header.rsv1);
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(parse_client_header(&huge), HeaderParse::BadLength);
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut whole = original.clone();
        unmask(&mut whole, mask, 0);
        let mut pieces = original.clone();
        let mut at = 0;
        for size in [1, 7, 13, 100, 3, 876] {
            unmask(&mut pieces[at..at + size], mask, at);
            at += size;
        }
        assert_eq!(whole, pieces);
        for (i, (&masked, &plain)) in whole.iter().zip(&original).enumerate() {
            assert_eq!(masked, plain ^ mask[i % 4]);
        }
    }
}
