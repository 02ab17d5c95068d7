//! The seed document's snippets (websocket-relay.pt.txt) as the seed example's app runs them
//! (examples/seed: its handler and target files), and verbatim where the app does not hold
//! them as written, against Rust processes standing in for WebSocket connections
//! (docs/spec.md §6, §7).

use crate::support::*;
use bytes::Bytes;
use wsrelay_lua::{FunctionSpec, HttpRequest};
use wsrelay_process::{Context, Map, Pid, Value};

/// "Configuração do Handler", verbatim, as the seed example's app runs it (the file adds
/// only the `return` the loader needs).
const SEED_HANDLER: &str = include_str!("../../../examples/seed/connect.lua");

/// "Recebendo Mensagens" as the seed example's app runs it: the seed's receive loop, with
/// the `handle_message` and `cleanup` the seed leaves to the reader, and an end when the
/// connection's client leaves.
const SEED_TARGET: &str = include_str!("../../../examples/seed/handler.lua");

/// "Enviando para o Cliente", verbatim.
const SEED_SEND: &str = r#"-- Envia mensagem de texto
process.send(client_pid, "ws.send", {
    type = "text",
    data = json.encode({event = "update", value = 42})
})

-- Envia binário
process.send(client_pid, "ws.send", {
    type = "binary",
    data = binary_content
})

-- Fecha conexão
process.send(client_pid, "ws.close", {
    code = 1000,
    reason = "Sessão encerrada"
})
"#;

const RETURN: &str = "\nreturn { handler = handler }\n";

fn join(client: &Pid) -> Value {
    Map::new()
        .with("client_pid", client.as_str())
        .with("metadata", Map::new().with("user_id", "7"))
        .into()
}

fn frame(client: &Pid, data: &str) -> Value {
    Map::new()
        .with("client_pid", client.as_str())
        .with("type", "text")
        .with("data", data)
        .with("metadata", Map::new())
        .into()
}

