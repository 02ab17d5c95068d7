//! `process.listen` / `process.unlisten`: topic messages go to a channel instead of the
//! inbox (payloads, or message objects with `message = true`), in `channel.select` with other
//! channels, back to the inbox after `unlisten`, never dropped when the channel is full, and
//! the errors.

use crate::support::*;
use wsrelay_process::Value;

/// A process running a test's body, and the probe it talks to.
struct Listener {
    probe: wsrelay_process::Context,
    _guard: wsrelay_process::ExitGuard,
    pid: wsrelay_process::Pid,
    /// Kept so that the process's Lua state lives as long as the test.
    _engine: wsrelay_lua::LuaEngine,
}

impl Listener {
    /// Runs `body` in a process on an engine of its own, with the probe's PID in `probe` and
    /// the channel of the `chat` topic (every test listens on it) in `chat`; the body calls
    /// `ready()` once it listens, and this returns then.
    async fn start(body: &str) -> Self {
        let (_node, engine) = setup();
        let source = format!(
            "local function main(...)\n\
             local probe = ...\n\
             local function ready() process.send(probe, \"ready\", true) end\n\
             local chat = assert(process.listen(\"chat\"))\n\
             {body}\nend\nreturn {{ main = main }}"
        );
        let entry = register(&engine, &source, "main", &["time"]);
        let (probe, guard) = rust_process(engine.node());
        let pid = spawn_monitored(&probe, &entry, vec![s(probe.pid().as_str())]);
        let ready = recv(&probe).await;
        assert_eq!(ready.topic(), "ready");
        Listener {
            probe,
            _guard: guard,
            pid,
            _engine: engine,
        }
    }

    /// Sends `payload` under `topic` from the probe to the process.
    fn send(&self, topic: &str, payload: impl Into<Value>) {
        self.probe.send(&self.pid, topic, payload).unwrap();
    }

    /// The items of the array the process returns; fails the test if it returns anything
    /// else or ends with an error.
    async fn items(self) -> Vec<Value> {
        let exit = exit_of(&self.probe, &self.pid).await;
        assert!(exit.error.is_none(), "{exit:?}");
        match exit.value {
            Value::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listened_topics_go_to_the_channel_and_others_to_the_inbox() {
    let listener = Listener::start(
        r#"
        local whole = assert(process.listen("cmd", { message = true }))
        ready()
        local a = chat:receive()
        local b = chat:receive()
        local m = whole:receive()
        local other = process.inbox():receive()
        return { a.text, b, m:topic(), m:from() == probe, m:payload():data(), other:topic(),
                 other:payload():data() }
        "#,
    )
    .await;
    // The inbox message goes first: it must not be taken for the channel.
    listener.send("other", "for the inbox");
    let mut map = wsrelay_process::Map::new();
    map.insert("text", "hello");
    listener.send("chat", Value::Map(map));
    listener.send("chat", 2);
    listener.send("cmd", "stop");
    assert_eq!(
        listener.items().await,
        [
            s("hello"),
            2.into(),
            s("cmd"),
            true.into(),
            s("stop"),
            s("other"),
            s("for the inbox"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn select_takes_from_a_listen_channel_and_another_channel() {
    let listener = Listener::start(
        r#"
        local local_ch = channel.new(1)
        local_ch:send("local value")
        ready()
        local got = {}
        for _ = 1, 3 do
            local r = channel.select({ chat:case_receive(), local_ch:case_receive(),
                                       process.inbox():case_receive() })
            if r.channel == chat then
                got[#got + 1] = "chat:" .. r.value
            elseif r.channel == local_ch then
                got[#got + 1] = "local:" .. r.value
            else
                got[#got + 1] = "inbox:" .. r.value:topic()
            end
        end
        return got
        "#,
    )
    .await;
    listener.send("chat", "hi");
    listener.send("ping", true);
    let got = listener.items().await;
    let mut got: Vec<_> = got.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    got.sort();
    assert_eq!(got, ["chat:hi", "inbox:ping", "local:local value"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unlisten_gives_the_topic_and_the_queued_messages_back_to_the_inbox() {
    let listener = Listener::start(
        r#"
        ready()
        local first = chat:receive()
        -- Let the second message arrive, and a look at the inbox sort it into the channel;
        -- then stop listening with it still queued there.
        local time = require("time")
        time.sleep("50ms")
        local timer = time.after("0ms")
        local r = channel.select({ process.inbox():case_receive(), timer:case_receive() })
        assert(r.channel == timer, "the inbox has nothing")
        assert(process.unlisten(chat))
        assert(process.unlisten(chat), "unlisten twice is fine")
        local _, ok = chat:receive()
        local inbox = process.inbox()
        local out = { first, ok }
        for _ = 1, 2 do out[#out + 1] = inbox:receive():payload():data() end
        return out
        "#,
    )
    .await;
    listener.send("chat", "one");
    listener.send("chat", "two");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    listener.send("chat", "three");
    let v = listener.items().await;
    assert_eq!(v[0], s("one"));
    assert_eq!(v[1], false.into(), "the channel is closed after unlisten");
    assert_eq!(&v[2..], &[s("two"), s("three")], "{v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_channel_holds_messages_back_without_dropping_any() {
    let listener = Listener::start(
        r#"
        ready()
        -- Nothing is read until everything was sent.
        process.inbox():receive()
        local n, last = 0, 0
        while n < 600 do
            local v = chat:receive()
            assert(v == last + 1, "in order, none lost")
            last, n = v, n + 1
        end
        return { n, process.inbox():receive():topic() }
        "#,
    )
    .await;
    listener.send("go", true);
    for i in 1..=600 {
        listener.send("chat", i);
    }
    listener.send("after", true);
    assert_eq!(listener.items().await, [600.into(), s("after")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_misuse_returns_wippy_errors() {
    let v = eval_fresh(
        r#"
        local out = {}
        local function add(_, e) out[#out + 1] = e:kind() .. ": " .. tostring(e) end
        add(process.listen("@system"))
        add(process.listen(""))
        assert(process.listen("chat"))
        add(process.listen("chat"))
        add(process.listen("other", { message = "yes" }))
        add(process.unlisten({}))
        for i = 1, 63 do assert(process.listen("t" .. i)) end
        add(process.listen("one too many"))
        return out
        "#,
    )
    .await;
    let Value::Array(errors) = v else {
        panic!("{v:?}")
    };
    let texts: Vec<_> = errors.iter().map(|e| e.as_str().unwrap()).collect();
    assert!(
        texts[0].starts_with("INVALID: ") && texts[0].contains("reserved"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("INVALID: "), "{texts:?}");
    assert!(texts[2].starts_with("ALREADY_EXISTS: "), "{texts:?}");
    assert!(
        texts[3].starts_with("INVALID: ") && texts[3].contains("boolean"),
        "{texts:?}"
    );
    assert!(texts[4].starts_with("INVALID: "), "{texts:?}");
    assert!(
        texts[5].starts_with("INVALID: ") && texts[5].contains("64"),
        "{texts:?}"
    );
    assert_eq!(texts.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_needs_a_process() {
    let (_node, engine) = setup();
    let f = function(
        &engine,
        r#"return function()
            local ch, err = process.listen("chat")
            return { ch == nil, err:kind() }
        end"#,
        &[],
    );
    let v = f.call(vec![]).await.unwrap();
    assert_eq!(v, Value::Array(vec![true.into(), s("INVALID")]));
}
