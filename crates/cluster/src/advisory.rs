//! The `$SYS` DISCONNECT advisory: the server's word that a client's connection closed.
//!
//! Nodes name their NATS connection `wsr:<cluster>:<node>:<incarnation>`, so the advisory
//! tells which run of which node went away. It only makes that peer *suspect*: a node that
//! merely failed over to another server fires it too (`docs/cluster-design.md §2`,
//! "Liveness").

use futures_util::StreamExt;

/// The next advisory that names a node: its (node, incarnation). Never returns without a
/// subscription.
///
/// # Cancel safety
///
/// Cancel safe: an advisory read but not returned is one that names no node.
pub(crate) async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<(String, u32)> {
    let Some(s) = sub.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        let msg = match s.next().await {
            Some(msg) => msg,
            None => return std::future::pending().await,
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else {
            continue;
        };
        let name = json
            .pointer("/client/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        if let Some(parsed) = parse_client_name(name) {
            return Some(parsed);
        }
    }
}

/// The NATS client name of a node run.
pub(crate) fn client_name(cluster: &str, node: &str, inc: u32) -> String {
    format!("wsr:{cluster}:{node}:{inc}")
}

/// `wsr:<cluster>:<node>:<inc>` → (node, inc).
fn parse_client_name(name: &str) -> Option<(String, u32)> {
    let mut parts = name.split(':');
    if parts.next()? != "wsr" {
        return None;
    }
    let _cluster = parts.next()?;
    let node = parts.next()?;
    let inc = parts.next()?.parse().ok()?;
    Some((node.to_owned(), inc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_round_trip() {
        assert_eq!(
            parse_client_name(&client_name("wsr", "a", 7)),
            Some(("a".to_owned(), 7))
        );
        assert_eq!(parse_client_name("nats-cli"), None);
        assert_eq!(parse_client_name("wsr:c:a:notanumber"), None);
    }
}
