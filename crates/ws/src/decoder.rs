//! The streaming decoder of client frames: bytes in, whole messages and control frames out.
//!
//! It keeps no copy of the input. A frame header split across reads waits in a 14-byte
//! inline array; payload bytes are unmasked straight into the message being assembled, so
//! a frame split across reads costs nothing more than its own payload. Text is validated as
//! it arrives (a bad fragment, or a bad byte in a frame still arriving, fails at once), and
//! every limit is checked on the header, before the payload is read:
//!
//! | problem | close code |
//! |---|---|
//! | RSV2/RSV3 set; RSV1 without permessage-deflate, or on a continuation or control frame | 1002 |
//! | reserved opcode; unmasked frame; 64-bit length with the top bit set | 1002 |
//! | control frame fragmented or over 125 bytes; close payload of 1 byte or a bad code | 1002 |
//! | continuation without a message, data frame inside a message | 1002 |
//! | text (or a close reason) that is not UTF-8 | 1007 |
//! | message over `max_message_size` (compressed messages: see [`compressed_limit`]) | 1009 |
//!
//! A permessage-deflate message (RSV1 on its first frame) is returned compressed; the
//! connection inflates it with the per-thread inflater and validates it then.

use bytes::Bytes;

use crate::frame::{
    parse_client_header, unmask, ClientHeader, HeaderParse, OpCode, MAX_CLIENT_HEADER,
    MAX_CONTROL_PAYLOAD,
};
use crate::message::{is_sendable_close_code, CloseReason};

/// What the decoder produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole data message; `compressed` when RSV1 was set (the payload is still deflated).
    Message {
        text: bool,
        compressed: bool,
        data: Vec<u8>,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// A valid close frame: its code (none when empty) and reason.
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// The peer broke the protocol or a limit: close with this.
    Fail(Failure),
}

/// A protocol failure: the close code to send, the reason word, a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: u16,
    pub(crate) reason: CloseReason,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn protocol(detail: impl Into<String>) -> Failure {
        Failure {
            code: 1002,
            reason: CloseReason::ProtocolError,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_utf8(what: &str) -> Failure {
        Failure {
            code: 1007,
            reason: CloseReason::ProtocolError,
            detail: format!("{what} is not valid UTF-8"),
        }
    }

    pub(crate) fn too_big(len: u64, max: usize) -> Failure {
        Failure {
            code: 1009,
            reason: CloseReason::MessageTooBig,
            detail: format!("message of {len}+ bytes exceeds the limit of {max} bytes"),
        }
    }
}

/// The largest compressed message accepted when `max` bounds the inflated size: deflate's
/// stored blocks add 5 bytes per 64 KiB to data that does not compress, so a message of
/// `max` bytes may be a little longer compressed.
pub(crate) fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 4096 + 64)
}

/// What a data frame's header reserves at most before its payload arrives.
const INITIAL_RESERVE: usize = 64 * 1024;

/// The frame whose header has been read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Where the next payload byte falls in the mask (payload bytes read, mod 4).
    phase: u8,
    /// Payload bytes still to come.
    remaining: u64,
}

/// A data message being assembled.
#[derive(Debug, Default)]
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be valid UTF-8 (text that is not compressed).
    utf8_checked: usize,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message_size: usize,
    /// permessage-deflate was negotiated: RSV1 may be set on the first frame of a message.
    deflate: bool,
    head: [u8; MAX_CLIENT_HEADER],
    head_len: u8,
    frame: Option<Frame>,
    message: Option<Partial>,
    /// The payload of a control frame as it arrives (empty and unallocated between frames).
    control: Vec<u8>,
}

