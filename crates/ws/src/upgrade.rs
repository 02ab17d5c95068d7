//! Taking a hyper request over: validate, negotiate, answer `101`, and get a [`WsConnection`]
//! once hyper hands the connection over.
//!
//! The order follows hyper's `examples/upgrades.rs` and axum's `WebSocketUpgrade`: the `101`
//! response must be *returned* to hyper before the upgrade can complete, so the caller spawns a
//! task that awaits [`PendingUpgrade::into_connection`] and returns the response at once.
//!
//! [`handshake`] splits the taking over in two for a caller that decides the subprotocol
//! later (the relay asks its handler first): it validates the request, negotiates
//! permessage-deflate and takes hyper's upgrade handle while the request is still at hand,
//! and [`Handshake::accept`] builds the answer once the protocol is known. [`accept`] does
//! both at once, with no subprotocol.

use http::{Request, Response};

use crate::connection::{Config, Error, WsConnection};
use crate::extension::Deflate;
use crate::handshake::{validate_request, ProtocolNotOffered, Rejection, UpgradeRequest};
use crate::io::UpgradedIo;

/// A validated upgrade whose `101` answer is on its way; see [`accept`].
#[derive(Debug)]
#[must_use = "the connection is only available through `into_connection`"]
pub struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: Config,
    deflate: Option<Deflate>,
}

impl PendingUpgrade {
    /// The permessage-deflate parameters the `101` answer accepted, if any.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_ref()
    }

    /// Waits until hyper has sent the `101` answer and hands over the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Upgrade`] when the connection ended before the upgrade or the server does not
    /// serve upgrades (`serve_connection(..).with_upgrades()`).
    pub async fn into_connection(self) -> Result<WsConnection<UpgradedIo>, Error> {
        let upgraded = self.on_upgrade.await.map_err(Error::Upgrade)?;
        Ok(WsConnection::upgraded_with(
            upgraded,
            &self.config,
            self.deflate,
        ))
    }
}

/// A validated upgrade request whose answer is not built yet; see [`handshake`].
#[derive(Debug)]
#[must_use = "the request is only answered through `accept`"]
pub struct Handshake {
    request: UpgradeRequest,
    pending: PendingUpgrade,
}

impl Handshake {
    /// The request as validated: its key and the subprotocols it offers.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The permessage-deflate parameters the answer will accept, if any (the client offered
    /// it and [`Config::compression`] is set).
    pub fn deflate(&self) -> Option<&Deflate> {
        self.pending.deflate.as_ref()
    }

    /// Builds the `101` answer, accepting `protocol` if given.
    ///
    /// # Errors
    ///
    /// [`ProtocolNotOffered`] when `protocol` is not one the client offered; the handshake
    /// is then dropped (answer the request with an error).
    pub fn accept<R: Default>(
        self,
        protocol: Option<&str>,
    ) -> Result<(Response<R>, PendingUpgrade), ProtocolNotOffered> {
        let response = self
            .request
            .switching_protocols_with(protocol, self.pending.deflate.as_ref())?;
        Ok((response, self.pending))
    }
}

/// Validates `request` as a WebSocket upgrade, negotiates permessage-deflate (when
/// [`Config::compression`] is set) and takes the request's upgrade handle.
///
/// # Errors
///
/// The [`Rejection`] to answer with ([`Rejection::into_response`]) when the request is not a
/// valid upgrade.
pub fn handshake<B>(request: &mut Request<B>, config: Config) -> Result<Handshake, Rejection> {
    let upgrade = validate_request(request)?;
    let deflate = config
        .compression
        .as_ref()
        .and_then(|compression| compression.negotiate(request.headers()));
    let on_upgrade = hyper::upgrade::on(request);
    Ok(Handshake {
        request: upgrade,
        pending: PendingUpgrade {
            on_upgrade,
            config,
            deflate,
        },
    })
}

/// Validates `request` as a WebSocket upgrade and takes its upgrade handle, accepting no
/// subprotocol ([`handshake`] then [`Handshake::accept`]).
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
    let handshake = handshake(request, config)?;
    let response = handshake.request.answer(None, handshake.deflate());
    Ok((response, handshake.pending))
}
