//! Envelopes: one message or control signal between two processes on two nodes, encoded as
//! a MessagePack array `[kind, ...]`.
//!
//! Payload [`Value`]s are MessagePack: maps, arrays, strings, binary (`Bytes`), integers,
//! floats, booleans and nil. A frame (module `frame`) carries a batch of encoded envelopes;
//! they are decoded one by one after the frame's session accepted them.

use bytes::Bytes;
use rmp::Marker;
use wsrelay_process::{ExitResult, Map, Message, Pid, Unbuilt, Value, Visit};

/// Why an envelope could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed envelope: {0}")]
pub(crate) struct EnvelopeError(&'static str);

/// A message or control signal between two processes on two nodes.
#[derive(Debug, Clone)]
pub(crate) enum Envelope {
    Message {
        to: Pid,
        msg: Message,
    },
    Monitor {
        watcher: Pid,
        target: Pid,
    },
    Demonitor {
        watcher: Pid,
        target: Pid,
    },
    /// `target` exited; for the monitor held by `watcher`.
    Exit {
        watcher: Pid,
        target: Pid,
        result: ExitResult,
    },
    /// `from` (sender's node) links to `to` (receiver's node).
    Link {
        from: Pid,
        to: Pid,
    },
    Unlink {
        from: Pid,
        to: Pid,
    },
    /// `from` exited (or the link failed); for the link with `to`.
    LinkDown {
        from: Pid,
        to: Pid,
        result: ExitResult,
    },
    Cancel {
        from: Option<Pid>,
        to: Pid,
        reason: Value,
    },
    Terminate {
        to: Pid,
    },
    /// A group send: fanned out to the receiving node's local members of `group`.
    GroupSend {
        scope: String,
        group: String,
        msg: Message,
    },
    /// The sender's snapshot of its memberships begins (`end` false) or ends.
    GroupSync {
        end: bool,
    },
    /// Members of the sender in `group` of `scope`, with their join counts (0: gone).
    GroupSet {
        scope: String,
        group: String,
        members: Vec<(Pid, usize)>,
    },
}

/// The lane of envelopes that speak for no process (see `lanes`).
pub(crate) const NODE_LANE: u64 = u64::MAX;

const K_MESSAGE: u8 = 0;
const K_MONITOR: u8 = 1;
const K_DEMONITOR: u8 = 2;
const K_EXIT: u8 = 3;
const K_LINK: u8 = 4;
const K_UNLINK: u8 = 5;
const K_LINK_DOWN: u8 = 6;
const K_CANCEL: u8 = 7;
const K_TERMINATE: u8 = 8;
const K_GROUP_SEND: u8 = 9;
const K_GROUP_SYNC: u8 = 10;
const K_GROUP_SET: u8 = 11;

impl Envelope {
    /// The process on the sending node this envelope speaks for (checked by the receiver).
    pub(crate) fn sender(&self) -> Option<&Pid> {
        match self {
            Envelope::Message { msg, .. } => msg.from(),
            Envelope::Monitor { watcher, .. } | Envelope::Demonitor { watcher, .. } => {
                Some(watcher)
            }
            Envelope::Exit { target, .. } => Some(target),
            Envelope::Link { from, .. }
            | Envelope::Unlink { from, .. }
            | Envelope::LinkDown { from, .. } => Some(from),
            Envelope::Cancel { from, .. } => from.as_ref(),
            Envelope::GroupSend { msg, .. } => msg.from(),
            Envelope::Terminate { .. } | Envelope::GroupSync { .. } | Envelope::GroupSet { .. } => {
                None
            }
        }
    }

    /// The lane of the peer's queue this envelope waits in (module `lanes`): its sender's,
    /// so each process's messages and signals stay in order, or the node's.
    pub(crate) fn lane(&self) -> u64 {
        self.sender().map_or(NODE_LANE, Pid::id)
    }

    /// The process on the receiving node (none for group envelopes, which address the node).
    pub(crate) fn receiver(&self) -> Option<&Pid> {
        match self {
            Envelope::Message { to, .. }
            | Envelope::Link { to, .. }
            | Envelope::Unlink { to, .. }
            | Envelope::LinkDown { to, .. }
            | Envelope::Cancel { to, .. }
            | Envelope::Terminate { to } => Some(to),
            Envelope::Monitor { target, .. } | Envelope::Demonitor { target, .. } => Some(target),
            Envelope::Exit { watcher, .. } => Some(watcher),
            Envelope::GroupSend { .. } | Envelope::GroupSync { .. } | Envelope::GroupSet { .. } => {
                None
            }
        }
    }

    /// The encoding of an [`Envelope::Message`] from `from` to `to` on `topic` whose one
    /// payload is written from what `payload` shows ([`Unbuilt::visit`]), not built first;
    /// `None` if it shows nothing, or not one well-formed value (module `Writer`).
    pub(crate) fn encode_unbuilt(
        from: Option<&Pid>,
        to: &Pid,
        topic: &str,
        payload: &dyn Unbuilt,
    ) -> Option<Bytes> {
        let mut w = Vec::with_capacity(64);
        message_head(&mut w, from, to, topic);
        arr(&mut w, 1);
        let mut writer = Writer::new(&mut w);
        let shown = payload.visit(&mut writer) && writer.is_complete();
        shown.then(|| Bytes::from(w))
    }

    /// Encodes to MessagePack.
    pub(crate) fn encode(&self) -> Bytes {
        let mut w = Vec::with_capacity(64);
        match self {
            Envelope::Message { to, msg } => {
                message_head(&mut w, msg.from(), to, msg.topic());
                payloads(&mut w, msg);
            }
            Envelope::Monitor { watcher, target } => pair(&mut w, K_MONITOR, watcher, target),
            Envelope::Demonitor { watcher, target } => pair(&mut w, K_DEMONITOR, watcher, target),
            Envelope::Exit {
                watcher,
                target,
                result,
            } => pair_with_exit(&mut w, K_EXIT, watcher, target, result),
            Envelope::Link { from, to } => pair(&mut w, K_LINK, from, to),
            Envelope::Unlink { from, to } => pair(&mut w, K_UNLINK, from, to),
            Envelope::LinkDown { from, to, result } => {
                pair_with_exit(&mut w, K_LINK_DOWN, from, to, result)
            }
            Envelope::Cancel { from, to, reason } => {
                arr(&mut w, 4);
                uint(&mut w, K_CANCEL);
                opt_pid(&mut w, from.as_ref());
                string(&mut w, to.as_str());
                value(&mut w, reason);
            }
            Envelope::Terminate { to } => {
                arr(&mut w, 2);
                uint(&mut w, K_TERMINATE);
                string(&mut w, to.as_str());
            }
            Envelope::GroupSend { scope, group, msg } => {
                arr(&mut w, 6);
                uint(&mut w, K_GROUP_SEND);
                opt_pid(&mut w, msg.from());
                string(&mut w, scope);
                string(&mut w, group);
                string(&mut w, msg.topic());
                payloads(&mut w, msg);
            }
            Envelope::GroupSync { end } => {
                arr(&mut w, 2);
                uint(&mut w, K_GROUP_SYNC);
                let _ = rmp::encode::write_bool(&mut w, *end);
            }
            Envelope::GroupSet {
                scope,
                group,
                members,
            } => {
                arr(&mut w, 4);
                uint(&mut w, K_GROUP_SET);
                string(&mut w, scope);
                string(&mut w, group);
                arr(&mut w, 2 * members.len() as u32);
                for (pid, count) in members {
                    string(&mut w, pid.as_str());
                    let _ = rmp::encode::write_uint(&mut w, *count as u64);
                }
            }
        }
        Bytes::from(w)
    }

    /// Decodes one envelope.
    pub(crate) fn decode(buf: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut rd = Reader { buf };
        let len = rd.array_len()?;
        if len == 0 {
            return Err(EnvelopeError("no kind"));
        }
        // Fields past the ones a kind has are left unread (a newer peer may add some).
        let kind = rd.uint()?;
        let env = match u8::try_from(kind).unwrap_or(u8::MAX) {
            K_MESSAGE => {
                let from = rd.opt_pid()?;
                let to = rd.pid()?;
                let topic = rd.str("topic")?.to_owned();
                let msg = rd.message(from, topic)?;
                Envelope::Message { to, msg }
            }
            K_MONITOR => Envelope::Monitor {
                watcher: rd.pid()?,
                target: rd.pid()?,
            },
            K_DEMONITOR => Envelope::Demonitor {
                watcher: rd.pid()?,
                target: rd.pid()?,
            },
            K_EXIT => Envelope::Exit {
                watcher: rd.pid()?,
                target: rd.pid()?,
                result: rd.exit()?,
            },
            K_LINK => Envelope::Link {
                from: rd.pid()?,
                to: rd.pid()?,
            },
            K_UNLINK => Envelope::Unlink {
                from: rd.pid()?,
                to: rd.pid()?,
            },
            K_LINK_DOWN => Envelope::LinkDown {
                from: rd.pid()?,
                to: rd.pid()?,
                result: rd.exit()?,
            },
            K_CANCEL => Envelope::Cancel {
                from: rd.opt_pid()?,
                to: rd.pid()?,
                reason: rd.value(MAX_DEPTH)?,
            },
            K_TERMINATE => Envelope::Terminate { to: rd.pid()? },
            K_GROUP_SEND => {
                let from = rd.opt_pid()?;
                let scope = rd.str("scope")?.to_owned();
                let group = rd.str("group")?.to_owned();
                let topic = rd.str("topic")?.to_owned();
                let msg = rd.message(from, topic)?;
                Envelope::GroupSend { scope, group, msg }
            }
            K_GROUP_SYNC => Envelope::GroupSync {
                end: match rd.marker()? {
                    Marker::True => true,
                    Marker::False => false,
                    _ => return Err(EnvelopeError("sync phase")),
                },
            },
            K_GROUP_SET => {
                let scope = rd.str("scope")?.to_owned();
                let group = rd.str("group")?.to_owned();
                let flat = rd.array_len()?;
                if flat % 2 != 0 {
                    return Err(EnvelopeError("members"));
                }
                let mut members = Vec::with_capacity(rd.cap(flat / 2));
                for _ in 0..flat / 2 {
                    let pid = rd.pid()?;
                    let count = rd.uint().map_err(|_| EnvelopeError("join count"))?;
                    members.push((pid, usize::try_from(count).unwrap_or(usize::MAX)));
                }
                Envelope::GroupSet {
                    scope,
                    group,
                    members,
                }
            }
            _ => return Err(EnvelopeError("unknown envelope kind")),
        };
        Ok(env)
    }
}

/// Nesting a payload may have on the wire: what `serde_json` parses by default, more than a
/// Lua table may have (100 levels). A deeper envelope is dropped as malformed; the limit
/// also bounds the reader's recursion on what a peer sends.
const MAX_DEPTH: usize = 128;

/// Reads an envelope's MessagePack straight into its parts and payloads, with no
/// intermediate tree: strings are borrowed from the buffer until a payload keeps them.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.buf.len() < n {
            return Err(EnvelopeError("short envelope"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| EnvelopeError("short envelope"))
    }

    fn marker(&mut self) -> Result<Marker, EnvelopeError> {
        Ok(Marker::from_u8(self.take(1)?[0]))
    }

    /// The kind and length of a value whose marker `m` announces one (the length read from
    /// after the marker where it is not in it); `None` for the other markers.
    fn sized(&mut self, m: Marker) -> Result<Option<(Shape, usize)>, EnvelopeError> {
        use Marker as M;
        let (kind, len) = match m {
            M::FixStr(n) => (Shape::Str, Len::In(n)),
            M::FixArray(n) => (Shape::Array, Len::In(n)),
            M::FixMap(n) => (Shape::Map, Len::In(n)),
            M::FixExt1 => (Shape::Ext, Len::In(1)),
            M::FixExt2 => (Shape::Ext, Len::In(2)),
            M::FixExt4 => (Shape::Ext, Len::In(4)),
            M::FixExt8 => (Shape::Ext, Len::In(8)),
            M::FixExt16 => (Shape::Ext, Len::In(16)),
            M::Str8 => (Shape::Str, Len::Bits(8)),
            M::Str16 => (Shape::Str, Len::Bits(16)),
            M::Str32 => (Shape::Str, Len::Bits(32)),
            M::Bin8 => (Shape::Bin, Len::Bits(8)),
            M::Bin16 => (Shape::Bin, Len::Bits(16)),
            M::Bin32 => (Shape::Bin, Len::Bits(32)),
            M::Ext8 => (Shape::Ext, Len::Bits(8)),
            M::Ext16 => (Shape::Ext, Len::Bits(16)),
            M::Ext32 => (Shape::Ext, Len::Bits(32)),
            M::Array16 => (Shape::Array, Len::Bits(16)),
            M::Array32 => (Shape::Array, Len::Bits(32)),
            M::Map16 => (Shape::Map, Len::Bits(16)),
            M::Map32 => (Shape::Map, Len::Bits(32)),
            _ => return Ok(None),
        };
        let n = match len {
            Len::In(n) => usize::from(n),
            Len::Bits(8) => usize::from(self.take(1)?[0]),
            Len::Bits(16) => usize::from(u16::from_be_bytes(self.be()?)),
            Len::Bits(_) => u32::from_be_bytes(self.be()?) as usize,
        };
        Ok(Some((kind, n)))
    }

    /// Room to reserve for `n` items announced by the peer: each takes a byte at least.
    fn cap(&self, n: usize) -> usize {
        n.min(self.buf.len())
    }

    fn array_len(&mut self) -> Result<usize, EnvelopeError> {
        let m = self.marker()?;
        match self.sized(m)? {
            Some((Shape::Array, n)) => Ok(n),
            _ => Err(EnvelopeError("not an array")),
        }
    }

    fn uint(&mut self) -> Result<u64, EnvelopeError> {
        match self.value(0)? {
            Value::Int(n) => u64::try_from(n).map_err(|_| EnvelopeError("not a count")),
            _ => Err(EnvelopeError("not a count")),
        }
    }

    /// A string, or `None` for nil.
    fn opt_str(&mut self, what: &'static str) -> Result<Option<&'a str>, EnvelopeError> {
        let m = self.marker()?;
        if m == Marker::Null {
            return Ok(None);
        }
        match self.sized(m)? {
            Some((Shape::Str, n)) => std::str::from_utf8(self.take(n)?)
                .map(Some)
                .map_err(|_| EnvelopeError(what)),
            _ => Err(EnvelopeError(what)),
        }
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, EnvelopeError> {
        self.opt_str(what)?.ok_or(EnvelopeError(what))
    }

    fn opt_pid(&mut self) -> Result<Option<Pid>, EnvelopeError> {
        self.opt_str("bad pid")?
            .map(|s| Pid::parse_cached(s).map_err(|_| EnvelopeError("bad pid")))
            .transpose()
    }

    fn pid(&mut self) -> Result<Pid, EnvelopeError> {
        self.opt_pid()?.ok_or(EnvelopeError("bad pid"))
    }

    /// The message of `from` under `topic` with the payloads [`payloads`] wrote (none reads
    /// as one `Null`).
    fn message(&mut self, from: Option<Pid>, topic: String) -> Result<Message, EnvelopeError> {
        let n = self.array_len().map_err(|_| EnvelopeError("payloads"))?;
        let first = if n == 0 {
            Value::Null
        } else {
            self.value(MAX_DEPTH)?
        };
        let msg = Message::new(from, topic, first);
        if n <= 1 {
            return Ok(msg);
        }
        let mut extra = Vec::with_capacity(self.cap(n - 1));
        for _ in 1..n {
            extra.push(self.value(MAX_DEPTH)?);
        }
        Ok(msg.with_extra(extra))
    }

    /// An exit result as [`exit`] wrote it.
    fn exit(&mut self) -> Result<ExitResult, EnvelopeError> {
        let value = self.value(MAX_DEPTH)?;
        let error = self.opt_str("exit error")?.map(Into::into);
        Ok(ExitResult { value, error })
    }

    /// One payload value, nested at most `depth` levels. A string that is not UTF-8 and an
    /// extension type read as `Null`; an unsigned integer past `i64` as a float; a map key
    /// that is an integer (another encoder's; ours writes strings) as its decimal text.
    fn value(&mut self, depth: usize) -> Result<Value, EnvelopeError> {
        use Marker as M;
        let m = self.marker()?;
        if let Some((kind, n)) = self.sized(m)? {
            return self.sized_value(kind, n, depth);
        }
        Ok(match m {
            M::Null => Value::Null,
            M::True => Value::Bool(true),
            M::False => Value::Bool(false),
            M::FixPos(n) => Value::Int(n.into()),
            M::FixNeg(n) => Value::Int(n.into()),
            M::U8 => Value::Int(self.take(1)?[0].into()),
            M::U16 => Value::Int(u16::from_be_bytes(self.be()?).into()),
            M::U32 => Value::Int(u32::from_be_bytes(self.be()?).into()),
            M::U64 => {
                let n = u64::from_be_bytes(self.be()?);
                i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
            }
            M::I8 => Value::Int(i8::from_be_bytes(self.be()?).into()),
            M::I16 => Value::Int(i16::from_be_bytes(self.be()?).into()),
            M::I32 => Value::Int(i32::from_be_bytes(self.be()?).into()),
            M::I64 => Value::Int(i64::from_be_bytes(self.be()?)),
            M::F32 => Value::Float(f32::from_be_bytes(self.be()?).into()),
            M::F64 => Value::Float(f64::from_be_bytes(self.be()?)),
            _ => return Err(EnvelopeError("bad msgpack")),
        })
    }

    /// The value of kind `kind` and length `n` whose marker was just read.
    fn sized_value(&mut self, kind: Shape, n: usize, depth: usize) -> Result<Value, EnvelopeError> {
        let nested = |depth: usize| {
            depth
                .checked_sub(1)
                .ok_or(EnvelopeError("nested too deeply"))
        };
        Ok(match kind {
            Shape::Str => std::str::from_utf8(self.take(n)?)
                .map_or(Value::Null, |s| Value::String(s.to_owned())),
            Shape::Bin => Value::Bytes(Bytes::copy_from_slice(self.take(n)?)),
            Shape::Ext => self.take(n + 1).map(|_| Value::Null)?, // a type byte, then the data
            Shape::Array => {
                let depth = nested(depth)?;
                let mut items = Vec::with_capacity(self.cap(n));
                for _ in 0..n {
                    items.push(self.value(depth)?);
                }
                Value::Array(items)
            }
            Shape::Map => {
                let depth = nested(depth)?;
                let mut map = Map::with_capacity(self.cap(n));
                for _ in 0..n {
                    let key = match self.value(0)? {
                        Value::String(k) => k,
                        Value::Int(i) => i.to_string(),
                        _ => return Err(EnvelopeError("map key")),
                    };
                    map.insert(key, self.value(depth)?);
                }
                Value::Map(map)
            }
        })
    }
}

/// What a marker with a length announces.
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Bin,
    Ext,
    Array,
    Map,
}

/// Where a marker's length is: in the marker, or in the next 8, 16 or 32 bits.
enum Len {
    In(u8),
    Bits(u8),
}

fn arr(w: &mut Vec<u8>, n: u32) {
    let _ = rmp::encode::write_array_len(w, n);
}

fn uint(w: &mut Vec<u8>, n: u8) {
    let _ = rmp::encode::write_uint(w, u64::from(n));
}

fn string(w: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(w, s);
}

/// A message envelope up to its payloads: `[kind, from, to, topic, ...`.
fn message_head(w: &mut Vec<u8>, from: Option<&Pid>, to: &Pid, topic: &str) {
    arr(w, 5);
    uint(w, K_MESSAGE);
    opt_pid(w, from);
    string(w, to.as_str());
    string(w, topic);
}

fn opt_pid(w: &mut Vec<u8>, pid: Option<&Pid>) {
    match pid {
        Some(p) => string(w, p.as_str()),
        None => {
            let _ = rmp::encode::write_nil(w);
        }
    }
}

fn pair(w: &mut Vec<u8>, kind: u8, a: &Pid, b: &Pid) {
    arr(w, 3);
    uint(w, kind);
    string(w, a.as_str());
    string(w, b.as_str());
}

/// A relation's end: `kind`, the two PIDs and the exit result.
fn pair_with_exit(w: &mut Vec<u8>, kind: u8, a: &Pid, b: &Pid, result: &ExitResult) {
    arr(w, 5);
    uint(w, kind);
    string(w, a.as_str());
    string(w, b.as_str());
    exit(w, result);
}

/// A message's payloads as one array: the payload, then the extra ones (most messages
/// have none).
fn payloads(w: &mut Vec<u8>, msg: &Message) {
    let extra = msg.extra();
    arr(w, 1 + extra.len() as u32);
    value(w, msg.payload());
    for v in extra {
        value(w, v);
    }
}

fn exit(w: &mut Vec<u8>, result: &ExitResult) {
    value(w, &result.value);
    match result.error_text() {
        Some(e) => string(w, e),
        None => {
            let _ = rmp::encode::write_nil(w);
        }
    }
}

/// Writes `v` as MessagePack; an `Opaque` value is written in its plain form, as it visits
/// itself (see [`Writer`]).
pub(crate) fn value(w: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {
            let _ = rmp::encode::write_nil(w);
        }
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(w, *b);
        }
        Value::Int(i) => {
            let _ = rmp::encode::write_sint(w, *i);
        }
        Value::Float(f) => {
            let _ = rmp::encode::write_f64(w, *f);
        }
        Value::String(s) => string(w, s),
        Value::Bytes(b) => {
            let _ = rmp::encode::write_bin(w, b);
        }
        Value::Array(items) => {
            arr(w, items.len() as u32);
            for item in items {
                value(w, item);
            }
        }
        Value::Map(map) => {
            let _ = rmp::encode::write_map_len(w, map.len() as u32);
            for (k, item) in map.iter() {
                string(w, k);
                value(w, item);
            }
        }
        Value::Opaque(o) => {
            // Written as the value shows itself (a relay connection's event, a group send's
            // shared payload), without building its plain form; a visit that does not add up
            // to one well-formed value is written from that form instead.
            let start = w.len();
            let mut writer = Writer::new(w);
            o.visit(&mut writer);
            if !writer.is_complete() {
                w.truncate(start);
                value(w, &o.to_value());
            }
        }
    }
}

