//! Taking a hyper request over: validate, answer `101`, and get a [`WsConnection`] once hyper
//! hands the connection over.
//!
//! The order follows hyper's `examples/upgrades.rs` and axum's `WebSocketUpgrade`: the `101`
//! response must be *returned* to hyper before the upgrade can complete, so the caller spawns a
//! task that awaits [`PendingUpgrade::into_connection`] and returns the response at once.

use http::{Request, Response};

use crate::connection::{Config, Error, UpgradedIo, WsConnection};
use crate::handshake::{validate_request, Rejection};

/// A validated upgrade whose `101` answer is on its way; see [`accept`].
#[derive(Debug)]
#[must_use = "the connection is only available through `into_connection`"]
pub struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: Config,
}

impl PendingUpgrade {
    /// Waits until hyper has sent the `101` answer and hands over the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Upgrade`] when the connection ended before the upgrade or the server does not
    /// serve upgrades (`serve_connection(..).with_upgrades()`).
    pub async fn into_connection(self) -> Result<WsConnection<UpgradedIo>, Error> {
        let upgraded = self.on_upgrade.await.map_err(Error::Upgrade)?;
        Ok(WsConnection::from_upgraded(upgraded, &self.config))
    }
}

/// Validates `request` as a WebSocket upgrade and takes its upgrade handle.
///
/// Returns the `101 Switching Protocols` response (to return to hyper) and the
/// [`PendingUpgrade`] (to await in a spawned task).
///
/// # Errors
///
/// The [`Rejection`] to answer with ([`Rejection::into_response`]) when the request is not a
/// valid upgrade.
pub fn accept<B, R: Default>(
    request: &mut Request<B>,
    config: Config,
) -> Result<(Response<R>, PendingUpgrade), Rejection> {
    let upgrade = validate_request(request)?;
    let on_upgrade = hyper::upgrade::on(request);
    Ok((
        upgrade.switching_protocols(),
        PendingUpgrade { on_upgrade, config },
    ))
}
