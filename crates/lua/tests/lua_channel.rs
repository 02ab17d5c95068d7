//! The `channel` and `time` modules, and `channel.select` over inbox, events and timers.

use std::time::{Duration, Instant};

use crate::support::*;
use wsrelay_process::Value;

#[tokio::test(flavor = "multi_thread")]
async fn buffered_channel_send_receive_close() {
    let v = eval_fresh(
        r#"
        local ch = channel.new(3)
        ch:send(1) ch:send("two") ch:send({3})
        local a, ok1 = ch:receive()
        local b = ch:receive()
        local c = ch:receive()
        ch:send(4)
        ch:close()
        local d, ok4 = ch:receive()
        local e, ok5 = ch:receive()
        local sent, err = pcall(ch.send, ch, 5)
        local bad, berr = channel.new(-1)
        return { a, ok1, b, c[1], d, ok4, e == nil, ok5, sent, bad == nil, berr ~= nil }
        "#,
    )
    .await;
    assert_eq!(
        v,
        array![1, true, "two", 3, 4, true, true, false, false, true, true]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn select_over_channels_and_case_send() {
    let v = eval_fresh(
        r#"
        local time = require("time")
        local ch1, ch2 = channel.new(1), channel.new(1)
        ch2:send("v2")
        local r = channel.select{ ch1:case_receive(), ch2:case_receive() }
        local s = channel.select{ ch1:case_send("sent") }
        local got = ch1:receive()
        local full = channel.new(0)
        local t = channel.select{ full:case_send(1), time.after("20ms"):case_receive() }
        local ok, err = pcall(channel.select, { 1 })
        return { r.channel == ch2, r.value, r.ok, s.ok, got, t.channel ~= full, ok }
        "#,
    )
    .await;
    assert_eq!(v, array![true, "v2", true, true, "sent", true, false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn select_over_inbox_events_and_timeout() {
    let (node, engine) = setup();
    let (me, _g) = rust_process(&node);
    let entry = register(
        &engine,
        r#"return function(me)
            local time = require("time")
            local inbox, events = process.inbox(), process.events()
            local seen = {}
            process.send(me, "ready", true)
            for i = 1, 3 do
                local r = channel.select{ inbox:case_receive(), events:case_receive(), time.after("300ms"):case_receive() }
                if r.channel == inbox then seen[#seen + 1] = "inbox:" .. r.value:topic()
                elseif r.channel == events then seen[#seen + 1] = "event:" .. r.value.kind
                else seen[#seen + 1] = "timeout" end
            end
            return seen
        end"#,
        "",
        &["time"],
    );
    let pid = spawn_monitored(&me, &entry, vec![s(me.pid().as_str())]);
    assert_eq!(recv(&me).await.topic(), "ready");
    me.send(&pid, "hello", 1).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    me.cancel(&pid, "stop").unwrap();
    let exit = exit_of(&me, &pid).await;
    assert_eq!(
        exit.value,
        array!["inbox:hello", "event:pid.cancel", "timeout"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unbuffered_channel_between_coroutine_free_processes_times_out_in_select() {
    let v = eval_fresh(
        r#"
        local time = require("time")
        local ch = channel.new(0)
        local r = channel.select{ ch:case_receive(), time.after(10):case_receive() }
        return { r.channel ~= ch, r.ok, type(r.value) }
        "#,
    )
    .await;
    assert_eq!(v, array![true, true, "userdata"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_sleep_now_and_bad_durations() {
    let (_node, engine) = setup();
    let started = Instant::now();
    let v = eval(
        &engine,
        r#"
        local time = require("time")
        local t0 = time.now()
        assert(time.sleep("50ms"))
        local t1 = time.now()
        local waited = t1:unix_milli() - t0:unix_milli()
        local ch = time.after(10)
        local v, ok = ch:receive()
        local s1, e1 = time.sleep("soon")
        local a1, e2 = time.after({})
        return { waited >= 45, ok, type(v:unix()), s1 == nil, e1, a1 == nil, e2 ~= nil, t0:unix_nano() > 0 }
        "#,
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    let Value::Array(items) = v else { panic!() };
    assert_eq!(items[0], Value::Bool(true));
    assert_eq!(items[1], Value::Bool(true));
    assert_eq!(items[2], s("number"));
    assert_eq!(items[3], Value::Bool(true));
    assert!(items[4].as_str().unwrap().contains("invalid duration"));
    assert_eq!(items[5], Value::Bool(true));
    assert_eq!(items[6], Value::Bool(true));
    assert_eq!(items[7], Value::Bool(true));
}

/// Fifty processes on one worker sleep at once: each counts itself in, then sleeps until all
/// fifty are in. A sleep that held the worker would leave the first one waiting for ever.
#[tokio::test(flavor = "multi_thread")]
async fn sleeping_processes_do_not_block_each_other() {
    const PROCESSES: i64 = 50;
    let (node, engine) = one_worker();
    engine.register_memory_store("test:in", 4).unwrap();
    let entry = register(
        &engine,
        &format!(
            r#"return function()
                local time = require("time")
                local count = assert(require("store").get("test:in"))
                -- One worker: nothing else runs between the read and the write.
                assert(count:set("n", (count:get("n") or 0) + 1))
                while count:get("n") < {PROCESSES} do assert(time.sleep("20ms")) end
                return 1
            end"#
        ),
        "",
        &["time", "store"],
    );
    let (me, _g) = rust_process(&node);
    let pids: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_monitored(&me, &entry, vec![]))
        .collect();
    for _ in &pids {
        match next_event(&me).await {
            wsrelay_process::Event::Exit { from, result } => {
                assert!(pids.contains(&from));
                assert_eq!(result.value, Value::Int(1), "{result:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn time_durations_use_the_config_grammar_and_numbers_are_milliseconds() {
    let v = eval_fresh(
        r#"
        local time = require("time")
        local ok0 = time.sleep("0s")
        local okn = time.sleep(0)
        local bad, err = time.sleep("0")
        local ok2 = time.sleep("1.5ms")
        return { ok0, okn, bad == nil, err, ok2 }
        "#,
    )
    .await;
    let Value::Array(items) = v else { panic!() };
    assert_eq!(items[0], Value::Bool(true));
    assert_eq!(items[1], Value::Bool(true));
    assert_eq!(items[2], Value::Bool(true));
    assert!(
        items[3].as_str().unwrap().contains("missing unit"),
        "{:?}",
        items[3]
    );
    assert_eq!(items[4], Value::Bool(true));
}
