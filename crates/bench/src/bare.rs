//! Bare echo handlers, one per candidate library, each as close to the library's own echo
//! example as possible. They are the measuring stick for the decision in
//! `docs/decisions/websocket-library.md`; wsrelay itself uses `wsrelay-ws` (see `ws-echo`).

use std::convert::Infallible;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::server::{text, Body};

/// The candidate libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Library {
    /// fastwebsockets 0.10 (`FragmentCollector`, automatic pong and close).
    Fastwebsockets,
    /// tokio-websockets 0.13 (`Stream` + `Sink`).
    TokioWebsockets,
    /// tokio-tungstenite 0.30 with its default configuration.
    Tungstenite,
}

/// Echo handler for `library`: upgrades the request and echoes text and binary messages.
pub async fn handle(
    library: Library,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if library == Library::Fastwebsockets {
        return Ok(fastwebsockets_upgrade(&mut request));
    }
    let upgrade = match wsrelay_ws::handshake::validate_request(&request) {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioIo::new(upgraded);
        match library {
            Library::TokioWebsockets => tokio_websockets_echo(io).await,
            Library::Tungstenite => tungstenite_echo(io).await,
            Library::Fastwebsockets => {}
        }
    });
    Ok(upgrade.switching_protocols())
}

fn fastwebsockets_upgrade(request: &mut Request<Incoming>) -> Response<Body> {
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(request) {
        Ok(pair) => pair,
        Err(err) => return text(StatusCode::BAD_REQUEST, err.to_string()),
    };
    tokio::spawn(async move {
        let Ok(ws) = upgrade.await else { return };
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            let written = match frame.opcode {
                fastwebsockets::OpCode::Close => break,
                fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {
                    ws.write_frame(frame).await
                }
                _ => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::default())
}

async fn tokio_websockets_echo(io: TokioIo<hyper::upgrade::Upgraded>) {
    let mut ws = tokio_websockets::ServerBuilder::new().serve(io);
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn tungstenite_echo(io: TokioIo<hyper::upgrade::Upgraded>) {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}
