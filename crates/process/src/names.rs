//! Names: node-scope names in the node's registry, cluster-scope names through the transport.
//!
//! A name is recorded on its process as well (in its relations), so the exit protocol
//! releases it; the registry and the process are locked one after the other, registry first.

use std::sync::Arc;

use crate::cell::Cell;
use crate::{NameError, Node, Pid, PidParseError, SendError, Transport};

/// The longest name accepted, in bytes.
const MAX_NAME_LEN: usize = 255;

impl Node {
    /// Registers `name` for the live process `pid`. Names are released when it exits.
    ///
    /// # Errors
    ///
    /// [`NameError::Taken`], [`NameError::Invalid`], [`NameError::NotAlive`].
    pub fn register(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        // `{` starts PID text: a name must never read as a PID in `resolve`.
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.starts_with('{') {
            return Err(NameError::Invalid(name.to_owned()));
        }
        let cell = self
            .cell(pid)
            .ok_or_else(|| NameError::NotAlive(pid.to_string()))?;
        if let Some(t) = self.cluster_names(name) {
            return register_cluster_name(t, &cell, name);
        }
        let mut names = self.inner.names.lock();
        if names.contains_key(name) {
            return Err(NameError::Taken(name.to_owned()));
        }
        // Lock order: names, then the cell (exit takes the cell lock first, then names, but
        // never both at once).
        let mut st = cell.state.lock();
        if !st.alive {
            return Err(NameError::NotAlive(pid.to_string()));
        }
        st.rel().names.push(name.to_owned());
        names.insert(name.to_owned(), pid.clone());
        Ok(())
    }

    /// The process registered as `name`.
    pub fn lookup(&self, name: &str) -> Option<Pid> {
        if let Some(t) = self.cluster_names(name) {
            return t.lookup_name(name);
        }
        self.inner.names.lock().get(name).cloned()
    }

    /// Removes `name` if `pid` holds it.
    ///
    /// # Errors
    ///
    /// [`NameError::NotOwner`] if `pid` does not hold `name`.
    pub fn unregister(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        if let Some(t) = self.cluster_names(name) {
            t.unregister_name(name, pid)?;
        } else {
            let mut names = self.inner.names.lock();
            if names.get(name) != Some(pid) {
                return Err(NameError::NotOwner(name.to_owned()));
            }
            names.remove(name);
        }
        if let Some(cell) = self.cell(pid) {
            forget_name(&cell, name);
        }
        Ok(())
    }

    /// How many names are registered.
    pub fn name_count(&self) -> usize {
        self.inner.names.lock().len()
    }

    /// Resolves a destination given as text: PID text (`{...}`) or a registered name.
    ///
    /// # Errors
    ///
    /// [`SendError::BadDestination`] for malformed PID text, [`SendError::NoName`] for an
    /// unknown name.
    pub fn resolve(&self, dest: &str) -> Result<Pid, SendError> {
        if dest.starts_with('{') {
            return dest.parse().map_err(|e: PidParseError| {
                SendError::BadDestination(dest.to_owned(), e.problem().to_owned())
            });
        }
        self.lookup(dest)
            .ok_or_else(|| SendError::NoName(dest.to_owned()))
    }

    /// Releases the names of `pid`, which has exited (part of the exit protocol).
    pub(crate) fn release_names(&self, pid: &Pid, held: Vec<String>) {
        // Cluster names without the registry lock: the transport may wait on its store.
        let mut local = Vec::new();
        for name in held {
            match self.cluster_names(&name) {
                Some(t) => {
                    let _ = t.unregister_name(&name, pid);
                }
                None => local.push(name),
            }
        }
        if local.is_empty() {
            return;
        }
        let mut names = self.inner.names.lock();
        for name in local {
            if names.get(&name) == Some(pid) {
                names.remove(&name);
            }
        }
    }

    /// The transport, if it handles `name` as a cluster-scope name.
    fn cluster_names(&self, name: &str) -> Option<&Arc<dyn Transport>> {
        self.inner.transport.get().filter(|t| t.owns_name(name))
    }
}

/// Registers a cluster-scope name through the transport and records it on the process, so it
/// is released when the process exits.
fn register_cluster_name(t: &Arc<dyn Transport>, cell: &Cell, name: &str) -> Result<(), NameError> {
    t.register_name(name, &cell.pid)?;
    let mut st = cell.state.lock();
    if !st.alive {
        drop(st);
        let _ = t.unregister_name(name, &cell.pid);
        return Err(NameError::NotAlive(cell.pid.to_string()));
    }
    st.rel().names.push(name.to_owned());
    Ok(())
}

/// Removes `name` from what `cell` releases on exit.
fn forget_name(cell: &Cell, name: &str) {
    if let Some(rel) = cell.state.lock().rel.as_mut() {
        rel.names.retain(|n| n != name);
    }
}
