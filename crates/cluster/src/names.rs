//! Cluster-scope names in a JetStream key-value bucket.
//!
//! A name with the prefix `global:` is registered cluster-wide: `register` is a KV `create`
//! (first writer wins, `name taken` otherwise), `unregister` and the release when the owner
//! exits are a delete that expects the owner's revision, so a newer owner's entry is never
//! removed. When a node is declared down or restarts, the survivors delete its entries the
//! same way (idempotent). Each node mirrors the bucket through a watch for lookups and falls
//! back to a read on a miss: writes are linearizable, the mirror eventual. Every read asks
//! the stream's leader ([`leader_entry`]), never a replica that may lag or have diverged.
//!
//! A survivor releases a lost node's names from its mirror, which may lag the store: a name
//! registered moments before the loss can reach the mirror after the release. So the
//! released incarnations are remembered for a while ([`RELEASED_FOR`], at most
//! [`RELEASED_MAX`]), and an entry of one of them that arrives later (through the watch or a
//! read on a miss) is deleted on arrival instead of being mirrored. A node declared down and
//! then heard again in the same incarnation (a partition that healed) is forgotten there,
//! so that its later registrations stay.
//!
//! Such a node (hung, or cut off from the others past their detection) finds its own names
//! deleted by the survivors while its processes still hold them: it re-registers them
//! ([`REASSERT_EVERY`]) as long as the holder has not released them and nobody else has
//! taken them meanwhile. Until the survivors hear it again they delete the new entry as a
//! late one, and the next round registers it again. The node learns of those deletes
//! through its mirror's watch, and, in case the watch missed one (it lagged while the node
//! was hung), by reading its names from the store for a while whenever a peer starts a new
//! session with it (the sign that the peer had declared it down), and every half minute
//! besides. (Without those reads the relay chaos soak once saw a re-registration deleted as
//! a late one stay lost: the name's new connections found no target, "wedged".)
//!
//! The bucket's stream is created by hand (`KV_<bucket>`), because `create_key_value` fails
//! against nats-server 2.9 (see `docs/cluster-design.md §5`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use parking_lot::Mutex;
use wsrelay_process::{NameError, Pid};

use crate::peer::incarnation_of;

/// Names with this prefix are registered cluster-wide (`process.registry.register("global:lobby")`).
pub const CLUSTER_NAME_PREFIX: &str = "global:";

/// How long `register` and a lookup miss wait for the name store.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a released incarnation is remembered: longer than any lag of a watch that is
/// still delivering (a mirror catching up after its NATS server was hung or cut off).
const RELEASED_FOR: Duration = Duration::from_secs(600);

/// How many released incarnations are remembered at most; the oldest is forgotten first
/// (many node losses within [`RELEASED_FOR`] are a cluster in trouble, and the memory stays
/// bounded).
const RELEASED_MAX: usize = 256;

/// How often a node checks that the names it holds are still in the store (see the module
/// docs): a look at its own mirror, a store request only for a name found missing there
/// (or for each of them within [`CHECK_FOR`] of a peer going down or coming back).
const REASSERT_EVERY: Duration = Duration::from_secs(1);

/// How long after a peer went down or came back a node reads all the names it holds from
/// the store each round, not only those missing from its mirror: the survivors release
/// them around then, and the mirror's watch may lag.
const CHECK_FOR: Duration = Duration::from_secs(10);

/// Every how many rounds ([`REASSERT_EVERY`]) a node reads all the names it holds from the
/// store even when nothing it saw suggests a loss: its mirror's watch can miss a survivor's delete (a watch that lagged
/// while this node was hung, then caught up past it), and nothing else would show it.
const CHECK_ALL_EVERY: u32 = 30;

/// How many times registering a name reads the key again when it was written meanwhile (see
/// [`create_or_take_stale`]); 0.5 s of pauses in all.
const TAKE_ATTEMPTS: u64 = 5;

