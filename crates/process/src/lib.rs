//! The wsrelay process runtime: lightweight processes with Erlang-style semantics.
//!
//! A [`Node`] owns *process hosts* (named groups such as `app:processes`), a process table and
//! a name registry. A process has a [`Pid`], a FIFO inbox of topic [`Message`]s and a stream of
//! system [`Event`]s. Any process can send to, monitor, link to, cancel or terminate any other.
//! Processes are written as async Rust (see [`Node::spawn`]) or driven by an engine of their own
//! (the Lua engine, through [`Node::attach`] and [`NewProcess::detach`]).
//!
//! # Guarantees
//!
//! - **Order.** Messages from one sender to one receiver arrive in the order sent. Messages
//!   that arrive before the receiver reads are kept.
//! - **Spawn.** [`Node::spawn`] returns once the PID is routable and monitorable; spawn options
//!   (monitor, link, name) are applied before the body starts.
//! - **Exactly one exit.** Whatever ends a process (its body returns, fails, panics, is
//!   terminated, a linked process fails, the node shuts down), every monitor receives exactly one
//!   [`Event::Exit`], every link is resolved once, and its names are released. Monitoring a dead
//!   PID delivers the `noproc` exit at once.
//! - **Links** propagate only error exits. A process that traps links receives
//!   [`Event::LinkDown`]; one that does not exits with `"linked process failed"`.
//! - **Isolation.** A panic inside a process ends that process with an error exit, nothing else.
//!
//! # Memory and backpressure
//!
//! Inboxes are not capped: a send never fails or drops because the receiver is slow, which is
//! what lets every exit and every frame be delivered. Instead each host has a [`HighWater`]
//! mark (messages and estimated bytes). Senders that produce on behalf of an outside source —
//! the WebSocket relay — check [`ProcessRef::is_congested`] and wait with
//! [`ProcessRef::wait_for_space`] before reading more input, which turns a slow process into
//! TCP backpressure on its clients. Events (exits, link downs, cancels) are bounded by the
//! number of monitors and links.
//!
//! # Other nodes
//!
//! PIDs of other nodes are routed to a [`Transport`] set with [`Node::set_transport`]; the
//! transport hands what arrives back through the node's [`Inbound`] handle. This crate
//! contains no network code.
//!
//! # Layout
//!
//! One file per concept. Below the node: `pid.rs`, `value.rs`, `message.rs`, `error.rs`,
//! `host.rs` (hosts and the high-water mark), `cell.rs` (one process's state behind one
//! lock) and `table.rs` (the process table). The node is [`Node`] (`node.rs`: shared state
//! and routing), with its methods in the file of their concept: `spawn.rs`, `signal.rs`
//! (send, cancel, terminate), `relations.rs` (monitors and links), `names.rs`, `exit.rs`
//! (the exit protocol and [`ExitGuard`]), `info.rs`, `process_ref.rs`, `shortcut.rs`
//! ([`Shortcut`]: messages taken in the sender's call), `shard.rs` ([`Shards`]: thread per
//! core), `wakes.rs` ([`WakeBatch`]: wake-ups across shards, once per batch), and, for
//! transports, `remote.rs` ([`Transport`]) and `inbound.rs` ([`Inbound`]). [`Context`] (`context.rs`) is the same
//! operations with a process as the actor.

mod bus;
mod cell;
mod context;
mod error;
mod exit;
mod feed;
mod groups;
mod host;
mod inbound;
mod info;
mod message;
mod names;
mod node;
mod pid;
mod pid_set;
mod process_ref;
mod relations;
mod remote;
pub mod shard;
mod shortcut;
mod signal;
mod spawn;
mod table;
mod value;
mod wakes;

pub use bus::{glob_match, BusError, BusEvent, BusWatch, MAX_BUS_SUBSCRIPTIONS};
pub use cell::{Changed, Received};
pub use context::Context;
pub use error::{LinkError, NameError, SendError, SpawnError};
pub use exit::ExitGuard;
pub use feed::{Fed, FEED_BUFFER};
pub use groups::{
    GroupEncoder, GroupError, GroupEvent, GroupLimits, GroupMembers, GroupScope, GroupVisitor,
    GroupWatch, WatchError, GROUP_DIFF_TOPIC, MAX_SUBSCRIBERS, MAX_WATCHES, WATCH_BUFFER,
};
pub use host::{HighWater, HostConfig};
pub use inbound::Inbound;
pub use info::ProcessInfo;
pub use message::{reason, Event, ExitResult, Message};
pub use node::Node;
pub use pid::{Pid, PidParseError, LOCAL_NODE};
pub use process_ref::ProcessRef;
pub use remote::{SpaceFuture, Transport};
pub use shard::Shards;
pub use shortcut::{Field, Shortcut, Unbuilt};
pub use spawn::{NewProcess, ProcessFactory, Ready, SpawnOptions};
pub use value::{Map, OpaqueValue, Shared, Value, ValueBuilder, Visit};
pub use wakes::WakeBatch;