/// MessagePack from a [`Visit`]: what an opaque value shows of itself. It checks that the
/// visit is one value whose arrays and maps hold as many items as they announced (keys and
/// values alternating in maps); MessagePack gives lengths up front, so a visit that breaks
/// its own count would otherwise write a malformed envelope.
struct Writer<'a> {
    w: &'a mut Vec<u8>,
    /// The arrays and maps open: items left, and for a map whether a key comes next.
    open: smallvec::SmallVec<[(u32, Option<bool>); 8]>,
    /// Values written at the top level (one when complete).
    top: u32,
    ok: bool,
}

impl<'a> Writer<'a> {
    fn new(w: &'a mut Vec<u8>) -> Writer<'a> {
        Writer {
            w,
            open: smallvec::SmallVec::new(),
            top: 0,
            ok: true,
        }
    }

    /// Whether exactly one value was written, with every container closed as announced.
    fn is_complete(&self) -> bool {
        self.ok && self.open.is_empty() && self.top == 1
    }

    /// Counts an item (a value, or a container that starts) where it goes.
    fn item(&mut self) {
        match self.open.last_mut() {
            None => self.top += 1,
            Some((0, _)) | Some((_, Some(true))) => self.ok = false,
            Some((left, key_next)) => {
                *left -= 1;
                if let Some(key_next) = key_next {
                    *key_next = true;
                }
            }
        }
    }

    fn begin(&mut self, len: usize, map: bool) -> Option<u32> {
        self.item();
        let Ok(len) = u32::try_from(len) else {
            self.ok = false;
            return None;
        };
        self.open.push((len, map.then_some(true)));
        Some(len)
    }

    fn end(&mut self, map: bool) {
        match self.open.pop() {
            Some((0, key_next)) if key_next.is_some() == map && key_next != Some(false) => {}
            _ => self.ok = false,
        }
    }
}

impl Visit for Writer<'_> {
    fn null(&mut self) {
        self.item();
        let _ = rmp::encode::write_nil(self.w);
    }