/// Most names checked or registered again in one round (store requests stay bounded).
const REASSERT_MAX: usize = 1024;

/// This node's copy of the bucket, and the incarnations whose names it released.
#[derive(Debug, Default)]
struct Mirror {
    /// name → (owner, revision)
    names: HashMap<String, (Pid, u64)>,
    /// Released incarnations, oldest first: (node, incarnation, when).
    released: VecDeque<(String, u32, Instant)>,
    /// Until when this node reads its own names from the store each round (a peer went
    /// down or came back: see [`CHECK_FOR`]).
    check_until: Option<Instant>,
}

impl Mirror {
    /// Whether `pid` belongs to an incarnation released here (and not yet forgotten).
    fn is_released(&mut self, pid: &Pid) -> bool {
        let now = Instant::now();
        while self
            .released
            .front()
            .is_some_and(|(_, _, at)| now.duration_since(*at) >= RELEASED_FOR)
        {
            self.released.pop_front();
        }
        let inc = incarnation_of(pid);
        self.released
            .iter()
            .any(|(node, i, _)| node == pid.node() && *i == inc)
    }

    /// Remembers that incarnation `inc` of `node` was released.
    fn remember_released(&mut self, node: &str, inc: u32) {
        self.check_until = Some(Instant::now() + CHECK_FOR);
        self.forget_released(node, inc);
        self.released
            .push_back((node.to_owned(), inc, Instant::now()));
        while self.released.len() > RELEASED_MAX {
            self.released.pop_front();
        }
    }

    /// Forgets a released incarnation: its node was heard again.
    fn forget_released(&mut self, node: &str, inc: u32) {
        self.check_until = Some(Instant::now() + CHECK_FOR);
        self.released.retain(|(n, i, _)| !(n == node && *i == inc));
    }

    /// Applies one entry of the bucket (`name` at `revision`). Returns `Some(revision)` if
    /// it is a registration of a released incarnation that arrived after the release: not
    /// mirrored, the caller deletes it from the store.
    fn apply(
        &mut self,
        name: String,
        operation: kv::Operation,
        value: &[u8],
        revision: u64,
    ) -> Option<u64> {
        match operation {
            kv::Operation::Put => {
                let pid = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<Pid>().ok())?;
                let newer = self.names.get(&name).is_none_or(|(_, rev)| *rev < revision);
                if !newer {
                    return None;
                }
                if self.is_released(&pid) {
                    // The entry replaced whatever older one we had: that one is gone too.
                    self.names.remove(&name);
                    return Some(revision);
                }
                self.names.insert(name, (pid, revision));
                None
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                if self
                    .names
                    .get(&name)
                    .is_some_and(|(_, rev)| *rev < revision)
                {
                    self.names.remove(&name);
                }
                None
            }
        }
    }

    /// Takes the names held by incarnation `inc` of `node` (every incarnation if `None`)
    /// out of the mirror and remembers their incarnations as released.
    fn release_node(&mut self, node: &str, inc: Option<u32>) -> Vec<(String, u64)> {
        self.check_until = Some(Instant::now() + CHECK_FOR);
        let gone: Vec<(String, u64, u32)> = self
            .names
            .iter()
            .filter(|(_, (pid, _))| {
                pid.node() == node && inc.is_none_or(|inc| incarnation_of(pid) == inc)
            })
            .map(|(n, (pid, rev))| (n.clone(), *rev, incarnation_of(pid)))
            .collect();
        // Without a known incarnation only those seen in the mirror can be remembered: a
        // node never heard from is not remembered as a whole, or its next run's names would
        // be deleted too.
        let mut incs: Vec<u32> = gone.iter().map(|(_, _, i)| *i).chain(inc).collect();
        incs.sort_unstable();
        incs.dedup();
        for i in incs {
            self.remember_released(node, i);
        }
        gone.into_iter()
            .map(|(name, rev, _)| {
                self.names.remove(&name);
                (name, rev)
            })
            .collect()
    }
}

