//! The `cluster` entry: connects the node to NATS before anything else starts.
//!
//! Without a `cluster` entry the app runs a single node named `local` and needs no broker.
//! With one, the node is named by `node` (or `WSRELAY_NODE`), connects to `nats_urls` with
//! the `credentials` file (a NATS `.creds` file, an NKey seed or `user:password`;
//! `WSRELAY_CLUSTER_CREDENTIALS` overrides it) and the `tls` files, and every PID of another
//! node is routed there (see `wsrelay-cluster` and `docs/cluster.md`). The environment can
//! also set the cluster name (`WSRELAY_CLUSTER_NAME`, default `wsr`), the DISCONNECT advisory
//! subject (`WSRELAY_CLUSTER_ADVISORY`, default `$SYS.ACCOUNT.WSR.DISCONNECT`, empty to
//! disable), the replicas of the names bucket (`WSRELAY_CLUSTER_REPLICAS`, default 1), the
//! file of the cluster secret that signs every frame (`WSRELAY_CLUSTER_SECRET_FILE`, unset:
//! no signing) and the most peers known at once (`WSRELAY_CLUSTER_MAX_PEERS`, default 256).

use std::path::PathBuf;

use wsrelay_cluster::{Auth, Cluster, ClusterError, ClusterOptions, ClusterSecret, TlsOptions};
use wsrelay_config::AppConfig;
use wsrelay_process::Node;

use crate::AppError;

/// The node of the app: clustered if the config has a `cluster` entry.
pub(crate) async fn node(config: &AppConfig) -> Result<(Node, Option<Cluster>), AppError> {
    let Some(entry) = &config.cluster else {
        return Ok((Node::new(), None));
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let node_name = env("WSRELAY_NODE")
        .or_else(|| entry.node.clone())
        .unwrap_or_else(default_node_name);
    let cluster_name = env("WSRELAY_CLUSTER_NAME").unwrap_or_else(|| "wsr".to_owned());
    let mut options = ClusterOptions::new(&cluster_name, &node_name, entry.nats_urls.clone());
    let credentials = env("WSRELAY_CLUSTER_CREDENTIALS")
        .map(PathBuf::from)
        .or_else(|| entry.credentials.clone());
    if let Some(file) = credentials {
        options = options.with_auth(Auth::from_file(&file).map_err(cluster_error)?);
    }
    if let Some(tls) = &entry.tls {
        options = options.with_tls(TlsOptions {
            ca: tls.ca.clone(),
            cert: tls.cert.clone().zip(tls.key.clone()),
        });
    }
    match std::env::var("WSRELAY_CLUSTER_ADVISORY") {
        Ok(subject) if subject.is_empty() => {}
        Ok(subject) => options = options.with_disconnect_advisory(subject),
        Err(_) => options = options.with_disconnect_advisory("$SYS.ACCOUNT.WSR.DISCONNECT"),
    }
    if let Some(replicas) = env("WSRELAY_CLUSTER_REPLICAS").and_then(|r| r.parse().ok()) {
        options = options.with_names_replicas(replicas);
    }
    if let Some(file) = env("WSRELAY_CLUSTER_SECRET_FILE") {
        let secret = ClusterSecret::from_file(file.as_ref()).map_err(cluster_error)?;
        options = options.with_secret(secret);
    }
    if let Some(max) = env("WSRELAY_CLUSTER_MAX_PEERS") {
        let forget_after = options.forget_after;
        options = options.with_peer_limits(max_peers(&max)?, forget_after);
    }
    let cluster = Cluster::start(options).await.map_err(cluster_error)?;
    tracing::info!(node = %node_name, cluster = %cluster_name, incarnation = cluster.incarnation(), "joined the cluster");
    Ok((cluster.node().clone(), Some(cluster)))
}

/// `WSRELAY_CLUSTER_MAX_PEERS`: a positive number (a typo must not silently mean 256).
fn max_peers(value: &str) -> Result<usize, AppError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(cluster_error(ClusterError::InvalidSetting {
            setting: "WSRELAY_CLUSTER_MAX_PEERS".into(),
            value: value.to_owned(),
            problem: "expected a positive number of peers".into(),
        })),
    }
}

fn cluster_error(e: ClusterError) -> AppError {
    AppError::Cluster(Box::new(e))
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        format!("node-{}", std::process::id())
    } else {
        clean
    }
}
