//! Frames: one NATS message carries one frame, without NATS headers (NATS headers cost a
//! third of the throughput, `docs/cluster-design.md §2`).
//!
//! Layout, big endian:
//!
//! ```text
//! version u8 (5), type u8, flags u8, incarnation u32,
//! src_len u8, src, dst_len u8, dst                      the two node names
//! data:      session u64, seq u64, ack_session u64, count u16, count × (len u32, envelope)
//! heartbeat: session u64, published u64, ack_session u64, ack_seq u64, ack_bytes u64,
//!            grant_bytes u64, grant_frames u32, probe u8
//! reset:     session u64, kept u8
//! tag [32]   only if flags bit 0: HMAC-SHA256 over every byte before it
//! ```
//!
//! A heartbeat carries the sender's session, its last published sequence number, an
//! acknowledgement of what it received (the last sequence number and the bytes of the
//! session's data frames up to it, whole NATS payloads) and the credit it grants: how many
//! bytes and frames beyond the acknowledged ones the other side may have in flight. A reset
//! names the session it ends, and says whether the sender kept its own side going (`kept`:
//! the session's frames were meant for another run of the sender's node, module `inbound`). A data frame also names the receiver's session the sender
//! accepts (`ack_session`, 0: none), as a heartbeat does: a node that restarted tells with
//! its first frame, whatever it is, whether it accepted the receiver's session from its
//! start, so the receiver need not end that session (module `shared`,
//! `end_restarted_connection`). Version 3 added the bytes and the grant (credits in bytes),
//! version 4 the data frame's `ack_session`, version 5 the reset's `kept`. Nodes of different
//! versions drop each other's
//! frames as malformed (`unknown version`, logged as such at most once a second).
//!
//! [`Codec::open`] accepts a frame only if it decodes completely, its source is the node
//! named by the subject's last token and not this node, its destination is this node, and,
//! with a cluster secret, its tag verifies. The receiver creates or changes nothing about a
//! peer before that, so garbage published to `wsr.<cluster>.n.<me>.<anything>` costs one
//! counter increment.

use bytes::{BufMut, Bytes, BytesMut};
use ring::hmac;

use crate::stats::DropReason;

const VERSION: u8 = 5;
const DATA: u8 = 0;
const HEARTBEAT: u8 = 1;
const RESET: u8 = 2;
/// A node announces itself on `wsr.<cluster>.all.<src>`: no destination, no body.
const HELLO: u8 = 3;
/// Flags bit 0: a tag of the cluster secret ends the frame.
const SIGNED: u8 = 1;
/// Bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// The smallest encoded envelope (a `u32` length and a one-byte array), to bound how much
/// a frame's `count` may make the decoder reserve.
const MIN_ENVELOPE: usize = 5;
/// Bytes before the node names' bytes: version, type, flags, incarnation, two name lengths.
const HEADER: usize = 9;
/// Bytes of a data frame's session, sequence number, acknowledged session and count.
const DATA_HEADER: usize = 26;

/// A frame accepted from a peer.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The sender's incarnation.
    pub(crate) inc: u32,
    /// What it carries.
    pub(crate) body: Body,
}

/// What a frame carries.
#[derive(Debug)]
pub(crate) enum Body {
    /// Frame `seq` of the sender's outbound `session`: a batch of encoded envelopes.
    /// `ack_session` is the receiver's session the sender accepted when it sealed the frame
    /// (0: none); a node accepts a session only from its first frame.
    Data {
        session: u64,
        seq: u64,
        ack_session: u64,
        envelopes: Vec<Bytes>,
    },
    /// A heartbeat, also used as acknowledgement and probe.
    Heartbeat(Heartbeat),
    /// The sender ended our outbound `session`; `kept`: it did not end its own side.
    Reset { session: u64, kept: bool },
}