/// The cluster names of one node: the bucket, its mirror, and who this node is.
#[derive(Debug)]
pub(crate) struct Names {
    kv: kv::Store,
    /// The cluster runtime, where every store request runs.
    rt: tokio::runtime::Handle,
    /// This node and its incarnation (for taking over its own stale entries).
    me: String,
    inc: u32,
    /// The bucket as this node has seen it.
    mirror: Arc<Mutex<Mirror>>,
    /// The names this node's processes hold: name → holder, from `register` until
    /// `unregister` (what the survivors may have released behind their back).
    own: Arc<Mutex<HashMap<String, Pid>>>,
}

fn key(name: &str) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(2 + name.len() * 2);
    k.push_str("n.");
    for b in name.bytes() {
        let _ = write!(k, "{b:02x}");
    }
    k
}

fn name_of(key: &str) -> Option<String> {
    let hex = key.strip_prefix("n.")?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Runs `fut` on the cluster runtime and waits for it from any thread (also a runtime
/// worker of the app: the cluster runtime never waits on the app, so this cannot deadlock).
fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(STORE_TIMEOUT + Duration::from_millis(500))
        .ok()
}

/// Opens (or creates) the bucket and its watch: the steps that fail while JetStream elects its
/// leaders, which [`Names::open`] retries.
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<(kv::Store, kv::Watch), String> {
    let kv = match js.get_key_value(bucket).await {
        Ok(kv) => kv,
        Err(_) => {
            let config = jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            };
            if let Err(e) = js.get_or_create_stream(config).await {
                return Err(format!("cannot create stream KV_{bucket}: {e}"));
            }
            js.get_key_value(bucket)
                .await
                .map_err(|e| format!("cannot open bucket {bucket}: {e}"))?
        }
    };
    let watch = kv
        .watch_all()
        .await
        .map_err(|e| format!("cannot watch bucket {bucket}: {e}"))?;
    Ok((kv, watch))
}