    fn bool(&mut self, value: bool) {
        self.item();
        let _ = rmp::encode::write_bool(self.w, value);
    }

    fn int(&mut self, value: i64) {
        self.item();
        let _ = rmp::encode::write_sint(self.w, value);
    }

    fn float(&mut self, value: f64) {
        self.item();
        let _ = rmp::encode::write_f64(self.w, value);
    }

    fn str(&mut self, value: &str) {
        self.item();
        string(self.w, value);
    }

    fn bytes(&mut self, value: &[u8]) {
        self.item();
        let _ = rmp::encode::write_bin(self.w, value);
    }

    fn begin_array(&mut self, len: usize) {
        if let Some(len) = self.begin(len, false) {
            arr(self.w, len);
        }
    }

    fn end_array(&mut self) {
        self.end(false);
    }

    fn begin_map(&mut self, len: usize) {
        if let Some(len) = self.begin(len, true) {
            let _ = rmp::encode::write_map_len(self.w, len);
        }
    }

    fn key(&mut self, key: &str) {
        match self.open.last_mut() {
            Some((left, Some(key_next))) if *left > 0 && *key_next => *key_next = false,
            _ => self.ok = false,
        }
        string(self.w, key);
    }

    fn end_map(&mut self) {
        self.end(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(id: u64) -> Pid {
        Pid::new("node-a", "app:processes", id)
    }

    /// An opaque payload: the plain value it stands for, and how it visits itself.
    #[derive(Debug)]
    struct Opaque(Value, Visits);

    #[derive(Debug, Clone, Copy)]
    enum Visits {
        /// As its plain value.
        Plainly,
        /// A map that announces two entries and shows one.
        ShortMap,
        /// A map with two keys in a row.
        KeyTwice,
        /// Two values.
        TwoValues,
        /// Nothing.
        Nothing,
        /// An array that announces one item and shows two.
        LongArray,
    }

    impl wsrelay_process::OpaqueValue for Opaque {
        fn to_value(&self) -> Value {
            self.0.clone()
        }

        fn visit(&self, v: &mut dyn Visit) {
            match self.1 {
                Visits::Plainly => self.0.visit(v),
                Visits::ShortMap => {
                    v.begin_map(2);
                    v.key("a");
                    v.int(1);
                    v.end_map();
                }
                Visits::KeyTwice => {
                    v.begin_map(1);
                    v.key("a");
                    v.key("b");
                    v.int(1);
                    v.end_map();
                }
                Visits::TwoValues => {
                    v.int(1);
                    v.int(2);
                }
                Visits::Nothing => {}
                Visits::LongArray => {
                    v.begin_array(1);
                    v.null();
                    v.null();
                    v.end_array();
                }
            }
        }
    }

    /// An opaque payload is written as it visits itself, byte for byte what its plain form
    /// gives; a visit that does not add up to one well-formed value is written from the plain
    /// form instead, and every envelope decodes to the plain value.
    #[test]
    fn an_opaque_payload_is_written_from_its_visit_or_else_its_plain_form() {
        let plain = |payload: Value| {
            Envelope::Message {
                to: pid(2),
                msg: Message::new(Some(pid(1)), "t", payload),
            }
            .encode()
        };
        for visits in [
            Visits::Plainly,
            Visits::ShortMap,
            Visits::KeyTwice,
            Visits::TwoValues,
            Visits::Nothing,
            Visits::LongArray,
        ] {
            let opaque = Opaque(every_value(), visits);
            let mut visited = Vec::new();
            let mut writer = Writer::new(&mut visited);
            wsrelay_process::OpaqueValue::visit(&opaque, &mut writer);
            let mut direct = Vec::new();
            value(&mut direct, &every_value());
            match visits {
                Visits::Plainly => assert!(writer.is_complete() && visited == direct),
                _ => assert!(!writer.is_complete(), "{visits:?} is caught"),
            }
            let bytes = plain(Value::Opaque(std::sync::Arc::new(opaque)));
            assert_eq!(bytes, plain(every_value()), "{visits:?}");
            match Envelope::decode(&bytes).unwrap() {
                Envelope::Message { msg, .. } => assert_eq!(msg.payload(), &every_value()),
                other => panic!("{other:?}"),
            }
        }
    }

    /// An unbuilt payload that shows itself as an [`Opaque`] does.
    struct Shows(Opaque);

    impl Unbuilt for Shows {
        fn field(&self, _: &str) -> wsrelay_process::Field<'_> {
            wsrelay_process::Field::Other
        }

        fn visit(&self, v: &mut dyn Visit) -> bool {
            wsrelay_process::OpaqueValue::visit(&self.0, v);
            true
        }
    }

    /// A message whose payload is not built is encoded from what it shows, to the same bytes
    /// as the built message; a payload that shows nothing, or not one well-formed value, is
    /// left to the sender to build.
    #[test]
    fn an_unbuilt_payload_is_encoded_from_what_it_shows() {
        let (from, to) = (pid(1), pid(2));
        let built = Envelope::Message {
            to: to.clone(),
            msg: Message::new(Some(from.clone()), "t", every_value()),
        }
        .encode();
        let shows = |visits| Shows(Opaque(every_value(), visits));
        let encoded = Envelope::encode_unbuilt(Some(&from), &to, "t", &shows(Visits::Plainly));
        assert_eq!(encoded, Some(built));
        for visits in [
            Visits::ShortMap,
            Visits::KeyTwice,
            Visits::TwoValues,
            Visits::Nothing,
        ] {
            let encoded = Envelope::encode_unbuilt(Some(&from), &to, "t", &shows(visits));
            assert_eq!(encoded, None, "{visits:?}");
        }
        /// Shows nothing: the default.
        struct Silent;
        impl Unbuilt for Silent {
            fn field(&self, _: &str) -> wsrelay_process::Field<'_> {
                wsrelay_process::Field::Other
            }
        }
        assert_eq!(Envelope::encode_unbuilt(None, &to, "t", &Silent), None);
    }

