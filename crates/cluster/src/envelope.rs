//! Envelopes: one message or control signal between two processes on two nodes, encoded as
//! a MessagePack array `[kind, ...]`.
//!
//! Payload [`Value`]s are MessagePack: maps, arrays, strings, binary (`Bytes`), integers,
//! floats, booleans and nil. A frame (module `frame`) carries a batch of encoded envelopes;
//! they are decoded one by one after the frame's session accepted them.

use bytes::Bytes;
use wsrelay_process::{ExitResult, Map, Message, Pid, Value};

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

    /// Encodes to MessagePack.
    pub(crate) fn encode(&self) -> Bytes {
        let mut w = Vec::with_capacity(64);
        match self {
            Envelope::Message { to, msg } => {
                arr(&mut w, 5);
                uint(&mut w, K_MESSAGE);
                opt_pid(&mut w, msg.from());
                string(&mut w, to.as_str());
                string(&mut w, msg.topic());
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
        let mut rd = buf;
        let v = rmpv::decode::read_value(&mut rd).map_err(|_| EnvelopeError("bad msgpack"))?;
        let rmpv::Value::Array(items) = v else {
            return Err(EnvelopeError("envelope is not an array"));
        };
        let mut it = items.into_iter();
        let kind = it
            .next()
            .and_then(|k| k.as_u64())
            .ok_or(EnvelopeError("no kind"))?;
        let mut next = || it.next().ok_or(EnvelopeError("short envelope"));
        let env = match kind as u8 {
            K_MESSAGE => {
                let from = opt_pid_of(next()?)?;
                let to = pid_of(next()?)?;
                let topic = str_of(next()?, "topic")?;
                let msg = message_of(from, topic, next()?)?;
                Envelope::Message { to, msg }
            }
            K_MONITOR => Envelope::Monitor {
                watcher: pid_of(next()?)?,
                target: pid_of(next()?)?,
            },
            K_DEMONITOR => Envelope::Demonitor {
                watcher: pid_of(next()?)?,
                target: pid_of(next()?)?,
            },
            K_EXIT => Envelope::Exit {
                watcher: pid_of(next()?)?,
                target: pid_of(next()?)?,
                result: exit_of(next()?, next()?),
            },
            K_LINK => Envelope::Link {
                from: pid_of(next()?)?,
                to: pid_of(next()?)?,
            },
            K_UNLINK => Envelope::Unlink {
                from: pid_of(next()?)?,
                to: pid_of(next()?)?,
            },
            K_LINK_DOWN => Envelope::LinkDown {
                from: pid_of(next()?)?,
                to: pid_of(next()?)?,
                result: exit_of(next()?, next()?),
            },
            K_CANCEL => Envelope::Cancel {
                from: opt_pid_of(next()?)?,
                to: pid_of(next()?)?,
                reason: value_of(next()?),
            },
            K_TERMINATE => Envelope::Terminate {
                to: pid_of(next()?)?,
            },
            K_GROUP_SEND => {
                let from = opt_pid_of(next()?)?;
                let scope = str_of(next()?, "scope")?;
                let group = str_of(next()?, "group")?;
                let topic = str_of(next()?, "topic")?;
                let msg = message_of(from, topic, next()?)?;
                Envelope::GroupSend { scope, group, msg }
            }
            K_GROUP_SYNC => Envelope::GroupSync {
                end: next()?.as_bool().ok_or(EnvelopeError("sync phase"))?,
            },
            K_GROUP_SET => {
                let scope = str_of(next()?, "scope")?;
                let group = str_of(next()?, "group")?;
                let rmpv::Value::Array(flat) = next()? else {
                    return Err(EnvelopeError("members"));
                };
                if flat.len() % 2 != 0 {
                    return Err(EnvelopeError("members"));
                }
                let mut members = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(pid), Some(count)) = (it.next(), it.next()) {
                    let count = count.as_u64().ok_or(EnvelopeError("join count"))?;
                    members.push((pid_of(pid)?, usize::try_from(count).unwrap_or(usize::MAX)));
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

fn arr(w: &mut Vec<u8>, n: u32) {
    let _ = rmp::encode::write_array_len(w, n);
}

fn uint(w: &mut Vec<u8>, n: u8) {
    let _ = rmp::encode::write_uint(w, u64::from(n));
}

fn string(w: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(w, s);
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

/// Writes `v` as MessagePack; `Opaque` values are written in their plain form.
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
        Value::Opaque(o) => value(w, &o.to_value()),
    }
}

fn pid_of(v: rmpv::Value) -> Result<Pid, EnvelopeError> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(EnvelopeError("bad pid"))
}

fn str_of(v: rmpv::Value, what: &'static str) -> Result<String, EnvelopeError> {
    match v {
        rmpv::Value::String(s) => s.into_str().ok_or(EnvelopeError(what)),
        _ => Err(EnvelopeError(what)),
    }
}

fn opt_pid_of(v: rmpv::Value) -> Result<Option<Pid>, EnvelopeError> {
    if v.is_nil() {
        Ok(None)
    } else {
        pid_of(v).map(Some)
    }
}

/// The message of `from` under `topic` with the payloads [`payloads`] wrote (none reads as
/// one `Null`).
fn message_of(
    from: Option<Pid>,
    topic: String,
    payloads: rmpv::Value,
) -> Result<Message, EnvelopeError> {
    let rmpv::Value::Array(payloads) = payloads else {
        return Err(EnvelopeError("payloads"));
    };
    let mut payloads = payloads.into_iter().map(value_of);
    let first = payloads.next().unwrap_or(Value::Null);
    let extra: Vec<Value> = payloads.collect();
    let msg = Message::new(from, topic, first);
    Ok(if extra.is_empty() {
        msg
    } else {
        msg.with_extra(extra)
    })
}

fn exit_of(value: rmpv::Value, error: rmpv::Value) -> ExitResult {
    ExitResult {
        value: value_of(value),
        error: error.as_str().map(Into::into),
    }
}

/// Converts a decoded MessagePack value into a payload.
pub(crate) fn value_of(v: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match i.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(i.as_f64().unwrap_or(0.0)),
        },
        M::F32(f) => Value::Float(f64::from(f)),
        M::F64(f) => Value::Float(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::Null,
        },
        M::Binary(b) => Value::Bytes(Bytes::from(b)),
        M::Array(items) => Value::Array(items.into_iter().map(value_of).collect()),
        M::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    M::String(s) => s.into_str().unwrap_or_default(),
                    other => other.to_string(),
                };
                map.insert(key, value_of(v));
            }
            Value::Map(map)
        }
        M::Ext(..) => Value::Null,
    }
}
