//! The target of a relay connection, as the connection keeps it.

use std::sync::Arc;
use std::time::Duration;

use wsrelay_process::{Context, Map, Pid, ProcessRef};

use crate::header::{RelayTarget, DEFAULT_MESSAGE_TOPIC};

/// The target of the moment. Only what the relay reads is kept: the header's strings are
/// dropped, the default topic and an empty metadata map are shared by a thread's connections
/// (docs/OPERATIONS.md, "Memory per connection"); a transfer rebuilds its settings from these.
pub(crate) struct Target {
    pub(crate) pid: Pid,
    /// Set for local targets: sends without a lookup, and the inbox mark for backpressure.
    pub(crate) local: Option<ProcessRef>,
    pub(crate) topic: Arc<str>,
    pub(crate) metadata: Arc<Map>,
    pub(crate) heartbeat_interval: Option<Duration>,
    /// The subprotocol of the handshake (`ws.control` keeps it).
    pub(crate) protocol: Option<Arc<str>>,
}

thread_local! {
    /// The default topic and the empty metadata map, shared by this thread's connections.
    static SHARED: (Arc<str>, Arc<Map>) = (Arc::from(DEFAULT_MESSAGE_TOPIC), Arc::new(Map::new()));
}

impl Target {
    pub(crate) fn new(ctx: &Context, pid: Pid, settings: RelayTarget) -> Target {
        let (topic, metadata) = SHARED.with(|(topic, metadata)| {
            let topic = if settings.message_topic == DEFAULT_MESSAGE_TOPIC {
                topic.clone()
            } else {
                settings.message_topic.as_str().into()
            };
            let metadata = if settings.metadata.is_empty() {
                metadata.clone()
            } else {
                Arc::new(settings.metadata)
            };
            (topic, metadata)
        });
        Target {
            local: ctx.node().process_ref(&pid),
            topic,
            metadata,
            heartbeat_interval: settings.heartbeat_interval,
            protocol: settings.protocol.map(Arc::from),
            pid,
        }
    }

    /// The settings this target was made from, as `ws.control` reads them.
    pub(crate) fn settings(&self) -> RelayTarget {
        RelayTarget {
            target: self.pid.to_string(),
            message_topic: self.topic.to_string(),
            heartbeat_interval: self.heartbeat_interval,
            metadata: (*self.metadata).clone(),
            protocol: self.protocol.as_deref().map(str::to_owned),
        }
    }
}
