//! Connecting a node: the NATS connection (options, credentials, TLS, event callback), the
//! subscriptions, the names bucket, the shared state, the transport and the control loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use wsrelay_process::Node;

use crate::frame::Codec;
use crate::names::Names;
use crate::peers::PeerTable;
use crate::routing::NatsTransport;
use crate::shared::{Ctl, RuntimeGuard, Shared};
use crate::stats::ClusterStats;
use crate::throttle::Throttle;
use crate::{advisory, control, writer, Auth, ClusterError, ClusterOptions};

/// Connects node `options.node` on the cluster runtime `rt` (this future runs there).
pub(crate) async fn connect(
    options: ClusterOptions,
    rt: tokio::runtime::Handle,
) -> Result<Arc<Shared>, ClusterError> {
    let inc = incarnation();
    let urls = options.urls.join(",");
    let connect_error = |problem: String| ClusterError::Connect {
        urls: urls.clone(),
        problem,
    };
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(ClusterStats::default());
    let disconnected = Arc::new(Mutex::new(None));
    let opts = nats_options(&options, inc, &ctl_tx, &stats, &disconnected);
    let opts = with_credentials(opts, &options).await?;
    let addrs: Vec<async_nats::ServerAddr> = options
        .urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, std::io::Error>>()
        .map_err(|e| connect_error(e.to_string()))?;
    let client = opts
        .connect(addrs)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    stats.set_connected(true);
    let max_envelope = (client.server_info().max_payload)
        .saturating_sub(1024)
        .max(1024);
    let sub = client
        .subscribe(format!("wsr.{}.n.{}.>", options.cluster, options.node))
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let advisories = match &options.disconnect_advisory {
        Some(subject) => client.subscribe(subject.clone()).await.ok(),
        None => None,
    };
    let hellos = if options.groups {
        Some(
            client
                .subscribe(format!("wsr.{}.all.>", options.cluster))
                .await
                .map_err(|e| connect_error(e.to_string()))?,
        )
    } else {
        None
    };
    let names = match &options.names_bucket {
        Some(bucket) => Some(
            Names::open(
                client.clone(),
                bucket,
                options.names_replicas,
                &options.node,
                inc,
            )
            .await
            .map_err(ClusterError::Names)?,
        ),
        None => None,
    };
    let node = Node::named(&options.node, inc);
    // Before anything can reach the node: see `ClusterOptions::group_scopes`.
    for (scope, limits) in &options.group_scopes {
        node.add_group_scope(scope, *limits);
    }
    let key = options
        .secret
        .as_ref()
        .map(|s| s.frame_key(&options.cluster));
    let shared = Arc::new(Shared {
        node: node.clone(),
        inbound: node.inbound(),
        me: options.node.clone(),
        inc,
        client,
        codec: Codec::new(&options.node, inc, key),
        peers: PeerTable::new(options.max_peers, stats.clone()),
        opts: options,
        rt,
        stats,
        disconnected_since: disconnected,
        ctl: ctl_tx,
        names,
        max_envelope,
        start_writer: writer::start,
        refused_frames: Throttle::new(),
        group_cap: Throttle::new(),
        runtime: RuntimeGuard(Mutex::new(None)),
    });
    node.set_transport(Arc::new(NatsTransport {
        shared: shared.clone(),
    }));
    tokio::spawn(control::run(
        shared.clone(),
        sub,
        advisories,
        hellos,
        ctl_rx,
    ));
    tracing::info!(node = %shared.me, inc, signed = shared.opts.secret.is_some(), "cluster node connected");
    if shared.opts.secret.is_none() {
        // NATS permissions alone do not pin a frame's source once nodes may use JetStream
        // (cluster names): docs/cluster.md, "Security".
        tracing::warn!(
            "no cluster secret: frames are unsigned, and a NATS user that can publish on this \
             cluster's subjects or use its JetStream API can speak for any node"
        );
    }
    Ok(shared)
}

/// A random non-zero incarnation (0 is the single-node PID space).
fn incarnation() -> u32 {
    loop {
        let r = crate::random::random_u64() as u32;
        if r != 0 {
            return r;
        }
    }
}

/// Connection options: name (for the DISCONNECT advisory), private inbox, endless
/// reconnects, and an event callback that tracks the connection for the transport.
fn nats_options(
    options: &ClusterOptions,
    inc: u32,
    ctl: &mpsc::UnboundedSender<Ctl>,
    stats: &Arc<ClusterStats>,
    disconnected: &Arc<Mutex<Option<Instant>>>,
) -> async_nats::ConnectOptions {
    let (ctl, stats, disconnected) = (ctl.clone(), stats.clone(), disconnected.clone());
    async_nats::ConnectOptions::new()
        .name(advisory::client_name(&options.cluster, &options.node, inc))
        .custom_inbox_prefix(format!("_INBOX_{}", options.node))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .subscription_capacity(1 << 17)
        .reconnect_delay_callback(|attempts| Duration::from_millis((50 * attempts as u64).min(500)))
        .event_callback(move |event| {
            let (ctl, stats, disconnected) = (ctl.clone(), stats.clone(), disconnected.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        stats.set_connected(true);
                        *disconnected.lock() = None;
                        let _ = ctl.send(Ctl::Reconnected);
                    }
                    async_nats::Event::Disconnected => {
                        stats.set_connected(false);
                        disconnected.lock().get_or_insert_with(Instant::now);
                    }
                    async_nats::Event::ServerError(e) => {
                        stats.count_server_error();
                        tracing::warn!(error = %e, "NATS server error");
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        })
}

/// Adds credentials and TLS.
async fn with_credentials(
    mut opts: async_nats::ConnectOptions,
    options: &ClusterOptions,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    opts = match &options.auth {
        Auth::None => opts,
        Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        Auth::Token(t) => opts.token(t.clone()),
        Auth::NkeySeed(s) => opts.nkey(s.clone()),
        Auth::CredsFile(f) => {
            opts.credentials_file(f)
                .await
                .map_err(|e| ClusterError::Credentials {
                    file: f.clone(),
                    problem: e.to_string(),
                })?
        }
    };
    if let Some(tls) = &options.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(opts)
}