/// A heartbeat, also used as acknowledgement and probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// The sender's current outbound session.
    pub(crate) session: u64,
    /// The last sequence number the sender published in `session` (0: none).
    pub(crate) published: u64,
    /// The receiver's session the sender acknowledges (0: none yet).
    pub(crate) ack_session: u64,
    /// The last sequence number received in `ack_session`.
    pub(crate) ack_seq: u64,
    /// The bytes of `ack_session`'s data frames 1 to `ack_seq` (whole frames).
    pub(crate) ack_bytes: u64,
    /// The credit the sender grants beyond what it acknowledges.
    pub(crate) grant: Grant,
    /// Asks for an immediate heartbeat back.
    pub(crate) probe: bool,
}

/// The credit a receiver grants: what the other side may have sent and not yet had
/// acknowledged, in bytes of data frames and in frames. A frame goes whenever nothing is in
/// flight, however large (module `writer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Bytes of data frames.
    pub(crate) bytes: u64,
    /// Data frames (bounds what the receiver's NATS subscription holds).
    pub(crate) frames: u32,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
    /// It does not decode.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// Its node names do not match the subject it came on.
    #[error("frame names another source or destination than its subject")]
    Misaddressed,
    /// It lacks a valid tag of the cluster secret (or has one this node cannot check).
    #[error("unauthenticated frame: {0}")]
    Unauthenticated(&'static str),
}

impl Rejected {
    /// The drop reason it is counted under.
    pub(crate) fn reason(self) -> DropReason {
        match self {
            Rejected::Malformed(_) => DropReason::Malformed,
            Rejected::Misaddressed => DropReason::Forged,
            Rejected::Unauthenticated(_) => DropReason::Unauthenticated,
        }
    }
}

/// Encodes this node's frames and checks the frames it receives.
#[derive(Debug)]
pub(crate) struct Codec {
    me: String,
    inc: u32,
    key: Option<hmac::Key>,
}

impl Codec {
    /// The codec of node `me`, incarnation `inc`; `key` signs and checks every frame.
    pub(crate) fn new(me: &str, inc: u32, key: Option<hmac::Key>) -> Codec {
        Codec {
            me: me.to_owned(),
            inc,
            key,
        }
    }

    /// The length of a data frame to node `to` with `count` envelopes of `bytes` in all, as
    /// [`data`](Codec::data) encodes it (the unit of credit).
    pub(crate) fn data_len(&self, to: &str, count: usize, bytes: usize) -> usize {
        let tag = if self.key.is_some() { TAG_LEN } else { 0 };
        HEADER + self.me.len() + to.len() + DATA_HEADER + 4 * count + bytes + tag
    }

    /// Data frame `seq` of `session` to node `to`, which names `to`'s session accepted here
    /// (`ack_session`, 0: none).
    pub(crate) fn data(
        &self,
        to: &str,
        (session, seq, ack_session): (u64, u64, u64),
        envelopes: &[Bytes],
    ) -> Bytes {
        let len: usize = envelopes.iter().map(|e| e.len() + 4).sum();
        let mut buf = self.header(DATA, to, DATA_HEADER + len);
        buf.put_u64(session);
        buf.put_u64(seq);
        buf.put_u64(ack_session);
        buf.put_u16(envelopes.len() as u16);
        for e in envelopes {
            buf.put_u32(e.len() as u32);
            buf.put_slice(e);
        }
        self.seal(buf)
    }

    /// A heartbeat to node `to`.
    pub(crate) fn heartbeat(&self, to: &str, hb: &Heartbeat) -> Bytes {
        let mut buf = self.header(HEARTBEAT, to, 53);
        buf.put_u64(hb.session);
        buf.put_u64(hb.published);
        buf.put_u64(hb.ack_session);
        buf.put_u64(hb.ack_seq);
        buf.put_u64(hb.ack_bytes);
        buf.put_u64(hb.grant.bytes);
        buf.put_u32(hb.grant.frames);
        buf.put_u8(u8::from(hb.probe));
        self.seal(buf)
    }

    /// A reset of `session` (the peer's outbound session) to node `to`; `kept`: this side
    /// goes on.
    pub(crate) fn reset(&self, to: &str, session: u64, kept: bool) -> Bytes {
        let mut buf = self.header(RESET, to, 9);
        buf.put_u64(session);
        buf.put_u8(u8::from(kept));
        self.seal(buf)
    }

