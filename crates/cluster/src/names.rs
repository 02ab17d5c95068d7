//! Cluster-scope names in a JetStream key-value bucket.
//!
//! A name with the prefix `global:` is registered cluster-wide: `register` is a KV `create`
//! (first writer wins, `name taken` otherwise), `unregister` and the release when the owner
//! exits are a delete that expects the owner's revision, so a newer owner's entry is never
//! removed. When a node is declared down or restarts, the survivors delete its entries the
//! same way (idempotent). Each node mirrors the bucket through a watch for lookups and falls
//! back to a read on a miss: writes are linearizable, reads eventual.
//!
//! The bucket's stream is created by hand (`KV_<bucket>`), because `create_key_value` fails
//! against nats-server 2.9 (see `docs/cluster-design.md §5`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use parking_lot::Mutex;
use wsrelay_process::{NameError, Pid};

/// Names with this prefix are registered cluster-wide (`process.registry.register("global:lobby")`).
pub const CLUSTER_NAME_PREFIX: &str = "global:";

/// How long `register` and a lookup miss wait for the name store.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster names of one node: the bucket, its mirror, and who this node is.
#[derive(Debug)]
pub(crate) struct Names {
    kv: kv::Store,
    /// The cluster runtime, where every store request runs.
    rt: tokio::runtime::Handle,
    /// This node and its incarnation (for taking over its own stale entries).
    me: String,
    inc: u32,
    /// name → (owner, revision)
    mirror: Arc<Mutex<HashMap<String, (Pid, u64)>>>,
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
        let mut attempt = 0;
        loop {
            match Names::try_open(client.clone(), bucket, replicas, me, inc).await {
                Ok(names) => return Ok(names),
                Err(e) if attempt < 10 => {
                    tracing::warn!(error = %e, "cluster names not ready; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
        me: &str,
        inc: u32,
    ) -> Result<Names, String> {
        let js = jetstream::new(client);
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
        let mirror = Arc::new(Mutex::new(HashMap::new()));
        let mut watch = kv
            .watch_all()
            .await
            .map_err(|e| format!("cannot watch bucket {bucket}: {e}"))?;
        let m = mirror.clone();
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                apply_entry(&m, &entry);
            }
        });
        Ok(Names {
            kv,
            rt: tokio::runtime::Handle::current(),
            me: me.to_owned(),
            inc,
            mirror,
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
                    .insert(name.to_owned(), (pid.clone(), rev));
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
        let rev = {
            let mut mirror = self.mirror.lock();
            match mirror.get(name) {
                Some((owner, rev)) if owner == pid => {
                    let rev = *rev;
                    mirror.remove(name);
                    rev
                }
                _ => return Err(NameError::NotOwner(name.to_owned())),
            }
        };
        self.delete(name, rev);
        Ok(())
    }

    fn delete(&self, name: &str, rev: u64) {
        let kv = self.kv.clone();
        let k = key(name);
        self.rt.spawn(async move {
            // Retried: a delete can fail while the stream elects a leader.
            for _ in 0..5 {
                let done =
                    tokio::time::timeout(STORE_TIMEOUT, kv.delete_expect_revision(&k, Some(rev)))
                        .await;
                match done {
                    Ok(Ok(())) => return,
                    // Wrong revision: someone else owns the name now, nothing to release.
                    Ok(Err(e)) if e.to_string().contains("wrong last sequence") => return,
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }

    /// The owner of `name`: from the mirror, else read from the store.
    pub(crate) fn lookup(&self, name: &str) -> Option<Pid> {
        if let Some((pid, _)) = self.mirror.lock().get(name) {
            return Some(pid.clone());
        }
        let kv = self.kv.clone();
        let k = key(name);
        let entry = block_on(&self.rt, async move {
            tokio::time::timeout(STORE_TIMEOUT, kv.entry(k)).await
        })?;
        let entry = entry.ok()?.ok()??;
        if entry.operation != kv::Operation::Put {
            return None;
        }
        apply_entry(&self.mirror, &entry);
        std::str::from_utf8(&entry.value).ok()?.parse().ok()
    }

    /// Deletes every name held by processes of incarnation `inc` of `node` (declared down or
    /// restarted); `None` means every incarnation of `node`.
    ///
    /// Only the lost incarnation's entries: a restarted node usually registers its names
    /// again before the survivors hear its first heartbeat, and those entries must stay.
    pub(crate) fn release_node(&self, node: &str, inc: Option<u32>) {
        let gone: Vec<(String, u64)> = {
            let mut mirror = self.mirror.lock();
            let gone: Vec<_> = mirror
                .iter()
                .filter(|(_, (pid, _))| {
                    pid.node() == node && inc.is_none_or(|inc| (pid.id() >> 32) as u32 == inc)
                })
                .map(|(n, (_, rev))| (n.clone(), *rev))
                .collect();
            for (n, _) in &gone {
                mirror.remove(n);
            }
            gone
        };
        for (name, rev) in gone {
            tracing::info!(%name, node, "releasing cluster name of a lost node");
            self.delete(&name, rev);
        }
    }
}

/// Creates the key; an entry left by an earlier incarnation of this same node (a restart
/// faster than the survivors noticed) is stale and taken over.
async fn create_or_take_stale(
    kv: &kv::Store,
    key: &str,
    value: bytes::Bytes,
    me: &str,
    inc: u32,
) -> Result<u64, kv::CreateError> {
    match kv.create(key, value.clone()).await {
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let Ok(Some(entry)) = kv.entry(key).await else {
                return Err(e);
            };
            let holder = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse::<Pid>().ok());
            let stale = holder.is_some_and(|p| p.node() == me && (p.id() >> 32) as u32 != inc);
            if !stale
                || kv
                    .delete_expect_revision(key, Some(entry.revision))
                    .await
                    .is_err()
            {
                return Err(e);
            }
            kv.create(key, value).await
        }
        other => other,
    }
}

fn apply_entry(mirror: &Mutex<HashMap<String, (Pid, u64)>>, entry: &kv::Entry) {
    let Some(name) = name_of(&entry.key) else {
        return;
    };
    let mut m = mirror.lock();
    match entry.operation {
        kv::Operation::Put => {
            let pid = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse::<Pid>().ok());
            if let Some(pid) = pid {
                if m.get(&name).is_none_or(|(_, rev)| *rev < entry.revision) {
                    m.insert(name, (pid, entry.revision));
                }
            }
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            if m.get(&name).is_some_and(|(_, rev)| *rev < entry.revision) {
                m.remove(&name);
            }
        }
    }
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
}
