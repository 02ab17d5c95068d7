//! The process table: every live process of the node, by process number.
//!
//! A process is in the table from the moment its PID is handed out until its exit protocol
//! runs, which is what makes a fresh PID routable and monitorable at once. The table is split
//! into shards so that spawns, exits and sends on different processes rarely meet on a lock.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cell::Cell;
use crate::Pid;

const SHARDS: usize = 64;

/// One shard of the process table.
type Shard = Mutex<HashMap<u64, Arc<Cell>, BuildHasherDefault<IdHasher>>>;

/// The live processes of one node.
pub(crate) struct ProcessTable {
    shards: Box<[Shard]>,
}

impl ProcessTable {
    pub(crate) fn new() -> ProcessTable {
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::default()))
            .collect();
        ProcessTable { shards }
    }

    pub(crate) fn insert(&self, cell: Arc<Cell>) {
        let id = cell.pid.id();
        self.shard(id).lock().insert(id, cell);
    }

    pub(crate) fn remove(&self, pid: &Pid) {
        self.shard(pid.id()).lock().remove(&pid.id());
    }

    /// The process `pid` names, if it is in the table. The number alone is not enough: a PID
    /// with the right number but another host names no process.
    pub(crate) fn get(&self, pid: &Pid) -> Option<Arc<Cell>> {
        let cell = self.shard(pid.id()).lock().get(&pid.id()).cloned()?;
        (cell.pid == *pid).then_some(cell)
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Every process in the table now. Each shard is copied under its lock and released
    /// before the caller locks any process, so walking the table never nests locks.
    pub(crate) fn cells(&self) -> Vec<Arc<Cell>> {
        let mut cells = Vec::new();
        for shard in self.shards.iter() {
            cells.extend(shard.lock().values().cloned());
        }
        cells
    }

    fn shard(&self, id: u64) -> &Shard {
        &self.shards[(id as usize) % SHARDS]
    }
}

/// Hashes process numbers: they are unique and sequential, so one multiplication spreads them
/// (SipHash would cost more than the rest of a lookup).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