    /// A payload with every kind of value, nested.
    fn every_value() -> Value {
        let inner = Map::new()
            .with("s", "text")
            .with("b", Value::Bytes(Bytes::from_static(b"\x00\xff bytes")))
            .with("empty", Map::new());
        Value::Map(
            Map::new()
                .with("null", Value::Null)
                .with("yes", true)
                .with("no", false)
                .with("small", 7)
                .with("negative", -33)
                .with("big", i64::MAX)
                .with("min", i64::MIN)
                .with("mid", 70_000)
                .with("float", 1.5)
                .with("long", "x".repeat(70_000))
                .with(
                    "list",
                    Value::Array(vec![Value::Int(1), Value::Map(inner), Value::Array(vec![])]),
                ),
        )
    }

    /// The start of a message envelope whose one payload the caller writes next.
    fn one_payload_message() -> Vec<u8> {
        let mut w = Vec::new();
        arr(&mut w, 5);
        uint(&mut w, K_MESSAGE);
        opt_pid(&mut w, None);
        string(&mut w, pid(2).as_str());
        string(&mut w, "t");
        arr(&mut w, 1);
        w
    }

    fn every_envelope() -> Vec<Envelope> {
        let msg = Message::new(Some(pid(1)), "ws.send", every_value())
            .with_extra(vec![Value::Int(2), Value::String("third".into())]);
        let failed = ExitResult {
            value: Value::String("why".into()),
            error: Some("boom".into()),
        };
        vec![
            Envelope::Message {
                to: pid(2),
                msg: msg.clone(),
            },
            Envelope::Message {
                to: pid(2),
                msg: Message::new(None, "t", Value::Null),
            },
            Envelope::Monitor {
                watcher: pid(1),
                target: pid(2),
            },
            Envelope::Demonitor {
                watcher: pid(1),
                target: pid(2),
            },
            Envelope::Exit {
                watcher: pid(1),
                target: pid(2),
                result: failed.clone(),
            },
            Envelope::Link {
                from: pid(1),
                to: pid(2),
            },
            Envelope::Unlink {
                from: pid(1),
                to: pid(2),
            },
            Envelope::LinkDown {
                from: pid(1),
                to: pid(2),
                result: ExitResult::normal(3),
            },
            Envelope::Cancel {
                from: None,
                to: pid(2),
                reason: every_value(),
            },
            Envelope::Terminate { to: pid(2) },
            Envelope::GroupSend {
                scope: "chat".into(),
                group: "room:1".into(),
                msg,
            },
            Envelope::GroupSync { end: true },
            Envelope::GroupSet {
                scope: "chat".into(),
                group: "room:1".into(),
                members: vec![(pid(1), 2), (pid(3), 0)],
            },
        ]
    }

