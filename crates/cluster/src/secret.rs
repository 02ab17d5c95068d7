//! The optional cluster secret: frame authentication when NATS permissions cannot be trusted.
//!
//! NATS does not tell a subscriber who published a message. The subject's last token names
//! the sending node, and per-node NATS users whose publish permission is only
//! `wsr.<cluster>.n.*.<self>` make that token trustworthy (`docs/cluster-design.md §2`,
//! "Subjects"). Where that cannot be guaranteed (one shared user, tooling users that may
//! publish anywhere, JetStream republish), every node can share a secret instead: each frame
//! then carries an HMAC-SHA256 tag over its bytes, including the source and destination node
//! names, and a frame whose tag does not verify is dropped before anything else looks at it.
//! `docs/cluster.md` ("Security") explains when each is enough.

use std::path::Path;

use ring::hmac;

use crate::ClusterError;

/// The fewest bytes a secret may have (128 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// A secret shared by every node of a cluster; see the module docs.
///
/// `Debug` never prints the key.
#[derive(Clone)]
pub struct ClusterSecret {
    key: hmac::Key,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// A secret from raw bytes.
    ///
    /// # Errors
    ///
    /// Fewer than [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<ClusterSecret, ClusterError> {
        ClusterSecret::checked(bytes, "ClusterSecret::new")
    }

    /// Reads a secret from a file; surrounding whitespace (a trailing newline) is ignored.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or holds fewer than [`MIN_SECRET_LEN`] bytes.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, ClusterError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ClusterError::Secret {
            origin: origin.clone(),
            problem: e.to_string(),
        })?;
        ClusterSecret::checked(bytes.trim_ascii(), &origin)
    }

    fn checked(bytes: &[u8], origin: &str) -> Result<ClusterSecret, ClusterError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ClusterError::Secret {
                origin: origin.to_owned(),
                problem: format!(
                    "{} bytes; a secret needs at least {MIN_SECRET_LEN}",
                    bytes.len()
                ),
            });
        }
        Ok(ClusterSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// The key that signs frames of `cluster`: derived from the secret and the cluster name,
    /// so a frame of one cluster never verifies in another that shares the secret.
    pub(crate) fn frame_key(&self, cluster: &str) -> hmac::Key {
        let derived = hmac::sign(&self.key, format!("wsrelay frames {cluster}").as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(ClusterSecret::new(b"too short").is_err());
        let secret = ClusterSecret::new(b"sixteen bytes!!!").unwrap();
        assert_eq!(format!("{secret:?}"), "ClusterSecret(..)");
    }

    #[test]
    fn frame_keys_differ_per_cluster() {
        let secret = ClusterSecret::new(b"sixteen bytes!!!").unwrap();
        let a = hmac::sign(&secret.frame_key("a"), b"frame");
        let b = hmac::sign(&secret.frame_key("b"), b"frame");
        assert_ne!(a.as_ref(), b.as_ref());
        assert!(hmac::verify(&secret.frame_key("a"), b"frame", a.as_ref()).is_ok());
    }
}
