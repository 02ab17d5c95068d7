//! The process runtime through its public API: one test per operation of docs/spec.md §2.

use std::sync::Arc;
use std::time::Duration;

use wsrelay_process::{
    reason, Context, Event, ExitGuard, ExitResult, Field, HighWater, HostConfig, LinkError,
    Message, NameError, Node, OpaqueValue, Pid, Received, SendError, Shards, SpawnError,
    SpawnOptions, Unbuilt, Value,
};

const HOST: &str = "app:processes";

fn node() -> Node {
    let node = Node::new();
    node.add_host(HOST, HostConfig::default());
    node
}

/// A detached process the test acts as.
fn probe(node: &Node) -> (Context, ExitGuard) {
    node.attach(HOST, SpawnOptions::new()).unwrap().detach()
}

/// A process that runs until told `stop` (exits normally) or `fail` (exits with an error).
fn sleeper(node: &Node) -> Pid {
    node.spawn(HOST, SpawnOptions::new(), |ctx| async move {
        loop {
            let msg = ctx.recv().await;
            match msg.topic() {
                "stop" => return Ok(Value::from("done")),
                "fail" => return Err("boom".to_owned()),
                "panic" => panic!("kaboom"),
                _ => {}
            }
        }
    })
    .unwrap()
}

async fn next_event(ctx: &Context) -> Event {
    tokio::time::timeout(Duration::from_secs(5), ctx.next_event())
        .await
        .expect("an event within 5s")
}

