//! [`ProcessRef`]: a held handle to one local process, for senders that send many times.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cell::Cell;
use crate::{Message, Node, Pid, SendError};

/// A handle to a local process for repeated sends (no table lookup per message) and for
/// waiting on its inbox high-water mark.
#[derive(Clone)]
pub struct ProcessRef {
    cell: Arc<Cell>,
}

impl fmt::Debug for ProcessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessRef").field(&self.cell.pid).finish()
    }
}

impl Node {
    /// A handle to a local live process that sends without a table lookup each time.
    pub fn process_ref(&self, pid: &Pid) -> Option<ProcessRef> {
        self.cell(pid).map(|cell| ProcessRef { cell })
    }
}

impl ProcessRef {
    /// The PID of the process.
    pub fn pid(&self) -> &Pid {
        &self.cell.pid
    }

    /// Delivers `msg`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if the process has exited.
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        match self.cell.push_message(msg) {
            Some(_) => Ok(()),
            None => Err(SendError::NoProcess(self.cell.pid.to_string())),
        }
    }

    /// Whether the process is alive.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// Whether the inbox is at or above its high-water mark.
    pub fn is_congested(&self) -> bool {
        self.cell.is_congested()
    }

    /// The number of messages in the inbox.
    pub fn inbox_len(&self) -> usize {
        self.cell.inbox_len.load(Ordering::Acquire)
    }

    /// Waits until the inbox is below its high-water mark, or the process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait_for_space(&self) {
        self.cell.wait_for_space().await;
    }
}