    /// A hello to every node (no destination).
    pub(crate) fn hello(&self) -> Bytes {
        self.seal(self.header(HELLO, "", 0))
    }

    /// Checks a hello that arrived on `wsr.<cluster>.all.<src>`; the sender's incarnation.
    /// The same checks as [`open`](Codec::open), except that the destination is empty.
    pub(crate) fn open_hello(&self, src: &str, payload: Bytes) -> Result<u32, Rejected> {
        let (r, kind, inc) = self.unseal(src, "", payload)?;
        if kind != HELLO {
            return Err(Rejected::Malformed("not a hello"));
        }
        r.end()?;
        Ok(inc)
    }

    fn header(&self, kind: u8, to: &str, body: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(HEADER + self.me.len() + to.len() + body + TAG_LEN);
        buf.put_u8(VERSION);
        buf.put_u8(kind);
        buf.put_u8(if self.key.is_some() { SIGNED } else { 0 });
        buf.put_u32(self.inc);
        // Node names are at most 64 bytes (`valid_node_name`).
        buf.put_u8(self.me.len() as u8);
        buf.put_slice(self.me.as_bytes());
        buf.put_u8(to.len() as u8);
        buf.put_slice(to.as_bytes());
        buf
    }

    fn seal(&self, mut buf: BytesMut) -> Bytes {
        if let Some(key) = &self.key {
            let tag = hmac::sign(key, &buf);
            buf.put_slice(tag.as_ref());
        }
        buf.freeze()
    }

    /// Checks and decodes a frame that arrived on a subject whose last token is `src`.
    pub(crate) fn open(&self, src: &str, payload: Bytes) -> Result<Frame, Rejected> {
        let (mut r, kind, inc) = self.unseal(src, &self.me, payload)?;
        let body = match kind {
            DATA => r.data()?,
            HEARTBEAT => Body::Heartbeat(r.heartbeat()?),
            RESET => Body::Reset {
                session: r.u64()?,
                kept: r.u8()? != 0,
            },
            _ => return Err(Rejected::Malformed("unknown frame type")),
        };
        r.end()?;
        Ok(Frame { inc, body })
    }

    /// The checks every frame passes before its body is read: the version, the tag, and the
    /// addresses (from `src`, a valid name other than ours, to `to`). The reader is left at
    /// the body; also returns the frame type and the sender's incarnation.
    fn unseal(&self, src: &str, to: &str, payload: Bytes) -> Result<(Reader, u8, u32), Rejected> {
        if payload.first() != Some(&VERSION) {
            // Named apart from other garbage: a node of another version is the likely cause.
            return Err(Rejected::Malformed(
                "unknown version (all nodes must run wire format version 5)",
            ));
        }
        let mut r = Reader {
            buf: self.authenticated(payload)?,
        };
        let (_version, kind, _flags) = (r.u8()?, r.u8()?, r.u8()?);
        let inc = r.u32()?;
        let from = r.name()?;
        let dest = r.name()?;
        if from != src || dest != to.as_bytes() || src == self.me || !valid_node_name(src) {
            return Err(Rejected::Misaddressed);
        }
        Ok((r, kind, inc))
    }

    /// Verifies a signed frame's tag (its last bytes) and returns the frame without it; an
    /// unsigned frame passes only where no secret is set. Runs before anything else of the
    /// frame is read, so an unauthenticated frame is never interpreted.
    fn authenticated(&self, mut frame: Bytes) -> Result<Bytes, Rejected> {
        let flags = *frame.get(2).ok_or(Rejected::Malformed("truncated"))?;
        match (&self.key, flags & SIGNED != 0) {
            (None, false) => Ok(frame),
            (None, true) => Err(Rejected::Unauthenticated(
                "signed, but no cluster secret is set here",
            )),
            (Some(_), false) => Err(Rejected::Unauthenticated("unsigned")),
            (Some(key), true) => {
                let Some(signed_len) = frame.len().checked_sub(TAG_LEN) else {
                    return Err(Rejected::Unauthenticated("no tag"));
                };
                let tag = frame.split_off(signed_len);
                hmac::verify(key, &frame, &tag)
                    .map_err(|_| Rejected::Unauthenticated("tag does not verify"))?;
                Ok(frame)
            }
        }
    }
}

