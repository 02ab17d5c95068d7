//! Shared test helpers: a real echo server on 127.0.0.1:0 built on `WsConnection`, and a
//! tokio-tungstenite client (an independent implementation).

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsrelay_ws::{Config, Event, Message};

pub mod data;
pub mod raw;

/// A running test server; every event its connections see arrives on `events`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<Event>,
}

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestServer {
    /// Serves echo with `config`. Text commands: `close CODE REASON` closes with that code and
    /// reason, `ping` sends a ping. The connection loop races `next_event` against a 1 ms
    /// ticker, so every test also exercises its cancel safety.
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (tx, config) = (tx.clone(), config.clone());
                let service =
                    service_fn(move |request| handle(request, config.clone(), tx.clone()));
                tokio::spawn(
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        Self { addr, events }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub async fn client(&self) -> Client {
        tokio_tungstenite::connect_async(self.url())
            .await
            .unwrap()
            .0
    }

    /// The next event, within 5 s.
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("server event within 5s")
            .expect("server alive")
    }

    /// Skips events until the connection's `Closed`.
    pub async fn closed(&mut self) -> wsrelay_ws::Closed {
        loop {
            if let Event::Closed(closed) = self.next_event().await {
                return closed;
            }
        }
    }
}

async fn handle(
    mut request: Request<Incoming>,
    config: Config,
    tx: mpsc::UnboundedSender<Event>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (response, pending) = match wsrelay_ws::accept(&mut request, config) {
        Ok(accepted) => accepted,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    tokio::spawn(async move {
        let mut conn = pending.into_connection().await.unwrap();
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        loop {
            let event = tokio::select! {
                _ = ticker.tick() => continue,
                event = conn.next_event() => event,
            };
            let _ = tx.send(event.clone());
            match event {
                Event::Message(message) => match command(&message) {
                    Some(("close", rest)) => {
                        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                        let closed = conn.close(code.parse().unwrap(), reason).await;
                        let _ = tx.send(Event::Closed(closed));
                        return;
                    }
                    Some(("ping", _)) => {
                        conn.ping(Bytes::from_static(b"server-ping")).await.unwrap()
                    }
                    Some(("feed_text", rest)) => {
                        conn.feed_text_now(rest.to_owned()).unwrap();
                        conn.flush().await.unwrap();
                    }
                    _ => {
                        let _ = conn.send(message).await;
                    }
                },
                Event::Pong(_) => {}
                Event::Closed(_) => return,
            }
        }
    });
    Ok(response)
}

fn command(message: &Message) -> Option<(&str, &str)> {
    let text = message.as_text()?;
    match text.split_once(' ') {
        Some((verb @ ("close" | "feed_text"), rest)) => Some((verb, rest)),
        None if text == "ping" => Some(("ping", "")),
        _ => None,
    }
}

/// Reads client messages until a close frame; returns its code and reason.
pub async fn expect_close(client: &mut Client) -> (u16, String) {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message as T;
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("no close frame within 5s"),
            item = client.next() => match item {
                Some(Ok(T::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
                Some(Ok(T::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("client error before close: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}
