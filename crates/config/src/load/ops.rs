//! The `wsrelay.ops` kind: the operations listener (metrics, health, admin).

use super::addr;
use super::fields::Entry;
use crate::error::ConfigErrorKind;
use crate::model::{AdminConfig, OpsConfig};

pub(super) fn ops(entry: &mut Entry<'_>) -> Option<OpsConfig> {
    let addr = addr::required(entry, "addr");
    let enabled = entry.bool_or("admin.enabled", false);
    let token_env = entry.opt_str("admin.token_env");
    let token = entry.opt_str("admin.token");
    if let Some(name) = &token_env {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            entry.error(
                "admin.token_env",
                ConfigErrorKind::InvalidValue {
                    value: name.clone(),
                    reason: "must be an environment variable name (letters, digits, _)".into(),
                },
            );
        }
    }
    if let Some(token) = &token {
        let len = token.trim().len();
        if len < AdminConfig::MIN_TOKEN_BYTES {
            let min = AdminConfig::MIN_TOKEN_BYTES;
            entry.error("admin.token", ConfigErrorKind::ShortToken { len, min });
        }
    }
    if enabled && token_env.is_none() && token.is_none() {
        // An admin endpoint without a token would be open to anyone who reaches the port.
        entry.error("admin.token_env", ConfigErrorKind::MissingField);
    }
    if entry.failed() {
        return None;
    }
    Some(OpsConfig {
        id: entry.id().clone(),
        file: entry.file(),
        addr: addr?,
        admin: enabled.then_some(AdminConfig { token_env, token }),
    })
}
