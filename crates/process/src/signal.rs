//! Messages and signals addressed by PID: send, cancel, terminate, kill, and the events the
//! runtime itself routes (exits, link downs).
//!
//! Every operation routes once (see `Route`): a local PID goes to its cell, a remote one to
//! the transport, and without a transport a remote PID is unreachable.

use crate::message::reason;
use crate::node::{unreachable, Route};
use crate::relations::link_exit;
use crate::{Event, ExitResult, Message, Node, Pid, SendError, Unbuilt, Value};

impl Node {
    /// Delivers `msg` to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive; [`SendError::NodeUnreachable`] for a
    /// remote PID without a transport or with its node down.
    pub fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        match self.route(to) {
            Route::Local => match self.inner.table.get(to) {
                Some(cell) if cell.push_message(msg).is_some() => Ok(()),
                _ => Err(SendError::NoProcess(to.to_string())),
            },
            Route::Remote(t) => t.send(to, msg),
            Route::Unreachable => Err(unreachable(to)),
        }
    }

    /// Sends `to` a message from `from` on `topic` whose payload is built only if it must
    /// be: a local process whose [`Shortcut`](crate::Shortcut) takes it unbuilt (a relay
    /// connection writing a `ws.send`) reads `payload` in this call, and a transport may
    /// encode it for another node from it ([`Transport::send_unbuilt`](crate::Transport::send_unbuilt));
    /// otherwise `build` makes the message (from `from`, on `topic`, with `payload`), and it
    /// is sent as with [`send`](Node::send).
    ///
    /// # Errors
    ///
    /// What `build` returns, or the [`SendError`] of [`send`](Node::send).
    pub fn send_lazy<E: From<SendError>>(
        &self,
        from: Option<&Pid>,
        to: &Pid,
        topic: &str,
        payload: &dyn Unbuilt,
        build: impl FnOnce() -> Result<Message, E>,
    ) -> Result<(), E> {
        match self.route(to) {
            Route::Local => match self.inner.table.get(to) {
                Some(cell) if cell.offer_unbuilt(topic, payload) => Ok(()),
                Some(cell) if cell.push_message(build()?).is_some() => Ok(()),
                _ => Err(SendError::NoProcess(to.to_string()).into()),
            },
            Route::Remote(t) => match t.send_unbuilt(from, to, topic, payload) {
                Some(sent) => Ok(sent?),
                None => Ok(t.send(to, build()?)?),
            },
            Route::Unreachable => Err(unreachable(to).into()),
        }
    }

    /// Whether `from` (the sending process, or none) should hold back what it sends to the
    /// remote `to` because the queue towards that node is above its high-water mark (the
    /// cluster transport then holds back the senders that fill it, see
    /// [`Transport::is_congested`](crate::Transport::is_congested)); always `false` for
    /// local PIDs: use [`ProcessRef::is_congested`](crate::ProcessRef::is_congested) for
    /// those.
    pub fn is_congested(&self, from: Option<&Pid>, to: &Pid) -> bool {
        match self.route(to) {
            Route::Remote(t) => t.is_congested(from, to),
            Route::Local | Route::Unreachable => false,
        }
    }

    /// Waits until `from` need no longer hold back what it sends to the remote `to` (see
    /// [`is_congested`](Node::is_congested)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait_for_space(&self, from: Option<&Pid>, to: &Pid) {
        if let Route::Remote(t) = self.route(to) {
            t.wait_for_space(from, to).await;
        }
    }

    /// Delivers `pid.cancel` with `reason` to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) -> Result<(), SendError> {
        match self.route(to) {
            Route::Local => {
                let event = Event::Cancel {
                    from: from.cloned(),
                    reason,
                };
                match self.inner.table.get(to) {
                    Some(cell) if cell.push_event(event) => Ok(()),
                    _ => Err(SendError::NoProcess(to.to_string())),
                }
            }
            Route::Remote(t) => {
                t.cancel(from, to, reason);
                Ok(())
            }
            Route::Unreachable => Err(unreachable(to)),
        }
    }

    /// Stops `to` at once with the error `terminated`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn terminate(&self, to: &Pid) -> Result<(), SendError> {
        self.kill(to, ExitResult::error(reason::TERMINATED))
    }

    /// Stops `to` at once with `result` as its exit.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn kill(&self, to: &Pid, result: ExitResult) -> Result<(), SendError> {
        match self.route(to) {
            Route::Local => match self.inner.table.get(to) {
                Some(cell) if cell.is_alive() => {
                    cell.kill(result);
                    Ok(())
                }
                _ => Err(SendError::NoProcess(to.to_string())),
            },
            Route::Remote(t) => {
                t.terminate(to);
                Ok(())
            }
            Route::Unreachable => Err(unreachable(to)),
        }
    }

    /// Delivers a system event to `to`, local or remote; whether it was handed on. An
    /// [`Event::LinkDown`] for a local process is handled as a link exit: it removes the link
    /// and, unless `to` traps links, stops `to`.
    pub(crate) fn deliver_event(&self, to: &Pid, event: Event) -> bool {
        match self.route(to) {
            Route::Local => {
                let Some(cell) = self.inner.table.get(to) else {
                    return false;
                };
                match event {
                    Event::LinkDown { from, result } => {
                        link_exit(&cell, &from, result);
                        true
                    }
                    event => cell.push_event(event),
                }
            }
            Route::Remote(t) => {
                t.event(to, event);
                true
            }
            Route::Unreachable => false,
        }
    }
}
