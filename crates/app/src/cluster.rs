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
//!
//! **Zero-config join.** `WSRELAY_NATS_URLS` (comma-separated) makes the app a cluster node
//! even without a `cluster` entry (named by `WSRELAY_NODE`), so one app directory runs
//! unchanged as several nodes; with an entry it replaces the entry's `nats_urls`. A bad value
//! in either variable is a configuration error that names it. Process groups (`pg`) span
//! the cluster's nodes.

use std::path::PathBuf;

use wsrelay_cluster::{Auth, Cluster, ClusterError, ClusterOptions, ClusterSecret, TlsOptions};
use wsrelay_config::AppConfig;
use wsrelay_process::Node;

use crate::AppError;

/// The node of the app: clustered if the config has a `cluster` entry.
pub(crate) async fn node(config: &AppConfig) -> Result<(Node, Option<Cluster>), AppError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let env_urls = env("WSRELAY_NATS_URLS")
        .map(|v| nats_urls(&v))
        .transpose()?;
    let entry = config.cluster.as_ref();
    let urls = match (env_urls, entry) {
        (Some(urls), _) => urls,
        (None, Some(entry)) => entry.nats_urls.clone(),
        (None, None) => return Ok((Node::new(), None)),
    };
    let env_node = env("WSRELAY_NODE");
    if let Some(name) = &env_node {
        if !valid_node_name(name) {
            return Err(AppError::ClusterEnv {
                var: "WSRELAY_NODE",
                value: name.clone(),
                problem: "a node name is 1 to 64 letters, digits, '-' and '_'".into(),
            });
        }
    }
    let node_name = env_node
        .or_else(|| entry.and_then(|e| e.node.clone()))
        .unwrap_or_else(default_node_name);
    let cluster_name = env("WSRELAY_CLUSTER_NAME").unwrap_or_else(|| "wsr".to_owned());
    let mut options = ClusterOptions::new(&cluster_name, &node_name, urls).with_groups(true);
    let credentials = env("WSRELAY_CLUSTER_CREDENTIALS")
        .map(PathBuf::from)
        .or_else(|| entry.and_then(|e| e.credentials.clone()));
    if let Some(file) = credentials {
        options = options.with_auth(Auth::from_file(&file).map_err(cluster_error)?);
    }
    if let Some(tls) = entry.and_then(|e| e.tls.as_ref()) {
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

/// `WSRELAY_NATS_URLS`: comma-separated NATS URLs (`nats://host:port`, `tls://…`,
/// `host:port`), none empty.
fn nats_urls(value: &str) -> Result<Vec<String>, AppError> {
    let invalid = |problem: String| AppError::ClusterEnv {
        var: "WSRELAY_NATS_URLS",
        value: value.to_owned(),
        problem,
    };
    let mut urls = Vec::new();
    for url in value.split(',').map(str::trim) {
        if url.is_empty() {
            return Err(invalid("an empty URL in the comma-separated list".into()));
        }
        let rest = match url.split_once("://") {
            Some(("nats" | "tls" | "ws" | "wss", rest)) => rest,
            Some((scheme, _)) => {
                return Err(invalid(format!(
                    "unknown scheme {scheme:?} in {url:?} (nats, tls, ws or wss)"
                )))
            }
            None => url,
        };
        let host_port = rest.rsplit('@').next().unwrap_or(rest);
        let host_port = host_port.split('/').next().unwrap_or(host_port);
        let port_ok = host_port
            .rsplit_once(':')
            .is_none_or(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if host_port.is_empty() || !port_ok {
            return Err(invalid(format!("{url:?} is not host[:port]")));
        }
        urls.push(url.to_owned());
    }
    Ok(urls)
}

/// The rule of `wsrelay-cluster` for node names (one NATS subject token).
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_from_the_environment_are_checked_and_name_the_variable() {
        assert_eq!(
            nats_urls("nats://127.0.0.1:4222, tls://n2:4222,n3").unwrap(),
            ["nats://127.0.0.1:4222", "tls://n2:4222", "n3"]
        );
        for bad in [
            "nats://a:1,,nats://b:2",
            "http://a:1",
            "nats://:1",
            "nats://a:port",
        ] {
            let err = nats_urls(bad).unwrap_err();
            assert!(err.is_config(), "{bad}: {err}");
            let err = err.to_string();
            assert!(err.contains("WSRELAY_NATS_URLS"), "{bad}: {err}");
        }
    }
}
