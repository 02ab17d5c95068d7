//! The `cluster` entry: connects the node to NATS before anything else starts.
//!
//! Without a `cluster` entry the app runs a single node named `local` and needs no broker.
//! With one, the node is named by `node` (or `WSRELAY_NODE`), connects to `nats_urls` with
//! the `credentials` file (a NATS `.creds` file, an NKey seed or `user:password`;
//! `WSRELAY_CLUSTER_CREDENTIALS` overrides it) and the `tls` files, signs every frame with the
//! secret in `secret_file` (`WSRELAY_CLUSTER_SECRET_FILE` overrides it; neither: no signing),
//! knows at most `max_peers` peers at once (`WSRELAY_CLUSTER_MAX_PEERS` overrides it; default
//! 256), and every PID of another node is routed there (see `wsrelay-cluster` and
//! `docs/cluster.md`). The environment can also set the cluster name (`WSRELAY_CLUSTER_NAME`,
//! default `wsr`), the DISCONNECT advisory subject (`WSRELAY_CLUSTER_ADVISORY`, default
//! `$SYS.ACCOUNT.WSR.DISCONNECT`, empty to disable) and the replicas of the names bucket
//! (`WSRELAY_CLUSTER_REPLICAS`, default 1). A variable wins over the entry's field, so one app
//! directory runs as several nodes.
//!
//! **Zero-config join.** `WSRELAY_NATS_URLS` (comma-separated) makes the app a cluster node
//! even without a `cluster` entry (named by `WSRELAY_NODE`), so one app directory runs
//! unchanged as several nodes; with an entry it replaces the entry's `nats_urls`. A bad value
//! in either variable is a configuration error that names it. Process groups (`pg`) span
//! the cluster's nodes.

use std::path::PathBuf;

use wsrelay_cluster::{Auth, Cluster, ClusterError, ClusterOptions, ClusterSecret, TlsOptions};
use wsrelay_config::{AppConfig, ClusterConfig};
use wsrelay_process::{GroupLimits, Node};

use crate::AppError;

/// Reads a variable of the environment (unset and empty are the same: not set).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as [`Env`] reads it.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The node of the app, with its group `scopes`: clustered if the config has a `cluster`
/// entry or the environment names NATS servers. A cluster node gets its scopes before it
/// joins, so that the other nodes' memberships reach them (`ClusterOptions::group_scopes`).
pub(crate) async fn node(
    config: &AppConfig,
    scopes: &[(String, GroupLimits)],
) -> Result<(Node, Option<Cluster>), AppError> {
    let Some(options) = options(config.cluster.as_ref(), &process_env)? else {
        let node = Node::new();
        for (scope, limits) in scopes {
            node.add_group_scope(scope, *limits);
        }
        return Ok((node, None));
    };
    let options = scopes.iter().fold(options, |options, (scope, limits)| {
        options.with_group_scope(scope, *limits)
    });
    let (node_name, cluster_name) = (options.node.clone(), options.cluster.clone());
    let cluster = Cluster::start(options).await.map_err(cluster_error)?;
    tracing::info!(node = %node_name, cluster = %cluster_name, incarnation = cluster.incarnation(), "joined the cluster");
    Ok((cluster.node().clone(), Some(cluster)))
}

/// What validation adds for the `cluster` entry (`wsrelay check`, `run` and reloads alike):
/// the secret the node would sign with is readable and long enough.
///
/// # Errors
///
/// [`AppError::ClusterEntry`] naming `secret_file`, or [`AppError::ClusterEnv`] naming
/// `WSRELAY_CLUSTER_SECRET_FILE` when that variable names the file.
pub(crate) fn check(config: &AppConfig) -> Result<(), AppError> {
    match &config.cluster {
        Some(entry) => secret(Some(entry), &process_env).map(drop),
        None => Ok(()),
    }
}