fn leave(client: &Pid) -> Value {
    Map::new()
        .with("client_pid", client.as_str())
        .with("reason", "client_closed")
        .with("metadata", Map::new())
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_handler_spawns_target_and_sets_relay_header() {
    let (node, engine) = setup();
    // The target entry the handler spawns.
    engine
        .register_process(
            "app.ws:handler",
            wsrelay_lua::ProcessSpec {
                source: SEED_TARGET.into(),
                method: "handler".into(),
                modules: vec!["json".into()],
            },
        )
        .unwrap();
    let function = engine
        .function(
            "app:ws_handler",
            FunctionSpec {
                source: SEED_HANDLER.into(),
                method: "handler".into(),
                modules: vec!["http".into(), "json".into()],
            },
        )
        .unwrap();
    let response = function
        .call_http(HttpRequest {
            method: "GET".into(),
            path: "/ws/connect".into(),
            query: "user_id=u%2042&x=1".into(),
            ..HttpRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(!response.body_written);
    let header = response.header("X-WS-Relay").expect("relay header");
    let relay: serde_json::Value = serde_json::from_str(header).unwrap();
    assert_eq!(relay["message_topic"], "ws.message");
    assert_eq!(relay["heartbeat_interval"], "30s");
    assert_eq!(relay["metadata"]["user_id"], "u 42");
    let target: Pid = relay["target_pid"].as_str().unwrap().parse().unwrap();
    assert_eq!(target.host(), HOST);
    assert!(node.is_alive(&target), "the spawned target runs");
}

/// The seed app's receive loop: a join, a message it answers ("Enviando para o Cliente"),
/// then the leave that ends the connection's process.
#[tokio::test(flavor = "multi_thread")]
async fn seed_receive_loop_handles_join_message_leave() {
    let (node, engine) = setup();
    let entry = register(&engine, SEED_TARGET, "handler", &["json"]);
    let (conn, _g) = rust_process(&node);
    let target = spawn_monitored(&conn, &entry, vec![]);

    conn.send(&target, "ws.join", join(conn.pid())).unwrap();
    conn.send(
        &target,
        "ws.message",
        frame(conn.pid(), r#"{"action":"echo","n":[1,2]}"#),
    )
    .unwrap();
    let answer = recv(&conn).await;
    assert_eq!(answer.topic(), "ws.send");
    assert_eq!(answer.from(), Some(&target));
    assert_eq!(
        answer.payload().get("data"),
        Some(&s(r#"{"event":"update","value":42}"#))
    );

    // Its only client gone, the process is done.
    conn.send(&target, "ws.leave", leave(conn.pid())).unwrap();
    assert!(exit_of(&conn, &target).await.error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_send_text_binary_and_close() {
    let (node, engine) = setup();
    let source = format!(
        "local json = require(\"json\")\nlocal function handler()\n\
         local msg = process.inbox():receive()\n\
         client_pid = msg:payload():data().client_pid\n\
         binary_content = \"\\0\\1\\2\\255\"\n{SEED_SEND}\nend{RETURN}"
    );
    let entry = register(&engine, &source, "handler", &["json"]);
    let (conn, _g) = rust_process(&node);
    let target = spawn_monitored(&conn, &entry, vec![]);
    conn.send(&target, "ws.join", join(conn.pid())).unwrap();

    let text = recv(&conn).await;
    assert_eq!(text.topic(), "ws.send");
    assert_eq!(text.from(), Some(&target));
    assert_eq!(text.payload().get("type"), Some(&s("text")));
    assert_eq!(
        text.payload().get("data"),
        Some(&s(r#"{"event":"update","value":42}"#))
    );

    let binary = recv(&conn).await;
    assert_eq!(binary.topic(), "ws.send");
    assert_eq!(binary.payload().get("type"), Some(&s("binary")));
    assert_eq!(
        binary.payload().get("data"),
        Some(&Value::Bytes(Bytes::from_static(&[0, 1, 2, 255])))
    );

    let close = recv(&conn).await;
    assert_eq!(close.topic(), "ws.close");
    assert_eq!(close.payload().get("code"), Some(&Value::Int(1000)));
    assert_eq!(close.payload().get("reason"), Some(&s("Sessão encerrada")));
    assert!(exit_of(&conn, &target).await.error.is_none());
}

/// "Broadcast" as the seed app runs it: connections moved to the shared `hub` process of
/// handler.lua, and a client's `broadcast` action.
#[tokio::test(flavor = "multi_thread")]
async fn seed_broadcast_reaches_every_joined_client() {
    let (node, engine) = setup();
    let entry = register(&engine, SEED_TARGET, "hub", &["json"]);
    let (driver, _g) = rust_process(&node);
    let room = spawn_monitored(&driver, &entry, vec![]);
    let clients: Vec<(Context, _)> = (0..3).map(|_| rust_process(&node)).collect();
    for (c, _) in &clients {
        c.send(&room, "ws.join", join(c.pid())).unwrap();
        let ack = recv(c).await;
        assert_eq!(ack.payload().get("data"), Some(&s(r#"{"event":"hub"}"#)));
    }
    let speaker = &clients[0].0;
    let say = |text: &str| {
        let action = serde_json::json!({"action": "broadcast", "text": text}).to_string();
        frame(speaker.pid(), &action)
    };
    speaker.send(&room, "ws.message", say("hi all")).unwrap();
    let expected = serde_json::json!({"event": "broadcast", "text": "hi all"});
    for (c, _) in &clients {
        let m = recv(c).await;
        assert_eq!(m.topic(), "ws.send");
        assert_eq!(m.payload().get("type"), Some(&s("text")));
        let data: serde_json::Value =
            serde_json::from_str(m.payload().get("data").unwrap().as_str().unwrap()).unwrap();
        assert_eq!(data, expected);
    }
    // One leaves: the next broadcast reaches the two others only.
    let leaver = &clients[2].0;
    leaver.send(&room, "ws.leave", leave(leaver.pid())).unwrap();
    speaker.send(&room, "ws.message", say("again")).unwrap();
    for (c, _) in &clients[..2] {
        assert_eq!(recv(c).await.topic(), "ws.send");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        leaver.try_recv().is_none(),
        "a client that left gets nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_monitor_send_and_transfer_to_a_connection() {
    let (node, engine) = setup();
    // "Semântica de Processo" and "Transferência de Conexão", verbatim inside a function.
    let source = r#"local function handler(websocket_pid, new_process_pid)
-- Monitora uma conexão WebSocket de outro processo
process.monitor(websocket_pid)

-- Envia mensagem para cliente WebSocket de qualquer processo
process.send(websocket_pid, "ws.send", {type = "text", data = "hello"})
process.send(websocket_pid, "ws.control", {
    target_pid = new_process_pid,
    message_topic = "ws.message"
})
local event = process.events():receive()
return event.kind .. " " .. event.from .. " " .. tostring(event.result.value)
end
return { handler = handler }
"#;
    let entry = register(&engine, source, "handler", &[]);
    let (conn, conn_guard) = rust_process(&node);
    let (other, _g) = rust_process(&node);
    let (driver, _g2) = rust_process(&node);
    let pid = spawn_monitored(
        &driver,
        &entry,
        vec![s(conn.pid().as_str()), s(other.pid().as_str())],
    );
    let hello = recv(&conn).await;
    assert_eq!(hello.topic(), "ws.send");
    assert_eq!(hello.payload().get("data"), Some(&s("hello")));
    let control = recv(&conn).await;
    assert_eq!(control.topic(), "ws.control");
    assert_eq!(
        control.payload().get("target_pid"),
        Some(&s(other.pid().as_str()))
    );
    // The connection ends: the monitor sees its EXIT with the reason as value (docs/spec.md §8).
    conn_guard.exit(Value::from("client_closed"));
    let exit = exit_of(&driver, &pid).await;
    assert_eq!(
        exit.value,
        s(&format!("pid.exit {} client_closed", conn.pid()))
    );
}