    #[test]
    fn every_envelope_decodes_to_what_was_encoded() {
        for env in every_envelope() {
            let bytes = env.encode();
            let back = Envelope::decode(&bytes).unwrap();
            assert_eq!(back.encode(), bytes, "{env:?}");
            assert_eq!(format!("{back:?}"), format!("{env:?}"));
        }
        let Envelope::Message { msg, .. } = &every_envelope()[0] else {
            unreachable!()
        };
        let Envelope::Message { msg: back, .. } =
            Envelope::decode(&every_envelope()[0].encode()).unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!(back.payload(), msg.payload());
        assert_eq!(back.extra(), msg.extra());
        assert_eq!(back.from(), msg.from());
    }

    #[test]
    fn a_cut_or_bad_envelope_is_an_error_not_a_panic() {
        for env in every_envelope() {
            let bytes = env.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Envelope::decode(&bytes[..cut]).is_err(),
                    "{env:?} cut at {cut}"
                );
            }
        }
        let mut w = Vec::new();
        arr(&mut w, 2);
        uint(&mut w, 200);
        uint(&mut w, 0);
        assert!(Envelope::decode(&w).is_err(), "unknown kind");
        assert!(Envelope::decode(&[0xc1]).is_err(), "reserved marker");
        assert!(Envelope::decode(&[0x90]).is_err(), "no kind");

        // Nested past the limit: an error, not a stack overflow.
        let mut w = one_payload_message();
        for _ in 0..=MAX_DEPTH {
            arr(&mut w, 1);
        }
        let _ = rmp::encode::write_nil(&mut w);
        assert!(Envelope::decode(&w).is_err());
    }

    /// Envelopes with bytes changed at random (a fixed seed): each decodes or is an error,
    /// none panics or reads past its end.
    #[test]
    fn changed_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let small: Vec<Bytes> = every_envelope()
            .into_iter()
            .filter(|e| {
                !matches!(
                    e,
                    Envelope::Message { .. } | Envelope::GroupSend { .. } | Envelope::Cancel { .. }
                )
            })
            .chain([Envelope::Message {
                to: pid(2),
                msg: Message::new(Some(pid(1)), "t", Map::new().with("a", vec![Value::Int(1)])),
            }])
            .map(|e| e.encode())
            .collect();
        for round in 0..20_000 {
            let mut bytes = small[round % small.len()].to_vec();
            for _ in 0..=next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let _ = Envelope::decode(&bytes);
        }
    }

    /// What another MessagePack encoder may write: invalid UTF-8 and extension types read as
    /// null, an unsigned integer past `i64` as a float, an integer map key as its text.
    #[test]
    fn foreign_msgpack_reads_as_the_nearest_payload() {
        let mut w = one_payload_message();
        let _ = rmp::encode::write_map_len(&mut w, 4);
        string(&mut w, "bad");
        let _ = rmp::encode::write_str_len(&mut w, 2);
        w.extend_from_slice(b"\xff\xfe");
        string(&mut w, "ext");
        let _ = rmp::encode::write_ext_meta(&mut w, 3, 5);
        w.extend_from_slice(b"abc");
        string(&mut w, "huge");
        let _ = rmp::encode::write_u64(&mut w, u64::MAX);
        let _ = rmp::encode::write_uint(&mut w, 42);
        let _ = rmp::encode::write_f32(&mut w, 0.5);
        let Ok(Envelope::Message { msg, .. }) = Envelope::decode(&w) else {
            panic!("not a message")
        };
        let expected = Map::new()
            .with("bad", Value::Null)
            .with("ext", Value::Null)
            .with("huge", u64::MAX as f64)
            .with("42", 0.5);
        assert_eq!(msg.payload(), &Value::Map(expected));
    }
}
