//! What operators see of a node: counts and snapshots of its processes.

use crate::{Node, Pid};

/// A snapshot of one process, for operators.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// Its PID.
    pub pid: Pid,
    /// Messages waiting in its inbox.
    pub inbox_len: usize,
    /// The longest its inbox has been.
    pub inbox_peak: usize,
    /// Messages its inbox has room for without growing (the storage is freed when the inbox
    /// empties after a burst, so an idle process holds little).
    pub inbox_capacity: usize,
    /// How many processes monitor it.
    pub monitors: usize,
    /// How many processes it is linked to.
    pub links: usize,
    /// Its registered names.
    pub names: Vec<String>,
}

impl Node {
    /// How many processes are alive on this node.
    pub fn process_count(&self) -> usize {
        self.inner.table.len()
    }

    /// A snapshot of the live processes.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let mut out: Vec<_> = self
            .inner
            .table
            .cells()
            .into_iter()
            .map(|cell| {
                let st = cell.state.lock();
                let rel = st.rel.as_deref();
                ProcessInfo {
                    pid: cell.pid.clone(),
                    inbox_len: st.inbox.len(),
                    inbox_peak: st.inbox_peak,
                    inbox_capacity: st.inbox.capacity(),
                    monitors: rel.map_or(0, |r| r.watchers.len()),
                    links: rel.map_or(0, |r| r.links.len()),
                    names: rel.map_or_else(Vec::new, |r| r.names.clone()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.pid.cmp(&b.pid));
        out
    }

    /// How many monitors and links are held, counted on both ends (for leak checks).
    pub fn relation_count(&self) -> usize {
        self.inner
            .table
            .cells()
            .iter()
            .map(|cell| {
                let st = cell.state.lock();
                st.rel
                    .as_ref()
                    .map_or(0, |r| r.watchers.len() + r.monitoring.len() + r.links.len())
            })
            .sum()
    }
}