impl Decoder {
    /// The largest message accepted.
    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn new(max_message_size: usize, deflate: bool) -> Decoder {
        Decoder {
            max_message_size,
            deflate,
            head: [0; MAX_CLIENT_HEADER],
            head_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// Consumes bytes of `input` until one item is complete or the input is used up.
    /// Returns the bytes consumed and the item, if any; without an item, all of `input` was
    /// consumed. After a [`Decoded::Fail`] the decoder must not be used again.
    pub(crate) fn decode(&mut self, input: &[u8]) -> (usize, Option<Decoded>) {
        let mut pos = 0;
        loop {
            if self.frame.is_none() {
                let header = match self.read_header(&input[pos..]) {
                    (used, None) => return (pos + used, None),
                    (used, Some(header)) => {
                        pos += used;
                        header
                    }
                };
                if let Err(failure) = self.start_frame(&header) {
                    return (pos, Some(Decoded::Fail(failure)));
                }
            }
            pos += self.read_payload(&input[pos..]);
            if let Some(item) = self.finish_frame() {
                return (pos, Some(item));
            }
            if pos == input.len() {
                return (pos, None);
            }
        }
    }

    // ===== headers =====

    /// Reads a header from the start of `input`, or adds to the one already begun.
    fn read_header(&mut self, input: &[u8]) -> (usize, Option<ClientHeader>) {
        if self.head_len == 0 {
            match parse_client_header(input) {
                HeaderParse::Complete(header) => return (header.header_len, Some(header)),
                HeaderParse::BadLength => return (0, Some(bad_length_header())),
                HeaderParse::Incomplete(_) => {}
            }
        }
        let mut used = 0;
        loop {
            let have = usize::from(self.head_len);
            match parse_client_header(&self.head[..have]) {
                HeaderParse::Complete(header) => {
                    self.head_len = 0;
                    return (used, Some(header));
                }
                HeaderParse::BadLength => {
                    self.head_len = 0;
                    return (used, Some(bad_length_header()));
                }
                HeaderParse::Incomplete(need) => {
                    let take = (need - have).min(input.len() - used);
                    if take == 0 {
                        return (used, None);
                    }
                    self.head[have..have + take].copy_from_slice(&input[used..used + take]);
                    self.head_len += take as u8;
                    used += take;
                }
            }
        }
    }

    /// Checks a frame header against RFC 6455, RFC 7692 and the size limit, and starts the
    /// frame (and, for a first data frame, the message).
    fn start_frame(&mut self, header: &ClientHeader) -> Result<(), Failure> {
        if header.payload_len >> 63 != 0 {
            return Err(Failure::protocol("frame length has its top bit set"));
        }
        if header.rsv23 {
            return Err(Failure::protocol("reserved bits RSV2/RSV3 set"));
        }
        let opcode = OpCode::from_bits(header.opcode_bits).ok_or_else(|| {
            Failure::protocol(format!("reserved opcode {:#x}", header.opcode_bits))
        })?;
        if !header.masked {
            return Err(Failure::protocol("client frame is not masked"));
        }
        let first_data = matches!(opcode, OpCode::Text | OpCode::Binary);
        if header.rsv1 && !(self.deflate && first_data) {
            return Err(Failure::protocol(
                "RSV1 set without permessage-deflate or outside a message's first frame",
            ));
        }
        if opcode.is_control() {
            check_control(header)?;
            self.control = Vec::with_capacity(header.payload_len as usize);
        } else {
            self.start_data(opcode, header)?;
        }
        self.frame = Some(Frame {
            opcode,
            fin: header.fin,
            mask: header.mask,
            phase: 0,
            remaining: header.payload_len,
        });
        Ok(())
    }

    fn start_data(&mut self, opcode: OpCode, header: &ClientHeader) -> Result<(), Failure> {
        let continuation = opcode == OpCode::Continuation;
        match (&self.message, continuation) {
            (Some(_), false) => {
                return Err(Failure::protocol(
                    "new data frame while a fragmented message is unfinished",
                ))
            }
            (None, true) => {
                return Err(Failure::protocol(
                    "continuation frame without a message to continue",
                ))
            }
            _ => {}
        }
        let message = self.message.get_or_insert_with(|| Partial {
            text: opcode == OpCode::Text,
            compressed: header.rsv1,
            ..Partial::default()
        });
        let limit = if message.compressed {
            compressed_limit(self.max_message_size)
        } else {
            self.max_message_size
        };
        let total = (message.data.len() as u64).saturating_add(header.payload_len);
        if total > limit as u64 {
            return Err(Failure::too_big(total, self.max_message_size));
        }
        // Room for the frame, up to 64 KiB: a header alone must not make us allocate the
        // whole limit (the rest grows as the payload arrives, see `read_payload`).
        message
            .data
            .reserve_exact((header.payload_len as usize).min(INITIAL_RESERVE));
        Ok(())
    }

    // ===== payloads =====

    /// Copies and unmasks as much of the current frame's payload as `input` holds.
    fn read_payload(&mut self, input: &[u8]) -> usize {
        let Some(frame) = self.frame.as_mut() else {
            return 0;
        };
        let take = frame.remaining.min(input.len() as u64) as usize;
        if take == 0 {
            return 0;
        }
        let target = if frame.opcode.is_control() {
            &mut self.control
        } else {
            match self.message.as_mut() {
                Some(message) => &mut message.data,
                None => return 0,
            }
        };
        if target.capacity() - target.len() < take {
            // Double, but never past the end of this frame: a message that arrives in many
            // reads ends with at most twice its size reserved, usually exactly its size.
            let remaining = frame.remaining as usize;
            target.reserve_exact(remaining.min(target.len().max(take)));
        }
        let start = target.len();
        target.extend_from_slice(&input[..take]);
        unmask(&mut target[start..], frame.mask, usize::from(frame.phase));
        frame.phase = ((usize::from(frame.phase) + take) % 4) as u8;
        frame.remaining -= take as u64;
        take
    }

    /// At the end of a frame, the item it completes, if any; a failure as soon as the text
    /// received so far cannot be UTF-8.
    fn finish_frame(&mut self) -> Option<Decoded> {
        if let Err(failure) = self.check_text_so_far() {
            return Some(Decoded::Fail(failure));
        }
        let frame = self.frame?;
        if frame.remaining > 0 {
            return None;
        }
        self.frame = None;
        if frame.opcode.is_control() {
            return Some(self.control_frame(frame.opcode));
        }
        if frame.fin {
            return Some(self.finish_message());
        }
        None
    }

    /// Validates the text added since the last check; an incomplete character at the end
    /// may still be completed by the next bytes.
    fn check_text_so_far(&mut self) -> Result<(), Failure> {
        let Some(message) = self.message.as_mut().filter(|m| m.text && !m.compressed) else {
            return Ok(());
        };
        match std::str::from_utf8(&message.data[message.utf8_checked..]) {
            Ok(_) => message.utf8_checked = message.data.len(),
            Err(e) if e.error_len().is_some() => return Err(Failure::invalid_utf8("text")),
            Err(e) => message.utf8_checked += e.valid_up_to(),
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Decoded {
        let message = self.message.take().unwrap_or_default();
        if message.text && !message.compressed && message.utf8_checked != message.data.len() {
            return Decoded::Fail(Failure::invalid_utf8("text"));
        }
        Decoded::Message {
            text: message.text,
            compressed: message.compressed,
            data: message.data,
        }
    }

    fn control_frame(&mut self, opcode: OpCode) -> Decoded {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OpCode::Ping => Decoded::Ping(Bytes::from(payload)),
            OpCode::Pong => Decoded::Pong(Bytes::from(payload)),
            _ => close_frame(&payload),
        }
    }
}

/// A header that [`Decoder::start_frame`] refuses for its length.
fn bad_length_header() -> ClientHeader {
    ClientHeader {
        fin: true,
        rsv1: false,
        rsv23: false,
        opcode_bits: 0x2,
        masked: true,
        payload_len: u64::MAX,
        mask: [0; 4],
        header_len: 0,
    }
}

fn check_control(header: &ClientHeader) -> Result<(), Failure> {
    if !header.fin {
        return Err(Failure::protocol("fragmented control frame"));
    }
    if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(Failure::protocol(format!(
            "control frame payload of {} bytes (over 125)",
            header.payload_len
        )));
    }
    Ok(())
}

/// Reads a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_frame(payload: &[u8]) -> Decoded {
    let (code, reason) = match payload {
        [] => {
            return Decoded::Close {
                code: None,
                reason: String::new(),
            }
        }
        [_] => return Decoded::Fail(Failure::protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !is_sendable_close_code(code) {
        return Decoded::Fail(Failure::protocol(format!("invalid close code {code}")));
    }
    match std::str::from_utf8(reason) {
        Ok(reason) => Decoded::Close {
            code: Some(code),
            reason: reason.to_owned(),
        },
        Err(_) => Decoded::Fail(Failure::invalid_utf8("close reason")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::Header;

    /// A masked client frame: the server's header encoding with the mask bit and key added
    /// (any 4-bit `opcode`, reserved ones included).
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Header::new(fin, rsv1, OpCode::Binary, payload.len())
            .as_bytes()
            .to_vec();
        out[0] = (out[0] & 0xF0) | opcode;
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        unmask(&mut out[start..], mask, 0);
        out
    }

    /// Decodes `input` fed in pieces cut at `cuts`; returns every item.
    fn decode_in_pieces(decoder: &mut Decoder, input: &[u8], cuts: &[usize]) -> Vec<Decoded> {
        let mut items = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(0);
        bounds.push(input.len());
        bounds.sort_unstable();
        for piece in bounds.windows(2).map(|w| &input[w[0]..w[1]]) {
            let mut rest = piece;
            loop {
                let (used, item) = decoder.decode(rest);
                assert!(used <= rest.len());
                rest = &rest[used..];
                match item {
                    Some(item) => items.push(item),
                    None => break,
                }
            }
            assert!(rest.is_empty(), "without an item, all input is consumed");
        }
        items
    }

    /// A message as (text, payload, fragment sizes).
    fn message() -> impl Strategy<Value = (bool, Vec<u8>, Vec<usize>)> {
        let text = "[a-zé€😀 ]{0,300}".prop_map(|s: String| (true, s.into_bytes()));
        let binary = proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|b| (false, b));
        (
            prop_oneof![text, binary],
            proptest::collection::vec(1usize..400, 0..4),
        )
            .prop_map(|((text, data), fragments)| (text, data, fragments))
    }

    proptest! {
        #[test]
        fn messages_split_anywhere_decode_to_the_same_messages(
            messages in proptest::collection::vec(message(), 1..8),
            pings in proptest::collection::vec(any::<bool>(), 8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            mask in any::<[u8; 4]>(),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (i, (text, data, fragments)) in messages.iter().enumerate() {
                // Cut the message into fragments; a ping may sit between two of them.
                let mut pieces = Vec::new();
                let mut rest = &data[..];
                for size in fragments {
                    let size = (*size).min(rest.len());
                    pieces.push(&rest[..size]);
                    rest = &rest[size..];
                }
                pieces.push(rest);
                let last = pieces.len() - 1;
                for (j, piece) in pieces.iter().enumerate() {
                    let opcode = match (j, text) { (0, true) => 1, (0, false) => 2, _ => 0 };
                    wire.extend(frame(j == last, false, opcode, piece, mask));
                    if j == 0 && j != last && pings[i] {
                        wire.extend(frame(true, false, 0x9, b"ping", mask));
                        expected.push(Decoded::Ping(Bytes::from_static(b"ping")));
                    }
                }
                expected.push(Decoded::Message { text: *text, compressed: false, data: data.clone() });
            }
            let mut decoder = Decoder::new(1 << 20, false);
            prop_assert_eq!(decode_in_pieces(&mut decoder, &wire, &cuts), expected);
        }

        #[test]
        fn garbage_never_panics(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            deflate in any::<bool>(),
        ) {
            let mut decoder = Decoder::new(4096, deflate);
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            bounds.push(0);
            bounds.push(input.len());
            bounds.sort_unstable();
            'pieces: for piece in bounds.windows(2).map(|w| &input[w[0]..w[1]]) {
                let mut rest = piece;
                while let (used, Some(item)) = decoder.decode(rest) {
                    rest = &rest[used..];
                    if matches!(item, Decoded::Fail(_)) {
                        break 'pieces;
                    }
                }
            }
        }
    }

    #[test]
    fn a_header_alone_reserves_at_most_64_kib() {
        let mask = [1, 2, 3, 4];
        let payload = vec![7u8; 1 << 20];
        let whole = frame(true, false, 2, &payload, mask);
        let mut decoder = Decoder::new(1 << 20, false);
        // The header and a few bytes: 1 MiB announced, 64 KiB reserved.
        assert_eq!(decoder.decode(&whole[..20]).1, None);
        let reserved = decoder.message.as_ref().map_or(0, |m| m.data.capacity());
        assert_eq!(reserved, INITIAL_RESERVE);
        // The rest in reads of 60 KiB: exactly the message is reserved at the end.
        let mut rest = &whole[20..];
        while rest.len() > 60 * 1024 {
            assert_eq!(decoder.decode(&rest[..60 * 1024]).1, None);
            rest = &rest[60 * 1024..];
        }
        match decoder.decode(rest).1 {
            Some(Decoded::Message { data, .. }) => {
                assert_eq!(data, payload);
                assert!(data.capacity() <= 2 * payload.len());
            }
            other => panic!("expected the message, got {other:?}"),
        }
    }

    #[test]
    fn bad_utf8_fails_in_the_fragment_that_has_it() {
        let mask = [1, 2, 3, 4];
        let mut decoder = Decoder::new(1 << 20, false);
        // First fragment ends inside a character: fine so far.
        let (_, item) = decoder.decode(&frame(false, false, 1, &[b'a', 0xce], mask));
        assert_eq!(item, None);
        // The second completes it with a byte that is not a continuation: fail now, before
        // the message ends.
        let (_, item) = decoder.decode(&frame(false, false, 0, &[0x41, b'b'], mask));
        assert!(matches!(
            item,
            Some(Decoded::Fail(Failure { code: 1007, .. }))
        ));
        // Within one frame still arriving: the bad byte fails before the frame is complete.
        let mut decoder = Decoder::new(1 << 20, false);
        let whole = frame(true, false, 1, &[b'o', b'k', 0xff, b'x', b'y', b'z'], mask);
        let (_, item) = decoder.decode(&whole[..whole.len() - 3]);
        assert!(matches!(
            item,
            Some(Decoded::Fail(Failure { code: 1007, .. }))
        ));
    }

    #[test]
    fn protocol_violations_table() {
        let mask = [9, 8, 7, 6];
        // (frame bytes, deflate negotiated, expected close code)
        let mut unmasked = frame(true, false, 2, b"x", mask);
        unmasked[1] &= 0x7F;
        unmasked.drain(2..6);
        let cases: Vec<(Vec<u8>, bool, u16)> = vec![
            (frame(true, false, 0x3, b"", mask), false, 1002),
            (frame(true, false, 0xB, b"", mask), false, 1002),
            (frame(true, false, 0x0, b"x", mask), false, 1002),
            (frame(false, false, 0x9, b"", mask), false, 1002),
            (frame(true, false, 0x9, &[0; 126], mask), false, 1002),
            (frame(true, true, 0x1, b"x", mask), false, 1002),
            (frame(true, true, 0x9, b"", mask), true, 1002),
            (
                {
                    let mut f = frame(true, false, 2, b"", mask);
                    f[0] |= 0x20;
                    f
                },
                false,
                1002,
            ),
            (unmasked, false, 1002),
            (frame(true, false, 0x8, &[3], mask), false, 1002),
            (frame(true, false, 0x8, &[3, 0xed], mask), false, 1002),
            (frame(true, false, 0x8, &[3, 0xe8, 0xff], mask), false, 1007),
            (frame(true, false, 0x2, &[0; 5000], mask), false, 1009),
        ];
        for (i, (bytes, deflate, code)) in cases.into_iter().enumerate() {
            let mut decoder = Decoder::new(4096, deflate);
            let (_, item) = decoder.decode(&bytes);
            match item {
                Some(Decoded::Fail(failure)) => assert_eq!(failure.code, code, "case {i}"),
                other => panic!("case {i}: expected a failure, got {other:?}"),
            }
        }
        // A continuation inside a fragmented message with RSV1: only the first may have it.
        let mut decoder = Decoder::new(4096, true);
        assert_eq!(decoder.decode(&frame(false, true, 1, b"x", mask)).1, None);
        let (_, item) = decoder.decode(&frame(true, true, 0, b"y", mask));
        assert!(matches!(
            item,
            Some(Decoded::Fail(Failure { code: 1002, .. }))
        ));
    }
}
