//! A relay on a real server on 127.0.0.1:0, a handler whose `X-WS-Relay` answer the test sets,
//! and a real WebSocket client (tokio-tungstenite).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as T;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsrelay_http::{
    handler_fn, response, Gateway, Handler, MiddlewareRegistry, Options, Router, RunningGateway,
    Server, ServerConfig,
};
use wsrelay_process::{
    Context, ExitGuard, HighWater, HostConfig, Message, Node, SpawnOptions, Value,
};
use wsrelay_relay::Relay;

pub const HOST: &str = "app:processes";

/// A raw upgrade request to the relay route, without its final empty line.
pub const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A whole plain GET (no upgrade) of the relay route.
pub const PLAIN: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
pub const SERVER: &str = "app:gateway";

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the test's handler answers.
#[derive(Clone, Default)]
pub struct Answer {
    pub relay_header: Option<String>,
    pub body: Option<String>,
    /// How long the handler takes before it answers.
    pub delay: Option<Duration>,
}

pub struct Harness {
    pub node: Node,
    pub relay: Relay,
    pub addr: SocketAddr,
    pub answer: Arc<Mutex<Answer>>,
    pub handler_runs: Arc<AtomicUsize>,
    gateway: Option<RunningGateway>,
}

pub struct HarnessBuilder {
    options: Vec<(String, String)>,
    high_water: HighWater,
    handler: Option<MakeHandler>,
    server: ServerConfig,
    tls: Option<wsrelay_http::TlsFiles>,
}

