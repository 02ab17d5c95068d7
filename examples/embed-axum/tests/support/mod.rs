//! Starts the example on a free port and connects to it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsrelay::CancellationToken;

/// A client of the example.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bound on waits that must end: a liveness guard, not a timing threshold.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The example serving on a free loopback port.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) token: CancellationToken,
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub(crate) async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let token = CancellationToken::new();
        let task = tokio::spawn(embed_axum::serve(
            listener,
            embed_axum::app(),
            token.clone(),
        ));
        Server { addr, token, task }
    }

    /// Connects a WebSocket client to `path`, with `origin` if given.
    pub(crate) async fn connect(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .expect("request");
        if let Some(origin) = origin {
            req.headers_mut()
                .insert("origin", origin.parse().expect("origin header"));
        }
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")?;
        Ok(ws)
    }

    /// A plain HTTP/1.1 `GET path`: the status and the body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
            .await
            .expect("answer in time")
            .expect("read");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Cancels the token and waits for `serve` to return.
    pub(crate) async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("serve returns after the token is cancelled")
            .expect("serve task")
            .expect("serve");
    }
}

/// Sends `message` and expects it back.
pub(crate) async fn echo(ws: &mut Ws, message: Message) {
    ws.send(message.clone()).await.expect("send");
    let back = next(ws).await.expect("a frame back");
    assert_eq!(back, message);
}

/// The next data or close frame (pings and pongs skipped).
pub(crate) async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")?
            .ok()?;
        match frame {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return Some(other),
        }
    }
}

/// Closes `ws` with `1000` and waits for the server's answer, so that the connection is over
/// before the test stops the server (otherwise shutdown waits for it up to the drain timeout).
pub(crate) async fn close(mut ws: Ws) {
    ws.close(None).await.expect("close");
    while let Some(frame) = next(&mut ws).await {
        if matches!(frame, Message::Close(_)) {
            break;
        }
    }
}
