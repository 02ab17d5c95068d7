//! The `process` module: every function, including its `nil, err` returns.

use crate::support::*;
use wsrelay_process::{Event, Value};

#[tokio::test(flavor = "multi_thread")]
async fn send_pid_and_payload_copies() {
    let (node, engine) = setup();
    let (me, _g) = rust_process(&node);
    let v = run_lua_args(
        &engine,
        r#"
        local me = ...
        local t = {a = {1, 2}, s = "x"}
        assert(process.send(me, "t1", t, 5, "extra"))
        t.a[1] = 99 -- the sent copy is not affected
        return { pid = process.pid(), same = tostring(process.pid()) == process.pid() }
        "#,
        vec![s(me.pid().as_str())],
    )
    .await;
    assert!(v.error.is_none(), "{v:?}");
    assert_eq!(v.value.get("same"), Some(&Value::Bool(true)));
    let msg = recv(&me).await;
    assert_eq!(msg.topic(), "t1");
    assert_eq!(
        msg.from().map(|p| p.to_string()),
        v.value
            .get("pid")
            .and_then(|p| p.as_str().map(String::from))
    );
    assert_eq!(msg.payload().get("a"), Some(&array![1, 2]));
    assert_eq!(msg.extra(), &[Value::Int(5), s("extra")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_errors_return_nil_err() {
    let (node, engine) = setup();
    let (me, guard) = rust_process(&node);
    let dead = me.pid().clone();
    guard.exit(());
    drop(me);
    let v = eval(
        &engine,
        &format!(
            r#"
            local r = {{}}
            local function add(a, b) r[#r + 1] = {{ a == nil, b }} end
            add(process.send("{dead}", "x", 1))
            add(process.send("{{app:processes|0xfffff}}", "x"))
            add(process.send("nobody", "x"))
            add(process.send("{{bad", "x"))
            add(process.send(process.pid(), "@reserved"))
            add(process.send(process.pid(), 12))
            add(process.send(process.pid(), "x", function() end))
            add(process.send())
            return r
            "#
        ),
    )
    .await;
    let Value::Array(rows) = v else { panic!() };
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let Value::Array(cells) = row else { panic!() };
        assert_eq!(cells[0], Value::Bool(true), "{row:?}");
        assert!(cells[1].as_str().is_some(), "{row:?}");
    }
    assert!(rows[0].as_array_text(1).contains("no process"));
    assert!(rows[2].as_array_text(1).contains("nobody"));
    assert!(rows[4].as_array_text(1).contains("reserved"));
    assert!(rows[5].as_array_text(1).contains("topic"));
}

trait ArrayText {
    fn as_array_text(&self, i: usize) -> String;
}

impl ArrayText for Value {
    fn as_array_text(&self, i: usize) -> String {
        match self {
            Value::Array(items) => items[i].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        }
    }
}

const CHILD: &str = r#"
local function main(mode, ...)
    if mode == "echo_args" then return { ... } end
    if mode == "fail" then error("child failed") end
    if mode == "wait" then process.inbox():receive() return "done" end
end
return { main = main }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn spawn_variants_and_errors() {
    let (node, engine) = setup();
    let child = register(&engine, CHILD, "main", &[]);
    let v = eval(
        &engine,
        &format!(
            r#"
            local events = process.events()
            local a = process.spawn_monitored("{child}", "app:processes", "echo_args", 1, "two")
            local ev = events:receive()
            assert(ev.kind == process.event.EXIT and ev.from == a, ev.kind)
            local b = process.spawn_linked("{child}", "app:processes", "wait")
            assert(type(b) == "string")
            local c = process.spawn("{child}", "app:processes", "wait")
            assert(process.send(c, "go", true))
            local n1, e1 = process.spawn("nope:entry", "app:processes")
            local n2, e2 = process.spawn("{child}", "nope:host")
            local n3, e3 = process.spawn(nil, "x")
            local n4, e4 = process.spawn("{child}", "app:processes", function() end)
            process.send(b, "go")
            return {{ ev.result.value[1], ev.result.value[2], n1 == nil, e1, n2 == nil, e2, n3 == nil, e3, n4 == nil, e4 ~= nil }}
            "#
        ),
    )
    .await;
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items[0], Value::Int(1));
    assert_eq!(items[1], s("two"));
    assert_eq!(items[2], Value::Bool(true));
    assert!(items[3].as_str().unwrap().contains("unknown process entry"));
    assert_eq!(items[4], Value::Bool(true));
    assert!(items[5].as_str().unwrap().contains("unknown process host"));
    assert_eq!(items[6], Value::Bool(true));
    assert_eq!(items[7], s("process id is required"));
    assert_eq!(items[9], Value::Bool(true));
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_unmonitor_link_unlink_cancel_terminate() {
    let (node, engine) = setup();
    let (target, target_guard) = rust_process(&node);
    let (other, _g) = rust_process(&node);
    let (me, _g2) = rust_process(&node);
    let source = r#"return function(target, other)
        local events = process.events()
        local r = {}
        r.monitor = process.monitor(target)
        r.self_monitor = select(2, process.monitor(process.pid()))
        r.bad = select(2, process.monitor("{nope"))
        r.link = process.link(other)
        r.unlink = process.unlink(other)
        r.link_dead = select(2, process.link("{app:processes|0xffffe}"))
        r.cancel = process.cancel(other, "5s")
        r.cancel_err = select(2, process.cancel("nobody"))
        r.term_err = select(2, process.terminate("nobody"))
        process.send(target, "ready", true)
        local ev = events:receive()
        r.kind = ev.kind
        r.value = ev.result.value
        process.unmonitor(target)
        process.monitor(target)
        local ev2 = events:receive()
        r.noproc = ev2.result.error
        return r
    end"#;
    let entry = register(&engine, source, "", &[]);
    let pid = spawn_monitored(
        &me,
        &entry,
        vec![s(target.pid().as_str()), s(other.pid().as_str())],
    );
    assert_eq!(recv(&target).await.topic(), "ready");
    match next_event(&other).await {
        Event::Cancel { from, reason } => {
            assert_eq!(from.as_ref(), Some(&pid));
            assert_eq!(reason, s("5s"));
        }
        e => panic!("{e:?}"),
    }
    target_guard.exit(Value::from("bye"));
    let exit = exit_of(&me, &pid).await;
    assert!(exit.error.is_none(), "{exit:?}");
    let r = exit.value;
    assert_eq!(r.get("monitor"), Some(&Value::Bool(true)));
    assert!(r
        .get("self_monitor")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("itself"));
    assert!(r.get("bad").unwrap().as_str().is_some());
    assert_eq!(r.get("link"), Some(&Value::Bool(true)));
    assert_eq!(r.get("unlink"), Some(&Value::Bool(true)));
    assert!(r
        .get("link_dead")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("noproc"));
    assert_eq!(r.get("cancel"), Some(&Value::Bool(true)));
    assert!(r.get("cancel_err").unwrap().as_str().is_some());
    assert!(r.get("term_err").unwrap().as_str().is_some());
    assert_eq!(r.get("kind"), Some(&s("pid.exit")));
    assert_eq!(r.get("value"), Some(&s("bye")));
    assert_eq!(r.get("noproc"), Some(&s("noproc")));
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_from_lua_and_cancel_event_shape() {
    let (node, engine) = setup();
    let (victim, _vg) = rust_process(&node);
    let (me, _g) = rust_process(&node);
    let entry = register(
        &engine,
        r#"return function(victim)
            local events = process.events()
            assert(process.monitor(victim))
            assert(process.terminate(victim))
            local ev = events:receive()
            local c = events:receive()
            return { ev.result.error, c.kind, c.from, c.reason }
        end"#,
        "",
        &[],
    );
    let pid = spawn_monitored(&me, &entry, vec![s(victim.pid().as_str())]);
    // `victim` is a detached Rust process: its driver (this test) sees the stop request.
    let stop = tokio::time::timeout(WAIT, victim.stopped()).await.unwrap();
    assert_eq!(stop.error_text(), Some("terminated"));
    drop(_vg);
    me.cancel(&pid, "please").unwrap();
    let exit = exit_of(&me, &pid).await;
    assert_eq!(
        exit.value,
        Value::Array(vec![
            s("terminated"),
            s("pid.cancel"),
            s(me.pid().as_str()),
            s("please")
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_options() {
    let (node, engine) = setup();
    let v = eval(
        &engine,
        r#"
        local r = {}
        r.reg = process.registry.register("lua.named")
        r.look = process.registry.lookup("lua.named") == process.pid()
        r.taken = select(2, process.registry.register("lua.named"))
        r.missing = select(2, process.registry.lookup("nobody.here"))
        r.unreg = process.registry.unregister("lua.named")
        r.unreg_again = select(2, process.registry.unregister("lua.named"))
        r.bad_name = select(2, process.registry.register(""))
        r.opts = process.set_options({ trap_links = true })
        r.trap = process.get_options().trap_links
        r.bad_opt = select(2, process.set_options({ nope = 1 }))
        r.bad_type = select(2, process.set_options({ trap_links = "yes" }))
        r.not_table = select(2, process.set_options(5))
        r.consts = process.event.EXIT .. "," .. process.event.LINK_DOWN .. "," .. process.event.CANCEL
        r.inbox_same = process.inbox() == process.inbox()
        r.events_same = process.events() == process.events()
        return r
        "#,
    )
    .await;
    assert_eq!(v.get("reg"), Some(&Value::Bool(true)));
    assert_eq!(v.get("look"), Some(&Value::Bool(true)));
    assert!(v
        .get("taken")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("already registered"));
    assert!(v.get("missing").unwrap().as_str().is_some());
    assert_eq!(v.get("unreg"), Some(&Value::Bool(true)));
    assert!(v.get("unreg_again").unwrap().as_str().is_some());
    assert!(v.get("bad_name").unwrap().as_str().is_some());
    assert_eq!(v.get("opts"), Some(&Value::Bool(true)));
    assert_eq!(v.get("trap"), Some(&Value::Bool(true)));
    assert!(v
        .get("bad_opt")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("unknown option"));
    assert!(v
        .get("bad_type")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("boolean"));
    assert!(v.get("not_table").unwrap().as_str().is_some());
    assert_eq!(
        v.get("consts"),
        Some(&s("pid.exit,pid.link.down,pid.cancel"))
    );
    assert_eq!(v.get("inbox_same"), Some(&Value::Bool(true)));
    assert_eq!(v.get("events_same"), Some(&Value::Bool(true)));
    // Names are released when the owner exits.
    assert!(node.lookup("lua.named").is_none());
}