async fn settle(node: &Node) {
    for _ in 0..200 {
        if node.process_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn spawn_returns_a_routable_pid() {
    let node = node();
    let pid = sleeper(&node);
    assert_eq!(pid.host(), HOST);
    assert!(pid.to_string().starts_with("{app:processes|0x"));
    assert!(node.is_alive(&pid));
    node.send(&pid, Message::new(None, "stop", ())).unwrap();
}

#[tokio::test]
async fn a_spawner_learns_when_the_process_has_set_itself_up() {
    let node = node();
    // A Rust body: ready at its first poll, while it waits for `go`.
    let (ready, mut started) = tokio::sync::watch::channel(false);
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let pid = node
        .spawn(
            HOST,
            SpawnOptions::new().notify_ready(ready),
            |_| async move {
                let _ = wait.await;
            },
        )
        .unwrap();
    started.wait_for(|ready| *ready).await.unwrap();
    assert!(node.is_alive(&pid));
    go.send(()).unwrap();
    // A host that drives the process itself and sets the signal by hand.
    let (ready, started) = tokio::sync::watch::channel(false);
    let mut process = node
        .attach(HOST, SpawnOptions::new().notify_ready(ready))
        .unwrap();
    let signal = process.take_ready();
    assert!(signal.is_wanted());
    assert!(!*started.borrow());
    signal.set();
    assert!(*started.borrow());
    drop(process.detach());
    // A process that ends before its body runs drops the signal unset.
    let (ready, mut started) = tokio::sync::watch::channel(false);
    let process = node
        .attach(HOST, SpawnOptions::new().notify_ready(ready))
        .unwrap();
    drop(process.detach());
    assert!(started.wait_for(|ready| *ready).await.is_err());
    // Without the option, nothing is wanted.
    let mut process = node.attach(HOST, SpawnOptions::new()).unwrap();
    assert!(!process.take_ready().is_wanted());
    drop(process.detach());
}

#[tokio::test]
async fn spawn_on_unknown_or_full_host_fails() {
    let node = node();
    node.add_host(
        "small",
        HostConfig {
            max_processes: Some(1),
            ..HostConfig::default()
        },
    );
    assert!(matches!(
        node.attach("nope", SpawnOptions::new()),
        Err(SpawnError::UnknownHost(_))
    ));
    let _first = node.attach("small", SpawnOptions::new()).unwrap();
    assert!(matches!(
        node.attach("small", SpawnOptions::new()),
        Err(SpawnError::HostFull { max: 1, .. })
    ));
}

#[tokio::test]
async fn messages_keep_order_and_wait_in_the_inbox() {
    let node = node();
    let (me, _g) = probe(&node);
    let (other, _g2) = probe(&node);
    for i in 0..100 {
        me.send(other.pid(), "n", i).unwrap();
    }
    assert_eq!(other.inbox_len(), 100);
    for i in 0..100 {
        let msg = other.recv().await;
        assert_eq!(msg.payload(), &Value::Int(i));
        assert_eq!(msg.from(), Some(me.pid()));
        assert_eq!(msg.topic(), "n");
    }
}

#[tokio::test]
async fn send_to_dead_or_unknown_pid_fails() {
    let node = node();
    let (me, _g) = probe(&node);
    let (other, guard) = probe(&node);
    let pid = other.pid().clone();
    guard.exit(());
    assert_eq!(
        me.send(&pid, "x", ()),
        Err(SendError::NoProcess(pid.to_string()))
    );
    let unknown: Pid = "{app:processes|0xfffff}".parse().unwrap();
    assert!(matches!(
        me.send(&unknown, "x", ()),
        Err(SendError::NoProcess(_))
    ));
    assert!(matches!(
        me.send(me.pid(), "@system", ()),
        Err(SendError::ReservedTopic(_))
    ));
    let remote: Pid = "{b@app:processes|0x00001}".parse().unwrap();
    assert!(matches!(
        me.send(&remote, "x", ()),
        Err(SendError::NodeUnreachable(_))
    ));
}

#[tokio::test]
async fn monitor_sees_exactly_one_exit_with_the_result() {
    let node = node();
    let (me, _g) = probe(&node);
    let pid = sleeper(&node);
    me.monitor(&pid).unwrap();
    me.monitor(&pid).unwrap(); // the same monitor
    me.send(&pid, "stop", ()).unwrap();
    match next_event(&me).await {
        Event::Exit { from, result } => {
            assert_eq!(from, pid);
            assert_eq!(result, ExitResult::normal("done"));
        }
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(me.try_next_event().is_none());
}

#[tokio::test]
async fn monitoring_a_dead_pid_delivers_noproc_at_once() {
    let node = node();
    let (me, _g) = probe(&node);
    let gone: Pid = "{app:processes|0x00fff}".parse().unwrap();
    me.monitor(&gone).unwrap();
    let event = me.try_next_event().expect("EXIT at once");
    assert_eq!(
        event,
        Event::Exit {
            from: gone,
            result: ExitResult::error(reason::NOPROC)
        }
    );
}

#[tokio::test]
async fn unmonitor_stops_the_exit() {
    let node = node();
    let (me, _g) = probe(&node);
    let pid = sleeper(&node);
    me.monitor(&pid).unwrap();
    me.unmonitor(&pid);
    me.send(&pid, "stop", ()).unwrap();
    settle(&node).await;
    assert!(me.try_next_event().is_none());
    assert_eq!(node.relation_count(), 0);
}

#[tokio::test]
async fn error_exits_panics_and_terminate_are_reported() {
    let node = node();
    let (me, _g) = probe(&node);
    for (topic, expected) in [("fail", "boom"), ("panic", "panic: kaboom")] {
        let pid = sleeper(&node);
        me.monitor(&pid).unwrap();
        me.send(&pid, topic, ()).unwrap();
        let Event::Exit { result, .. } = next_event(&me).await else {
            panic!()
        };
        assert_eq!(result.error_text(), Some(expected));
    }
    let pid = sleeper(&node);
    me.monitor(&pid).unwrap();
    me.terminate(&pid).unwrap();
    let Event::Exit { result, .. } = next_event(&me).await else {
        panic!()
    };
    assert_eq!(result.error_text(), Some(reason::TERMINATED));
    assert!(matches!(me.terminate(&pid), Err(SendError::NoProcess(_))));
}

#[tokio::test]
async fn links_propagate_only_error_exits() {
    let node = node();
    let (me, _g) = probe(&node);
    // normal exit: the linked process keeps running
    let a = sleeper(&node);
    let b = sleeper(&node);
    me.monitor(&b).unwrap();
    let linker = node
        .spawn(HOST, SpawnOptions::new(), {
            let (a, b) = (a.clone(), b.clone());
            |ctx| async move {
                ctx.link(&a).unwrap();
                ctx.link(&b).unwrap();
                ctx.next_event().await;
            }
        })
        .unwrap();
    me.monitor(&linker).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    me.send(&a, "stop", ()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(node.is_alive(&linker));
    // error exit: the linked process dies with "linked process failed", and so does b
    me.terminate(&linker).unwrap();
    let Event::Exit { from, result } = next_event(&me).await else {
        panic!()
    };
    assert_eq!(
        (from, result.error_text()),
        (linker, Some(reason::TERMINATED))
    );
    let Event::Exit { from, result } = next_event(&me).await else {
        panic!()
    };
    assert_eq!(
        (from, result.error_text()),
        (b, Some(reason::LINKED_FAILED))
    );
}

#[tokio::test]
async fn trapping_links_turns_failures_into_events() {
    let node = node();
    let (me, _g) = probe(&node);
    me.set_trap_links(true);
    let pid = sleeper(&node);
    me.link(&pid).unwrap();
    me.send(&pid, "fail", ()).unwrap();
    let event = next_event(&me).await;
    assert_eq!(event.kind(), "pid.link.down");
    assert_eq!(
        event,
        Event::LinkDown {
            from: pid,
            result: ExitResult::error("boom")
        }
    );
}

#[tokio::test]
async fn link_to_dead_pid_fails_and_unlink_removes_it() {
    let node = node();
    let (me, _g) = probe(&node);
    let gone: Pid = "{app:processes|0x00fff}".parse().unwrap();
    assert!(matches!(me.link(&gone), Err(LinkError::NoProc(_))));
    assert!(matches!(me.link(me.pid()), Err(LinkError::SelfReference)));
    let pid = sleeper(&node);
    me.link(&pid).unwrap();
    me.unlink(&pid);
    me.send(&pid, "fail", ()).unwrap();
    settle_one(&node, &pid).await;
    assert!(node.is_alive(me.pid()));
    assert!(me.stop_requested().is_none());
}

async fn settle_one(node: &Node, pid: &Pid) {
    for _ in 0..200 {
        if !node.is_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{pid} still alive");
}

#[tokio::test]
async fn cancel_delivers_an_event() {
    let node = node();
    let (me, _g) = probe(&node);
    let (other, _g2) = probe(&node);
    me.cancel(other.pid(), "please").unwrap();
    let event = next_event(&other).await;
    assert_eq!(
        event,
        Event::Cancel {
            from: Some(me.pid().clone()),
            reason: Value::from("please")
        }
    );
    assert_eq!(event.kind(), "pid.cancel");
}

#[tokio::test]
async fn events_come_before_messages() {
    let node = node();
    let (me, _g) = probe(&node);
    let (other, _g2) = probe(&node);
    me.send(other.pid(), "m", 1).unwrap();
    me.cancel(other.pid(), ()).unwrap();
    assert!(matches!(other.next().await, Received::Event(_)));
    assert!(matches!(other.next().await, Received::Message(_)));
}

#[tokio::test]
async fn names_register_resolve_and_release_on_exit() {
    let node = node();
    let (me, guard) = probe(&node);
    me.register("hub").unwrap();
    assert_eq!(node.lookup("hub").as_ref(), Some(me.pid()));
    assert_eq!(node.resolve("hub").unwrap(), *me.pid());
    assert_eq!(node.resolve(me.pid().as_str()).unwrap(), *me.pid());
    assert!(matches!(node.resolve("nobody"), Err(SendError::NoName(_))));
    let (other, _g) = probe(&node);
    assert_eq!(other.register("hub"), Err(NameError::Taken("hub".into())));
    assert!(matches!(other.register(""), Err(NameError::Invalid(_))));
    assert!(matches!(
        other.unregister("hub"),
        Err(NameError::NotOwner(_))
    ));
    guard.exit(());
    assert_eq!(node.lookup("hub"), None);
    other.register("hub").unwrap();
    other.unregister("hub").unwrap();
    assert_eq!(node.name_count(), 0);
}

#[tokio::test]
async fn spawn_options_apply_before_the_body_runs() {
    let node = node();
    let (me, _g) = probe(&node);
    // The child fails at once: the monitor and the link must still see it.
    let child = node
        .spawn(
            HOST,
            SpawnOptions::new()
                .monitored_by(me.pid().clone())
                .named("kid"),
            |_ctx| async { Err::<Value, _>("instant failure") },
        )
        .unwrap();
    let Event::Exit { from, result } = next_event(&me).await else {
        panic!()
    };
    assert_eq!(
        (from, result.error_text()),
        (child, Some("instant failure"))
    );
    assert_eq!(node.lookup("kid"), None);

    me.set_trap_links(true);
    node.spawn(
        HOST,
        SpawnOptions::new().linked_to(me.pid().clone()),
        |_ctx| async { Err::<Value, _>("x") },
    )
    .unwrap();
    assert_eq!(next_event(&me).await.kind(), "pid.link.down");
}

#[tokio::test]
async fn dropping_a_detached_guard_exits_with_terminated() {
    let node = node();
    let (me, _g) = probe(&node);
    let (other, guard) = probe(&node);
    me.monitor(other.pid()).unwrap();
    drop(guard);
    let Event::Exit { result, .. } = next_event(&me).await else {
        panic!()
    };
    assert_eq!(result.error_text(), Some(reason::TERMINATED));
}

#[tokio::test]
async fn shutdown_stops_every_process() {
    let node = node();
    let (me, _g) = probe(&node);
    let pids: Vec<_> = (0..10).map(|_| sleeper(&node)).collect();
    for pid in &pids {
        me.monitor(pid).unwrap();
    }
    node.shutdown();
    for _ in &pids {
        let Event::Exit { result, .. } = next_event(&me).await else {
            panic!()
        };
        assert_eq!(result.error_text(), Some(reason::SHUTDOWN));
    }
    assert!(matches!(
        node.attach(HOST, SpawnOptions::new()),
        Err(SpawnError::ShuttingDown)
    ));
}

#[tokio::test]
async fn senders_can_wait_for_the_inbox_high_water_mark() {
    let node = Node::new();
    let mark = HighWater {
        messages: 4,
        bytes: usize::MAX,
    };
    node.add_host(
        HOST,
        HostConfig {
            high_water: mark,
            ..HostConfig::default()
        },
    );
    let (me, _g) = probe(&node);
    let (slow, _g2) = probe(&node);
    let target = node.process_ref(slow.pid()).unwrap();
    for i in 0..10 {
        target
            .send(Message::new(Some(me.pid().clone()), "m", i))
            .unwrap(); // never refused
    }
    assert!(target.is_congested());
    let waiter = tokio::spawn({
        let target = target.clone();
        async move { target.wait_for_space().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    for _ in 0..7 {
        slow.recv().await;
    }
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(target.inbox_len(), 3);
}

#[tokio::test]
async fn waiting_for_space_ends_when_the_target_exits() {
    let node = Node::new();
    node.add_host(
        HOST,
        HostConfig {
            high_water: HighWater {
                messages: 1,
                bytes: usize::MAX,
            },
            ..HostConfig::default()
        },
    );
    let (slow, guard) = probe(&node);
    let target = node.process_ref(slow.pid()).unwrap();
    target.send(Message::new(None, "m", 1)).unwrap();
    let waiter = tokio::spawn(async move { target.wait_for_space().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    guard.exit(());
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
}

#[derive(Debug)]
struct Blob(usize);

impl OpaqueValue for Blob {
    fn to_value(&self) -> Value {
        Value::Null
    }

    fn size_hint(&self) -> usize {
        self.0
    }
}

/// Found by the relay's backpressure test: an opaque payload counted 64 bytes whatever it
/// held, so byte limits never saw queued Rust frames.
#[tokio::test]
async fn opaque_payloads_count_their_size_hint() {
    let node = node();
    let (ctx, _guard) = probe(&node);
    let msg = Message::new(None, "t", Value::Opaque(Arc::new(Blob(100_000))));
    node.send(ctx.pid(), msg).unwrap();
    assert!(ctx.inbox_bytes() >= 100_000, "{}", ctx.inbox_bytes());
}

#[tokio::test]
async fn nothing_is_left_behind() {
    let node = node();
    {
        let (me, guard) = probe(&node);
        let pids: Vec<_> = (0..50).map(|_| sleeper(&node)).collect();
        for pid in &pids {
            me.monitor(pid).unwrap();
            me.link(pid).unwrap();
            me.send(pid, "stop", ()).unwrap();
        }
        for _ in &pids {
            next_event(&me).await;
        }
        guard.exit(());
    }
    settle(&node).await;
    assert_eq!(node.process_count(), 0);
    assert_eq!(node.relation_count(), 0);
    assert_eq!(node.name_count(), 0);
}

/// Regression: a push and a pop racing around the mark once left a stale inbox length behind,
/// and a cooperative sender waited forever on an empty inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_senders_never_miss_the_wake_up() {
    let node = Node::new();
    node.add_host(
        HOST,
        HostConfig {
            high_water: HighWater {
                messages: 8,
                bytes: usize::MAX,
            },
            ..HostConfig::default()
        },
    );
    let (me, _g) = probe(&node);
    const N: i64 = 50_000;
    let receiver = node
        .spawn(HOST, SpawnOptions::new(), |ctx| async move {
            for _ in 0..N {
                ctx.recv().await;
            }
        })
        .unwrap();
    let target = node.process_ref(&receiver).unwrap();
    me.monitor(&receiver).unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            target.wait_for_space().await;
            target.send(Message::new(None, "m", i)).unwrap();
        }
    });
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("no lost wake-up")
        .unwrap();
    next_event(&me).await;
}

#[tokio::test]
async fn task_processes_of_a_node_with_shards_run_on_those_shards() {
    let node = node();
    let shards = Shards::start(2, "test-shard").unwrap();
    assert!(node.set_shards(shards.clone()));
    let (me, _guard) = probe(&node);
    for _ in 0..4 {
        let set = shards.clone();
        let pid = node
            .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
                let msg = ctx.recv().await;
                let here = set.current().map_or(-1, |i| i as i64);
                ctx.send(msg.from().unwrap(), "where", here).unwrap();
            })
            .unwrap();
        me.send(&pid, "ping", Value::Null).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), me.recv())
            .await
            .unwrap();
        let shard = answer.payload().as_i64().unwrap();
        assert!((0..2).contains(&shard), "ran off the shards: {shard}");
    }
}

/// An inbox that grew for a burst (a shared target during a connect storm) frees its storage
/// once it is empty again, and keeps working; a small inbox keeps its few slots.
#[test]
fn inbox_storage_is_freed_after_a_burst() {
    let node = node();
    let (me, _guard) = probe(&node);
    let (sender, _sender_guard) = probe(&node);
    let capacity = |node: &Node| {
        node.processes()
            .into_iter()
            .find(|p| &p.pid == me.pid())
            .map(|p| p.inbox_capacity)
            .unwrap()
    };
    assert_eq!(
        capacity(&node),
        0,
        "a process that got nothing holds no inbox"
    );
    for i in 0..2 {
        sender.send(me.pid(), "t", Value::Int(i)).unwrap();
    }
    while me.try_recv().is_some() {}
    let small = capacity(&node);
    assert!(small > 0, "a small inbox keeps its slots");
    for i in 0..1000 {
        sender.send(me.pid(), "burst", Value::Int(i)).unwrap();
    }
    assert!(capacity(&node) >= 1000);
    for i in 0..999 {
        assert_eq!(me.try_recv().unwrap().payload(), &Value::Int(i));
    }
    assert!(capacity(&node) >= 1000, "still one message waiting");
    assert_eq!(me.try_recv().unwrap().payload(), &Value::Int(999));
    assert_eq!(
        capacity(&node),
        0,
        "the burst's storage is freed when the inbox empties"
    );
    sender.send(me.pid(), "after", Value::Int(7)).unwrap();
    assert_eq!(me.try_recv().unwrap().payload(), &Value::Int(7));
    assert_eq!(
        node.processes()
            .iter()
            .find(|p| &p.pid == me.pid())
            .unwrap()
            .inbox_peak,
        1000
    );
}

/// Takes the messages offered while `take` is set, and records them.
#[derive(Default)]
struct Taker {
    take: std::sync::atomic::AtomicBool,
    taken: parking_lot::Mutex<Vec<String>>,
}

impl wsrelay_process::Shortcut for Taker {
    fn offer(&self, msg: Message) -> Result<(), Message> {
        if !self.take.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(msg);
        }
        self.taken.lock().push(msg.topic().to_owned());
        Ok(())
    }

    /// Takes unbuilt what has a text field `data`, as `topic:data`.
    fn offer_unbuilt(&self, topic: &str, payload: &dyn Unbuilt) -> bool {
        match payload.field("data") {
            Field::Text(data) if self.take.load(std::sync::atomic::Ordering::SeqCst) => {
                self.taken.lock().push(format!("{topic}:{data}"));
                true
            }
            _ => false,
        }
    }
}

/// A payload readable as fields: a map of texts.
struct Texts(&'static [(&'static str, &'static str)]);

impl Unbuilt for Texts {
    fn field(&self, key: &str) -> Field<'_> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(Field::Missing, |(_, v)| Field::Text(v))
    }
}

/// `send_lazy` with `payload` to `to` from `sender`; whether the message had to be built.
fn send_lazy(sender: &Context, to: &Pid, topic: &str, payload: Texts) -> Result<bool, SendError> {
    let built = std::cell::Cell::new(false);
    sender
        .node()
        .send_lazy(Some(sender.pid()), to, topic, &payload, || {
            built.set(true);
            let map = payload
                .0
                .iter()
                .fold(wsrelay_process::Map::new(), |m, (k, v)| m.with(*k, *v));
            Ok::<_, SendError>(Message::new(
                Some(sender.pid().clone()),
                topic,
                Value::Map(map),
            ))
        })
        .map(|()| built.get())
}

/// A payload sent lazily is read unbuilt by a shortcut that takes it, and built only when
/// the shortcut declines it or may not be offered it: then it is sent as any message
/// (offered built, or queued behind what waits).
#[tokio::test]
async fn a_lazy_send_is_built_only_when_no_shortcut_takes_it_unbuilt() {
    let node = node();
    let (ctx, _g) = probe(&node);
    let (sender, _g2) = probe(&node);
    let taker = Arc::new(Taker::default());
    ctx.set_shortcut(taker.clone());
    taker.take.store(true, std::sync::atomic::Ordering::SeqCst);

    let hi = Texts(&[("data", "hi")]);
    assert_eq!(send_lazy(&sender, ctx.pid(), "t", hi), Ok(false));
    // Declined unbuilt (no text `data`): built, then offered built and taken.
    let other = Texts(&[("other", "x")]);
    assert_eq!(send_lazy(&sender, ctx.pid(), "u", other), Ok(true));
    assert_eq!(*taker.taken.lock(), ["t:hi", "u"]);

    // A message waits: the next is built and queued behind it, not offered.
    taker.take.store(false, std::sync::atomic::Ordering::SeqCst);
    sender.send(ctx.pid(), "first", Value::Null).unwrap();
    taker.take.store(true, std::sync::atomic::Ordering::SeqCst);
    let later = Texts(&[("data", "later")]);
    assert_eq!(send_lazy(&sender, ctx.pid(), "second", later), Ok(true));
    assert_eq!(ctx.recv().await.topic(), "first");
    let second = ctx.recv().await;
    assert_eq!(second.topic(), "second");
    assert_eq!(
        second.payload().get("data").and_then(Value::as_str),
        Some("later")
    );
    assert_eq!(taker.taken.lock().len(), 2);

    // No such process: the send fails, with nothing built.
    let gone = Pid::new(node.name(), HOST, 999_999);
    let none = Texts(&[]);
    assert!(matches!(
        send_lazy(&sender, &gone, "t", none),
        Err(SendError::NoProcess(_))
    ));
}

/// A process's shortcut is offered what is sent to it while its inbox is empty; what it
/// gives back is queued, and nothing is offered past a queued message (order per sender).
#[tokio::test]
async fn a_shortcut_takes_messages_only_past_an_empty_inbox() {
    let node = node();
    let (ctx, _g) = probe(&node);
    let (sender, _g2) = probe(&node);
    let taker = Arc::new(Taker::default());
    assert!(ctx.set_shortcut(taker.clone()));
    assert!(!ctx.set_shortcut(Arc::new(Taker::default())), "set once");

    taker.take.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.send(ctx.pid(), "a", Value::Null).unwrap();
    assert_eq!(*taker.taken.lock(), ["a"]);
    assert_eq!(ctx.inbox_len(), 0);

    // Given back: queued. Then the shortcut would take again, but the inbox is not empty.
    taker.take.store(false, std::sync::atomic::Ordering::SeqCst);
    sender.send(ctx.pid(), "b", Value::Null).unwrap();
    taker.take.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.send(ctx.pid(), "c", Value::Null).unwrap();
    assert_eq!(*taker.taken.lock(), ["a"]);
    assert_eq!(ctx.recv().await.topic(), "b");
    assert_eq!(ctx.recv().await.topic(), "c");

    // Empty again: taken.
    sender.send(ctx.pid(), "d", Value::Null).unwrap();
    assert_eq!(*taker.taken.lock(), ["a", "d"]);
    assert_eq!(ctx.inbox_len(), 0);
}

/// A process with an event or a stop request waiting is not offered messages: it acts on
/// those first, as it would with the message queued.
#[tokio::test]
async fn a_shortcut_is_not_offered_messages_while_a_signal_waits() {
    let node = node();
    let (ctx, _g) = probe(&node);
    let (sender, _g2) = probe(&node);
    let taker = Arc::new(Taker::default());
    taker.take.store(true, std::sync::atomic::Ordering::SeqCst);
    ctx.set_shortcut(taker.clone());
    // Monitoring a PID that never lived delivers its `noproc` EXIT at once: an event waits.
    ctx.monitor(&Pid::new(node.name(), HOST, 999_999)).unwrap();
    sender.send(ctx.pid(), "queued", Value::Null).unwrap();
    assert!(taker.taken.lock().is_empty());
    assert!(matches!(ctx.next_event().await, Event::Exit { .. }));
    assert_eq!(ctx.recv().await.topic(), "queued");

    // A stop request waits: queued too.
    ctx.terminate(ctx.pid()).unwrap();
    sender.send(ctx.pid(), "after stop", Value::Null).unwrap();
    assert!(taker.taken.lock().is_empty());
    assert_eq!(ctx.inbox_len(), 1);
}