/// Builds the endpoint's handler from the harness's node (instead of the [`Answer`] one).
pub type MakeHandler = Box<dyn FnOnce(&Node) -> Arc<dyn Handler>>;

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            options: Vec::new(),
            high_water: HighWater::default(),
            handler: None,
            server: ServerConfig::new("127.0.0.1:0".parse().unwrap()),
            tls: None,
        }
    }

    pub async fn start() -> Harness {
        Harness::builder().start().await
    }

    /// A detached process the test acts as (a target, a monitor).
    pub fn probe(&self) -> (Context, ExitGuard) {
        self.node
            .attach(HOST, SpawnOptions::new())
            .unwrap()
            .detach()
    }

    /// Makes the handler relay to `target` with extra JSON fields (`, "metadata": {...}`).
    pub fn relay_to(&self, target: &str, extra: &str) {
        self.answer.lock().unwrap().relay_header =
            Some(format!(r#"{{"target_pid": "{target}"{extra}}}"#));
    }

    /// The preamble most tests share: a probe as the relay's target, a client connected
    /// through the relay, and the connection's PID from the `ws.join` the target got. The
    /// guard must be kept: dropping it ends the target.
    pub async fn joined_client(&self) -> (Context, ExitGuard, Client, wsrelay_process::Pid) {
        let (target, guard) = self.probe();
        self.relay_to(target.pid().as_str(), "");
        let client = self.connect().await;
        let client_pid = joined(&target).await;
        (target, guard, client, client_pid)
    }

    pub fn answer_with(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn connect(&self) -> Client {
        let (client, response) = tokio_tungstenite::connect_async(self.url())
            .await
            .expect("upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        client
    }

    pub async fn connect_with_origin(
        &self,
        origin: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = self.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(c, _)| c)
    }

    /// Sends a raw HTTP/1.1 request and returns the status and body (read up to its
    /// `Content-Length`, so a kept-alive connection does not make the test wait).
    pub async fn raw(&self, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        return;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A raw TCP client that has completed the upgrade (the `101` is read): for tests that do
    /// what no WebSocket client library does (never answer pings, keep TCP open after the
    /// close handshake).
    pub async fn raw_upgraded(&self) -> tokio::net::TcpStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(format!("{UPGRADE}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
        stream
    }

    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            let _ = g.shutdown().await;
        }
    }
}

impl HarnessBuilder {
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    /// Turns off per-IP upgrade rate limiting (where the relay has it): every test client
    /// connects from 127.0.0.1.
    pub fn no_upgrade_rate_limit(self) -> Self {
        if wsrelay_relay::options::OPTION_NAMES.contains(&"wsrelay.upgrade_rate") {
            self.option("wsrelay.upgrade_rate", "off")
        } else {
            self
        }
    }

    /// A per-IP budget of two upgrades (rate 1/m, burst 2): within a test, the third upgrade
    /// or plain request from one address is refused.
    pub fn two_upgrades_per_ip(self) -> Self {
        self.option("wsrelay.upgrade_rate", "1/m")
            .option("wsrelay.upgrade_burst", "2")
    }

    /// Serves the endpoint with the handler `make` builds; runs are still counted.
    pub fn handler(mut self, make: impl FnOnce(&Node) -> Arc<dyn Handler> + 'static) -> Self {
        self.handler = Some(Box::new(make));
        self
    }

    /// Changes the server's config (h2c, trusted proxies, ...).
    pub fn server(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.server);
        self
    }

    /// Serves TLS with `files`.
    pub fn tls(mut self, files: wsrelay_http::TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    pub fn high_water(mut self, messages: usize) -> Self {
        self.high_water = HighWater {
            messages,
            bytes: usize::MAX,
        };
        self
    }

    pub async fn start(self) -> Harness {
        let node = Node::new();
        node.add_host(
            HOST,
            HostConfig {
                high_water: self.high_water,
                ..HostConfig::default()
            },
        );
        node.add_host(SERVER, HostConfig::default());
        let relay = Relay::new(node.clone());
        let mut registry = MiddlewareRegistry::with_builtins();
        relay.register(&mut registry);
        let options: Options = self.options.into_iter().collect();
        let answer = Arc::new(Mutex::new(Answer::default()));
        let handler_runs = Arc::new(AtomicUsize::new(0));
        let inner = match self.handler {
            Some(make) => make(&node),
            None => answer_handler(answer.clone()),
        };
        let handler = {
            let runs = handler_runs.clone();
            handler_fn(move |req: wsrelay_http::Request| {
                runs.fetch_add(1, Ordering::SeqCst);
                inner.call(req)
            })
        };
        let mut router = Router::new("/ws").unwrap();
        router.post_middleware(registry.build("websocket_relay", &options).unwrap());
        // POST too, so that the relay (not the router) answers upgrades with other methods.
        let handler = Arc::new(handler);
        for method in [http::Method::GET, http::Method::POST] {
            router.route(method, "/", handler.clone()).unwrap();
        }
        let mut server = Server::new(SERVER, self.server);
        if let Some(files) = self.tls {
            server.tls(files).unwrap();
        }
        server.add_router(router).unwrap();
        // A short drain for `stop`: clients a test still holds are not read, so they never
        // answer the close, and the default 10 s would only wait for them.
        let mut gateway = Gateway::new().drain_timeout(Duration::from_millis(500));
        gateway.add_server(server).unwrap();
        let gateway = gateway.bind().await.unwrap();
        let addr = gateway.local_addr(SERVER).unwrap();
        Harness {
            node,
            relay,
            addr,
            answer,
            handler_runs,
            gateway: Some(gateway),
        }
    }
}

/// The default handler: answers as the test's [`Answer`] says.
fn answer_handler(answer: Arc<Mutex<Answer>>) -> Arc<dyn Handler> {
    Arc::new(handler_fn(move |req: wsrelay_http::Request| {
        let mut answer = answer.lock().unwrap().clone();
        // `/ws?target=NAME` relays to NAME, so concurrent clients can pick targets.
        if let Some(name) = target_from_query(req.uri()) {
            answer.relay_header = Some(format!(r#"{{"target_pid": "{name}"}}"#));
        }
        async move {
            if let Some(delay) = answer.delay {
                tokio::time::sleep(delay).await;
            }
            let mut res = match answer.body {
                Some(body) => response::text(StatusCode::OK, body),
                None => response::empty(StatusCode::OK),
            };
            if let Some(header) = answer.relay_header {
                res.headers_mut()
                    .insert("x-ws-relay", header.parse().unwrap());
            }
            res
        }
    }))
}

/// The `target` query parameter of a request, if any (a registered name: no escaping).
fn target_from_query(uri: &http::Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("target="))
        .map(str::to_owned)
}

/// The next inbox message of a probe as (topic, plain payload), within 5 s.
pub async fn recv(ctx: &Context) -> (String, Value) {
    let msg = tokio::time::timeout(Duration::from_secs(5), ctx.recv())
        .await
        .expect("a message within 5s");
    (msg.topic().to_owned(), msg.payload().clone().into_plain())
}

/// The number a client sent as the text of a data message (its `data`), as the tests that
/// check order send them.
pub fn data_number(payload: &Value) -> u32 {
    payload
        .get("data")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("a number as text data: {payload:?}"))
}

/// The next event of a probe, within 5 s.
pub async fn event(ctx: &Context) -> wsrelay_process::Event {
    tokio::time::timeout(Duration::from_secs(5), ctx.next_event())
        .await
        .expect("an event within 5s")
}

/// Receives `ws.join` and returns the client PID.
pub async fn joined(target: &Context) -> wsrelay_process::Pid {
    let (topic, payload) = recv(target).await;
    assert_eq!(
        topic, "ws.join",
        "first message must be ws.join, got {payload:?}"
    );
    payload
        .get("client_pid")
        .and_then(Value::as_str)
        .unwrap()
        .parse()
        .unwrap()
}

/// The payload of the next `ws.leave` the target gets, skipping other messages.
pub async fn leave_of(target: &Context) -> Value {
    loop {
        let (topic, payload) = recv(target).await;
        if topic == "ws.leave" {
            return payload;
        }
    }
}

/// The next frame the client gets, skipping pings.
pub async fn next_frame(client: &mut Client) -> T {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a frame within 5s")
            .expect("stream open")
            .expect("no error");
        if !matches!(frame, T::Ping(_) | T::Pong(_)) {
            return frame;
        }
    }
}

/// The close frame's code and reason. The client is then driven to the end of the close
/// handshake in the background, as a real client would.
pub async fn close_of(mut client: Client) -> (u16, String) {
    let closed = match next_frame(&mut client).await {
        T::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    };
    drain(client);
    closed
}

/// Keeps reading the client until the server ends the connection.
pub fn drain(mut client: Client) {
    tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} });
}