/// Reads a frame front to back; every read is bounds-checked.
struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Nothing may follow the body.
    fn end(&self) -> Result<(), Rejected> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Rejected::Malformed("trailing bytes"))
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, Rejected> {
        if self.buf.len() < n {
            return Err(Rejected::Malformed("truncated"));
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self) -> Result<u8, Rejected> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Rejected> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Rejected> {
        let mut b = [0; 4];
        b.copy_from_slice(&self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, Rejected> {
        let mut b = [0; 8];
        b.copy_from_slice(&self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn name(&mut self) -> Result<Bytes, Rejected> {
        let len = usize::from(self.u8()?);
        self.take(len)
    }

    fn data(&mut self) -> Result<Body, Rejected> {
        let session = self.u64()?;
        let seq = self.u64()?;
        let ack_session = self.u64()?;
        let count = usize::from(self.u16()?);
        let mut envelopes = Vec::with_capacity(count.min(self.buf.len() / MIN_ENVELOPE));
        for _ in 0..count {
            let len = self.u32()? as usize;
            envelopes.push(self.take(len)?);
        }
        Ok(Body::Data {
            session,
            seq,
            ack_session,
            envelopes,
        })
    }

    fn heartbeat(&mut self) -> Result<Heartbeat, Rejected> {
        Ok(Heartbeat {
            session: self.u64()?,
            published: self.u64()?,
            ack_session: self.u64()?,
            ack_seq: self.u64()?,
            ack_bytes: self.u64()?,
            grant: Grant {
                bytes: self.u64()?,
                frames: self.u32()?,
            },
            probe: self.u8()? != 0,
        })
    }
}

/// Whether `name` can be a node or cluster name (one NATS subject token).
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterSecret;

    fn key(secret: &[u8]) -> Option<hmac::Key> {
        Some(ClusterSecret::new(secret).unwrap().frame_key("wsr"))
    }

    const HB: Heartbeat = Heartbeat {
        session: 7,
        published: 3,
        ack_session: 9,
        ack_seq: 2,
        ack_bytes: 300,
        grant: Grant {
            bytes: 4 << 20,
            frames: 512,
        },
        probe: true,
    };

    #[test]
    fn frames_round_trip_between_the_named_nodes() {
        let (a, b) = (Codec::new("a", 5, None), Codec::new("b", 6, None));
        let envs = [
            Bytes::from_static(b"\x91\x00"),
            Bytes::from_static(b"\x91\x01"),
        ];
        let frame = b.open("a", a.data("b", (1, 2, 3), &envs)).unwrap();
        assert_eq!(frame.inc, 5);
        match frame.body {
            Body::Data {
                session,
                seq,
                ack_session,
                envelopes,
            } => assert_eq!(
                (session, seq, ack_session, envelopes),
                (1, 2, 3, envs.to_vec())
            ),
            other => panic!("{other:?}"),
        }
        match b.open("a", a.heartbeat("b", &HB)).unwrap().body {
            Body::Heartbeat(hb) => assert_eq!(hb, HB),
            other => panic!("{other:?}"),
        }
        for kept in [false, true] {
            match b.open("a", a.reset("b", 11, kept)).unwrap().body {
                Body::Reset { session, kept: k } => assert_eq!((session, k), (11, kept)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn frames_for_another_node_or_from_another_subject_are_misaddressed() {
        let (a, b) = (Codec::new("a", 5, None), Codec::new("b", 6, None));
        let c = Codec::new("c", 7, None);
        assert_eq!(
            c.open("a", a.heartbeat("b", &HB)).unwrap_err(),
            Rejected::Misaddressed
        );
        assert_eq!(
            b.open("x", a.heartbeat("b", &HB)).unwrap_err(),
            Rejected::Misaddressed
        );
        // A node never takes a frame in its own name.
        assert_eq!(
            b.open("b", Codec::new("b", 1, None).heartbeat("b", &HB))
                .unwrap_err(),
            Rejected::Misaddressed
        );
    }

    #[test]
    fn with_a_secret_only_frames_signed_with_it_are_opened() {
        let a = Codec::new("a", 5, key(b"the cluster secret"));
        let b = Codec::new("b", 6, key(b"the cluster secret"));
        let wrong = Codec::new("a", 5, key(b"another secret!!!"));
        let unsigned = Codec::new("a", 5, None);
        assert!(b.open("a", a.heartbeat("b", &HB)).is_ok());
        for frame in [wrong.heartbeat("b", &HB), unsigned.heartbeat("b", &HB)] {
            assert!(matches!(
                b.open("a", frame),
                Err(Rejected::Unauthenticated(_))
            ));
        }
        // A receiver without the secret cannot check a signed frame and refuses it.
        let open = Codec::new("b", 6, None);
        assert!(matches!(
            open.open("a", a.heartbeat("b", &HB)),
            Err(Rejected::Unauthenticated(_))
        ));
        // Any flipped bit breaks the tag.
        let good = a.data("b", (1, 1, 0), &[Bytes::from_static(b"\x91\x00")]);
        for i in 0..good.len() {
            let mut bad = good.to_vec();
            bad[i] ^= 1;
            assert!(b.open("a", Bytes::from(bad)).is_err(), "bit flip at {i}");
        }
    }

    #[test]
    fn hellos_open_only_on_the_hello_path_and_from_their_subject() {
        let a = Codec::new("a", 5, key(b"the cluster secret"));
        let b = Codec::new("b", 6, key(b"the cluster secret"));
        assert_eq!(b.open_hello("a", a.hello()).unwrap(), 5);
        assert_eq!(
            b.open_hello("c", a.hello()).unwrap_err(),
            Rejected::Misaddressed
        );
        // A frame for one node is no hello, and a hello is no frame for one node.
        assert_eq!(
            b.open_hello("a", a.heartbeat("b", &HB)).unwrap_err(),
            Rejected::Misaddressed
        );
        assert_eq!(b.open("a", a.hello()).unwrap_err(), Rejected::Misaddressed);
        let unsigned = Codec::new("a", 5, None);
        assert!(matches!(
            b.open_hello("a", unsigned.hello()),
            Err(Rejected::Unauthenticated(_))
        ));
    }

    #[test]
    fn data_len_is_the_encoded_length() {
        let envs = [
            Bytes::from_static(b"\x91\x00"),
            Bytes::from(vec![0x91; 300]),
        ];
        for key in [None, key(b"the cluster secret")] {
            let a = Codec::new("node-a", 5, key);
            for envs in [&envs[..0], &envs[..1], &envs[..]] {
                let bytes = envs.iter().map(Bytes::len).sum();
                assert_eq!(
                    a.data_len("b", envs.len(), bytes),
                    a.data("b", (1, 1, 2), envs).len()
                );
            }
        }
    }

    #[test]
    fn a_frame_of_another_wire_format_version_is_refused_as_such() {
        let (a, b) = (Codec::new("a", 5, None), Codec::new("b", 6, None));
        let mut frame = a.heartbeat("b", &HB).to_vec();
        frame[0] = 3;
        assert!(matches!(
            b.open("a", Bytes::from(frame)),
            Err(Rejected::Malformed(why)) if why.starts_with("unknown version")
        ));
    }

    #[test]
    fn a_count_beyond_the_frame_is_malformed() {
        let a = Codec::new("a", 5, None);
        let mut frame = a.data("b", (1, 1, 0), &[]).to_vec();
        let count_at = frame.len() - 2;
        frame[count_at..].copy_from_slice(&u16::MAX.to_be_bytes());
        let b = Codec::new("b", 6, None);
        assert_eq!(
            b.open("a", Bytes::from(frame)).unwrap_err(),
            Rejected::Malformed("truncated")
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let b = Codec::new("b", 6, None);
            let signed = Codec::new("b", 6, key(b"the cluster secret"));
            let _ = b.open("a", Bytes::from(bytes.clone()));
            let _ = signed.open("a", Bytes::from(bytes));
        }
    }
}