impl Names {
    /// Opens the bucket for node `me` (incarnation `inc`), retrying while JetStream elects
    /// its leaders (a fresh NATS cluster answers stream requests only after a few seconds).
    /// Runs on the cluster runtime, which later store requests use too.
    pub(crate) async fn open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
        me: &str,
        inc: u32,
    ) -> Result<Names, String> {
        let js = jetstream::new(client);
        let mut attempt = 0;
        let (kv, mut watch) = loop {
            match open_bucket(&js, bucket, replicas).await {
                Ok(opened) => break opened,
                Err(e) if attempt < 10 => {
                    tracing::warn!(error = %e, "cluster names not ready; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mirror = Arc::new(Mutex::new(Mirror::default()));
        let m = mirror.clone();
        let store = kv.clone();
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                if let Some(rev) = apply_entry(&m, &entry) {
                    release_late(&store, &entry.key, rev);
                }
            }
            tracing::warn!(
                "the watch of the cluster names ended: lookups read the store on a miss only"
            );
        });
        let own = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(reassert_loop(
            kv.clone(),
            mirror.clone(),
            Arc::downgrade(&own),
            me.to_owned(),
            inc,
        ));
        Ok(Names {
            kv,
            rt: tokio::runtime::Handle::current(),
            me: me.to_owned(),
            inc,
            mirror,
            own,
        })
    }

    /// Registers `name` for `pid` cluster-wide; waits for the store (at most a few seconds).
    pub(crate) fn register(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        let kv = self.kv.clone();
        let k = key(name);
        let value = bytes::Bytes::copy_from_slice(pid.as_str().as_bytes());
        let me = self.me.clone();
        let inc = self.inc;
        let done = block_on(&self.rt, async move {
            tokio::time::timeout(
                STORE_TIMEOUT,
                create_or_take_stale(&kv, &k, value, &me, inc),
            )
            .await
        });
        match done {
            Some(Ok(Ok(rev))) => {
                self.mirror
                    .lock()
                    .names
                    .insert(name.to_owned(), (pid.clone(), rev));
                self.own.lock().insert(name.to_owned(), pid.clone());
                Ok(())
            }
            Some(Ok(Err(e))) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(NameError::Taken(name.to_owned()))
            }
            Some(Ok(Err(e))) => Err(NameError::Unavailable(name.to_owned(), e.to_string())),
            _ => Err(NameError::Unavailable(name.to_owned(), "timeout".into())),
        }
    }

    /// Releases `name` if `pid` holds it; the store delete runs in the background.
    pub(crate) fn unregister(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        {
            // First: the re-registration must not bring back a name its holder gave up.
            let mut own = self.own.lock();
            if own.get(name) == Some(pid) {
                own.remove(name);
            }
        }
        let rev = {
            let mut mirror = self.mirror.lock();
            match mirror.names.get(name) {
                Some((owner, rev)) if owner == pid => {
                    let rev = *rev;
                    mirror.names.remove(name);
                    rev
                }
                _ => return Err(NameError::NotOwner(name.to_owned())),
            }
        };
        self.delete(name, rev);
        Ok(())
    }

    fn delete(&self, name: &str, rev: u64) {
        self.rt
            .spawn(delete_expecting(self.kv.clone(), key(name), rev));
    }

    /// The owner of `name`: from the mirror, else read from the store.
    pub(crate) fn lookup(&self, name: &str) -> Option<Pid> {
        if let Some((pid, _)) = self.mirror.lock().names.get(name) {
            return Some(pid.clone());
        }
        let kv = self.kv.clone();
        let k = key(name);
        let entry = block_on(&self.rt, async move {
            tokio::time::timeout(STORE_TIMEOUT, leader_entry(&kv, &k)).await
        })?;
        let entry = entry.ok()?.ok()??;
        if entry.operation != kv::Operation::Put {
            return None;
        }
        if let Some(rev) = apply_entry(&self.mirror, &entry) {
            self.rt
                .spawn(delete_expecting(self.kv.clone(), entry.key, rev));
            return None;
        }
        std::str::from_utf8(&entry.value).ok()?.parse().ok()
    }

    /// Deletes every name held by processes of incarnation `inc` of `node` (declared down or
    /// restarted); `None` means every incarnation of `node`.
    ///
    /// Only the lost incarnation's entries: a restarted node usually registers its names
    /// again before the survivors hear its first heartbeat, and those entries must stay.
    /// The incarnation is remembered: its entries that reach the mirror later are deleted
    /// then (see the module docs).
    pub(crate) fn release_node(&self, node: &str, inc: Option<u32>) {
        let gone = self.mirror.lock().release_node(node, inc);
        for (name, rev) in gone {
            tracing::info!(%name, node, "releasing cluster name of a lost node");
            self.delete(&name, rev);
        }
    }

    /// Node `node`, declared down, was heard again in incarnation `inc` (a partition that
    /// healed): its entries are no longer late arrivals of a lost run.
    pub(crate) fn node_back(&self, node: &str, inc: u32) {
        self.mirror.lock().forget_released(node, inc);
    }

    /// A peer started a new session with this node: it had declared this node down (hung, or
    /// cut off), so it released this node's names, and the entries this node registered again
    /// meanwhile may have been deleted as late ones. The next rounds read every name held
    /// here from the store (for [`CHECK_FOR`]), so none stays lost behind a watch that missed
    /// the delete.
    pub(crate) fn check_own(&self) {
        self.mirror.lock().check_until = Some(Instant::now() + CHECK_FOR);
    }
}