/// The settings of the node for the `cluster` entry and the environment `env`; `None`: not
/// a cluster node.
fn options(
    entry: Option<&ClusterConfig>,
    env: Env<'_>,
) -> Result<Option<ClusterOptions>, AppError> {
    let env_urls = env("WSRELAY_NATS_URLS")
        .map(|v| nats_urls(&v))
        .transpose()?;
    let urls = match (env_urls, entry) {
        (Some(urls), _) => urls,
        (None, Some(entry)) => entry.nats_urls.clone(),
        (None, None) => return Ok(None),
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
    // Unlike the others, set and empty differ here: empty disables the advisory.
    match std::env::var("WSRELAY_CLUSTER_ADVISORY") {
        Ok(subject) if subject.is_empty() => {}
        Ok(subject) => options = options.with_disconnect_advisory(subject),
        Err(_) => options = options.with_disconnect_advisory("$SYS.ACCOUNT.WSR.DISCONNECT"),
    }
    if let Some(replicas) = env("WSRELAY_CLUSTER_REPLICAS").and_then(|r| r.parse().ok()) {
        options = options.with_names_replicas(replicas);
    }
    if let Some(secret) = secret(entry, env)? {
        options = options.with_secret(secret);
    }
    let max_peers = match env("WSRELAY_CLUSTER_MAX_PEERS") {
        Some(max) => Some(max_peers(&max)?),
        None => entry.and_then(|e| e.max_peers),
    };
    if let Some(max) = max_peers {
        let forget_after = options.forget_after;
        options = options.with_peer_limits(max, forget_after);
    }
    Ok(Some(options))
}

/// The secret that signs every frame: read from the file `WSRELAY_CLUSTER_SECRET_FILE` names,
/// else from the entry's `secret_file`; `None`: frames are not signed.
fn secret(entry: Option<&ClusterConfig>, env: Env<'_>) -> Result<Option<ClusterSecret>, AppError> {
    if let Some(file) = env("WSRELAY_CLUSTER_SECRET_FILE") {
        return match ClusterSecret::from_file(file.as_ref()) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) => Err(AppError::ClusterEnv {
                var: "WSRELAY_CLUSTER_SECRET_FILE",
                value: file,
                problem: e.to_string(),
            }),
        };
    }
    let Some((entry, file)) = entry.and_then(|e| Some((e, e.secret_file.as_ref()?))) else {
        return Ok(None);
    };
    ClusterSecret::from_file(file)
        .map(Some)
        .map_err(|e| AppError::ClusterEntry {
            entry: entry.id.clone(),
            file: entry.file.clone(),
            field: "secret_file",
            source: Box::new(e),
        })
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
        _ => Err(AppError::ClusterEnv {
            var: "WSRELAY_CLUSTER_MAX_PEERS",
            value: value.to_owned(),
            problem: "expected a positive number of peers".into(),
        }),
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
    use std::collections::HashMap;

    fn entry(secret_file: Option<PathBuf>, max_peers: Option<usize>) -> ClusterConfig {
        ClusterConfig {
            id: "app:cluster".parse().unwrap(),
            file: PathBuf::from("app/app.yaml"),
            node: Some("a".into()),
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            credentials: None,
            tls: None,
            secret_file,
            max_peers,
        }
    }

    /// The settings for `entry` with only `vars` in the environment.
    fn options_with(
        entry: &ClusterConfig,
        vars: &[(&str, &PathBuf)],
    ) -> Result<ClusterOptions, AppError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
            .collect();
        let env = move |name: &str| vars.get(name).cloned();
        Ok(options(Some(entry), &env)?.expect("a cluster node"))
    }

    #[test]
    fn the_secret_and_the_peer_cap_come_from_the_entry_unless_a_variable_names_them() {
        let dir =
            std::env::temp_dir().join(format!("wsrelay-cluster-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.secret");
        std::fs::write(&good, "a secret of more than sixteen bytes\n").unwrap();
        let short = dir.join("short.secret");
        std::fs::write(&short, "too short\n").unwrap();
        let missing = dir.join("missing.secret");
        let peers = PathBuf::from("9");

        let neither = options_with(&entry(None, None), &[]).unwrap();
        assert!(neither.secret.is_none());
        assert_eq!(neither.max_peers, 256, "the runtime's default");

        let yaml = options_with(&entry(Some(good.clone()), Some(7)), &[]).unwrap();
        assert!(yaml.secret.is_some());
        assert_eq!(yaml.max_peers, 7);

        // The variables win, and the entry's file is then not read at all.
        let vars = [
            ("WSRELAY_CLUSTER_SECRET_FILE", &good),
            ("WSRELAY_CLUSTER_MAX_PEERS", &peers),
        ];
        let env = options_with(&entry(Some(missing.clone()), Some(7)), &vars).unwrap();
        assert!(env.secret.is_some());
        assert_eq!(env.max_peers, 9);

        // Errors are configuration errors naming the field, or the variable.
        let config_error =
            |result: Result<ClusterOptions, AppError>, start: &str, problem: &str| {
                let err = result.unwrap_err();
                assert!(err.is_config(), "{err}");
                let text = err.to_string();
                assert!(text.starts_with(start) && text.contains(problem), "{text}");
            };
        for (file, problem) in [(&short, "at least 16"), (&missing, "No such file")] {
            config_error(
                options_with(&entry(Some(file.clone()), None), &[]),
                "app/app.yaml: entry app:cluster: field secret_file: ",
                problem,
            );
            config_error(
                options_with(
                    &entry(Some(good.clone()), None),
                    &[("WSRELAY_CLUSTER_SECRET_FILE", file)],
                ),
                "environment variable WSRELAY_CLUSTER_SECRET_FILE=",
                problem,
            );
        }
        config_error(
            options_with(
                &entry(None, Some(7)),
                &[("WSRELAY_CLUSTER_MAX_PEERS", &PathBuf::from("0"))],
            ),
            "environment variable WSRELAY_CLUSTER_MAX_PEERS=",
            "positive number",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