/// Starts the close handshake from the client and completes it in the background.
pub async fn client_close(
    mut client: Client,
    frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) {
    client.close(frame).await.unwrap();
    drain(client);
}

pub async fn send_text(client: &mut Client, text: &str) {
    client.send(T::text(text)).await.unwrap();
}

pub fn send(ctx: &Context, to: &wsrelay_process::Pid, topic: &str, payload: impl Into<Value>) {
    ctx.send_message(to, Message::new(Some(ctx.pid().clone()), topic, payload))
        .unwrap();
}

// ===== chaos and backpressure helpers =====

impl Harness {
    /// Connects to `ws://.../ws?target=NAME`: the handler relays to the registered name.
    pub async fn connect_to(
        &self,
        name: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}?target={name}", self.url());
        tokio_tungstenite::connect_async(url).await.map(|(c, _)| c)
    }
}

/// Resident set size of this test process, in KiB (Linux `/proc/self/status`; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Polls `check` every 10 ms until it returns `true` or `within` has passed; returns whether
/// it did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes the first bytes of a masked text frame that announces more payload than follows,
/// then drops the TCP connection: a client that vanished mid-frame.
pub async fn vanish_mid_frame(mut client: Client, header_only: bool) {
    use tokio::io::AsyncWriteExt;
    if let MaybeTlsStream::Plain(tcp) = client.get_mut() {
        let partial: &[u8] = if header_only {
            &[0x81]
        } else {
            // FIN + text, masked, 100 bytes announced; mask key; 10 bytes of payload.
            &[
                0x81,
                0x80 | 100,
                1,
                2,
                3,
                4,
                b'a',
                b'b',
                b'c',
                b'd',
                b'e',
                b'f',
                b'g',
                b'h',
                b'i',
                b'j',
            ]
        };
        let _ = tcp.write_all(partial).await;
        let _ = tcp.flush().await;
    }
    drop(client);
}

/// Reads the client until the server ends the connection (answering its close frame), for at
/// most `within`; returns the close code the server sent, if any.
pub async fn read_to_end(client: &mut Client, within: Duration) -> Option<u16> {
    let mut code = None;
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(frame)) = client.next().await {
            if let T::Close(Some(frame)) = frame {
                code = Some(u16::from(frame.code));
            }
        }
    })
    .await;
    code
}