/// Re-registers, every [`REASSERT_EVERY`], the names this node holds that are gone: those
/// missing from its mirror, and for [`CHECK_FOR`] after a peer went down, came back or
/// started a new session with this node, and every [`CHECK_ALL_EVERY`] rounds besides,
/// every one of them, read from the store (the mirror's watch may lag behind a NATS failover
/// and miss a survivor's delete). At most [`REASSERT_MAX`] names a round. Ends with
/// the [`Names`].
async fn reassert_loop(
    kv: kv::Store,
    mirror: Arc<Mutex<Mirror>>,
    own: std::sync::Weak<Mutex<HashMap<String, Pid>>>,
    me: String,
    inc: u32,
) {
    let mut tick = tokio::time::interval(REASSERT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u32;
    loop {
        tick.tick().await;
        round = round.wrapping_add(1);
        let Some(own) = own.upgrade() else { return };
        let now = Instant::now();
        let candidates: Vec<(String, Pid)> = {
            let mut own = own.lock();
            let m = mirror.lock();
            // A name the mirror shows held by another process is lost to us.
            own.retain(|name, pid| m.names.get(name).is_none_or(|(holder, _)| holder == pid));
            let all =
                round % CHECK_ALL_EVERY == 0 || m.check_until.is_some_and(|until| now < until);
            own.iter()
                .filter(|(name, _)| all || !m.names.contains_key(*name))
                .take(REASSERT_MAX)
                .map(|(name, pid)| (name.clone(), pid.clone()))
                .collect()
        };
        for (name, pid) in candidates {
            reassert_one(&kv, &mirror, &own, name, pid, &me, inc).await;
        }
    }
}

/// Makes sure the store holds `name` for `pid`: keeps it if it does, registers it again if
/// it is gone (or a stale entry of an earlier run of this node), forgets it if another
/// process holds it now. A store that does not answer is tried again the next round.
async fn reassert_one(
    kv: &kv::Store,
    mirror: &Mutex<Mirror>,
    own: &Mutex<HashMap<String, Pid>>,
    name: String,
    pid: Pid,
    me: &str,
    inc: u32,
) {
    let k = key(&name);
    let Ok(Ok(entry)) = tokio::time::timeout(STORE_TIMEOUT, leader_entry(kv, &k)).await else {
        tracing::debug!(%name, "cluster names store not reachable; checking again");
        return;
    };
    let held = entry.filter(|e| e.operation == kv::Operation::Put);
    if let Some(e) = &held {
        if e.value.as_ref() == pid.as_str().as_bytes() {
            adopt(mirror, name, pid, e.revision);
            return;
        }
        if !held_by_earlier_run(&e.value, me, inc) {
            tracing::warn!(%name, "cluster name taken by another process while this node was cut off");
            let mut own = own.lock();
            if own.get(&name) == Some(&pid) {
                own.remove(&name);
            }
            return;
        }
    }
    let value = bytes::Bytes::copy_from_slice(pid.as_str().as_bytes());
    let done =
        tokio::time::timeout(STORE_TIMEOUT, create_or_take_stale(kv, &k, value, me, inc)).await;
    match done {
        Ok(Ok(rev)) if own.lock().get(&name) == Some(&pid) => {
            tracing::info!(%name, "re-registered a cluster name released while this node was cut off");
            adopt(mirror, name, pid, rev);
        }
        // Unregistered while the store request ran.
        Ok(Ok(rev)) => delete_expecting(kv.clone(), k, rev).await,
        // Taken meanwhile, or no answer: the next round reads whose it is.
        Ok(Err(e)) => tracing::debug!(%name, error = %e, "cluster name not registered again yet"),
        Err(_) => tracing::debug!(%name, "cluster names store not reachable; checking again"),
    }
}

/// Puts this node's entry of `name` (at `rev`) in the mirror unless it has a newer one.
fn adopt(mirror: &Mutex<Mirror>, name: String, pid: Pid, rev: u64) {
    let mut m = mirror.lock();
    if m.names.get(&name).is_none_or(|(_, r)| *r < rev) {
        m.names.insert(name, (pid, rev));
    }
}

/// Deletes `key` if it is still at `rev`, in the background of the caller's runtime.
fn release_late(kv: &kv::Store, key: &str, rev: u64) {
    tracing::info!(
        key,
        rev,
        "releasing a cluster name of a lost node that arrived late"
    );
    tokio::spawn(delete_expecting(kv.clone(), key.to_owned(), rev));
}

/// Deletes `key` expecting revision `rev` (so a newer owner's entry is never removed).
async fn delete_expecting(kv: kv::Store, key: String, rev: u64) {
    // Retried: a delete can fail while the stream elects a leader.
    for _ in 0..5 {
        let done =
            tokio::time::timeout(STORE_TIMEOUT, kv.delete_expect_revision(&key, Some(rev))).await;
        match done {
            Ok(Ok(())) => return,
            // Wrong revision: someone else owns the name now, nothing to release.
            Ok(Err(e)) if e.to_string().contains("wrong last sequence") => return,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Creates the key; an entry left by an earlier incarnation of this same node (a restart
/// faster than the survivors noticed, or a restart of every node at once, with no survivor to
/// release anything) is stale and taken over.
///
/// The key is read from the stream's leader ([`leader_entry`]) and written with the
/// revision read as the one expected (an `update`, which the leader checks), so a write
/// meanwhile makes it fail rather than be overwritten: then it reads again, a few times.
/// `kv::Store::create` is not used: it reads the key by a direct get when its first write is
/// refused, and a replica answering that read may lag (before, the stale entry was deleted
/// and the key created again, and that read now and then still found the entry: "already
/// registered"; after all three nodes of the relay chaos soak were restarted together, a
/// target's name failed to register in 3 of 11 runs, its service restarted with backoff for
/// up to 15 s).
async fn create_or_take_stale(
    kv: &kv::Store,
    key: &str,
    value: bytes::Bytes,
    me: &str,
    inc: u32,
) -> Result<u64, kv::CreateError> {
    let taken = || kv::CreateError::new(kv::CreateErrorKind::AlreadyExists);
    let mut attempt: u64 = 0;
    loop {
        let expected = match leader_entry(kv, key).await {
            Err(e) => return Err(kv::CreateError::with_source(kv::CreateErrorKind::Other, e)),
            Ok(None) => 0,
            Ok(Some(entry)) if entry.operation != kv::Operation::Put => entry.revision,
            Ok(Some(entry)) if held_by_earlier_run(&entry.value, me, inc) => entry.revision,
            Ok(Some(_)) => return Err(taken()),
        };
        if let Ok(rev) = kv.update(key, value.clone(), expected).await {
            return Ok(rev);
        }
        // Written meanwhile: read again.
        attempt += 1;
        tracing::debug!(
            key,
            attempt,
            "cluster name written meanwhile; reading it again"
        );
        if attempt >= TAKE_ATTEMPTS {
            return Err(taken());
        }
        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
    }
}

/// Whether a name entry's `value` is the PID of a process of an earlier run of this node
/// (`me`, now in incarnation `inc`): an entry nobody released, which this run may take over.
fn held_by_earlier_run(value: &[u8], me: &str, inc: u32) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<Pid>().ok())
        .is_some_and(|p| p.node() == me && incarnation_of(&p) != inc)
}

/// The latest entry of `key` (a delete or purge marker included), read from the stream's
/// leader. `kv::Store::entry` reads by a direct get when the bucket allows them (it does, for
/// clients that want fast reads), and any replica answers a direct get, one that lags or
/// whose log diverged after a partition included: the relay chaos soak saw such a read give a
/// dead run's entry with a *higher* revision than the live one (a gateway then resolved the
/// name to the dead run and, its mirror taking the higher revision for the newer, kept it:
/// one target got no connection for a minute).
async fn leader_entry(kv: &kv::Store, key: &str) -> Result<Option<kv::Entry>, String> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{key}", kv.prefix);
    let message = match kv.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // As the client library reads it: the operation header, or a marker the server wrote.
    let operation = match (
        message.headers.get("KV-Operation").map(|v| v.as_str()),
        message
            .headers
            .get("Nats-Marker-Reason")
            .map(|v| v.as_str()),
    ) {
        (Some("DEL"), _) | (None, Some("Remove")) => kv::Operation::Delete,
        (Some("PURGE"), _) | (None, Some("MaxAge" | "Purge")) => kv::Operation::Purge,
        _ => kv::Operation::Put,
    };
    Ok(Some(kv::Entry {
        bucket: kv.name.clone(),
        key: key.to_owned(),
        value: message.payload,
        revision: message.sequence,
        delta: 0,
        created: message.time,
        operation,
        seen_current: false,
    }))
}

/// Applies a bucket entry to the mirror; `Some(revision)`: a late entry of a released
/// incarnation, to delete (see [`Mirror::apply`]).
fn apply_entry(mirror: &Mutex<Mirror>, entry: &kv::Entry) -> Option<u64> {
    let name = name_of(&entry.key)?;
    mirror
        .lock()
        .apply(name, entry.operation, &entry.value, entry.revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for name in ["lobby", "global:room/1", "ü ~ *>"] {
            let k = key(name);
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
            assert_eq!(name_of(&k).as_deref(), Some(name));
        }
    }

    fn pid(node: &str, inc: u32, n: u32) -> Pid {
        let id = (u64::from(inc) << 32) | u64::from(n);
        format!("{{{node}@app:processes|0x{id:05x}}}")
            .parse()
            .unwrap()
    }

    fn put(m: &mut Mirror, name: &str, pid: &Pid, rev: u64) -> Option<u64> {
        m.apply(
            name.to_owned(),
            kv::Operation::Put,
            pid.as_str().as_bytes(),
            rev,
        )
    }

    #[test]
    fn a_registration_arriving_after_its_run_was_released_is_deleted() {
        let mut m = Mirror::default();
        assert_eq!(put(&mut m, "global:a", &pid("b", 7, 1), 1), None);
        assert_eq!(m.release_node("b", Some(7)), vec![("global:a".into(), 1)]);
        // The race: B's registration reaches this mirror after the release.
        assert_eq!(put(&mut m, "global:late", &pid("b", 7, 2), 2), Some(2));
        assert!(!m.names.contains_key("global:late"));
        // Another run of B, and other nodes, are not affected.
        assert_eq!(put(&mut m, "global:next", &pid("b", 8, 1), 3), None);
        assert_eq!(put(&mut m, "global:c", &pid("c", 7, 1), 4), None);
        assert_eq!(m.names.len(), 2);
        // Heard again in the same run (a healed partition): its names stay.
        m.forget_released("b", 7);
        assert_eq!(put(&mut m, "global:back", &pid("b", 7, 3), 5), None);
    }

    #[test]
    fn released_runs_of_an_unknown_incarnation_are_those_seen() {
        let mut m = Mirror::default();
        put(&mut m, "global:a", &pid("b", 7, 1), 1);
        assert_eq!(m.release_node("b", None).len(), 1);
        assert_eq!(put(&mut m, "global:late", &pid("b", 7, 2), 2), Some(2));
        // A run never seen is not taken for a lost one.
        assert_eq!(put(&mut m, "global:next", &pid("b", 8, 1), 3), None);
    }

    #[test]
    fn released_runs_are_bounded() {
        let mut m = Mirror::default();
        for inc in 0..RELEASED_MAX as u32 + 10 {
            m.release_node("b", Some(inc));
        }
        assert_eq!(m.released.len(), RELEASED_MAX);
        // The oldest are forgotten first.
        assert_eq!(put(&mut m, "global:x", &pid("b", 0, 1), 1), None);
        let last = RELEASED_MAX as u32 + 9;
        assert_eq!(put(&mut m, "global:y", &pid("b", last, 1), 2), Some(2));
    }
}
