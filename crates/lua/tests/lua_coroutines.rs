//! Coroutines of the Lua code (`coroutine.wrap/resume`) are preempted like the process itself,
//! wait on blocking calls for the whole process, and keep Lua 5.4's semantics.

use std::time::{Duration, Instant};

use crate::support::*;
use mlua::Lua;
use wsrelay_lua::EngineConfig;
use wsrelay_process::Value;

/// 1.5 s of running inside `coroutine.wrap`, with the default CPU budget (1 s).
const LONG_LOOP_IN_A_COROUTINE: &str = r#"return function()
    local time = require("time")
    local work = coroutine.wrap(function()
        local t0 = time.now():unix_milli()
        local n = 0
        while time.now():unix_milli() - t0 < 1500 do n = n + 1 end
        coroutine.yield(n > 0)
        return "done"
    end)
    return { work(), work() }
end"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_long_loop_inside_a_coroutine_is_preempted_not_killed() {
    // One worker, default CPU budget: before, the loop ran into "cpu budget exceeded" and held
    // the worker for the whole second.
    let (node, engine) = one_worker();
    let long = register(&engine, LONG_LOOP_IN_A_COROUTINE, "", &["time"]);
    let echo = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let started = Instant::now();
    let long = spawn_monitored(&me, &long, vec![]);
    let echo = spawn_monitored(&me, &echo, vec![]);
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(1200) {
        let sent = Instant::now();
        me.send(&echo, "ping", answered).unwrap();
        assert_eq!(recv(&me).await.payload(), &Value::Int(answered));
        slowest = slowest.max(sent.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = tokio::time::timeout(Duration::from_secs(30), exit_of(&me, &long))
        .await
        .expect("the coroutine finishes");
    assert!(exit.error.is_none(), "{exit:?}");
    assert_eq!(
        exit.value,
        Value::Array(vec![Value::Bool(true), Value::from("done")])
    );
    eprintln!(
        "coroutine loop took {:?}; {answered} echoes meanwhile, slowest {slowest:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_calls_inside_a_coroutine_wait_for_the_whole_process() {
    let (node, engine) = setup();
    let entry = register(
        &engine,
        r#"return function(me)
            local time = require("time")
            local got = coroutine.wrap(function()
                assert(time.sleep("10ms"))
                process.send(me, "waiting", true)
                local msg = process.inbox():receive()
                coroutine.yield(msg:topic())
                return "after"
            end)
            local first = got()
            local inner = coroutine.create(function() return channel.new(1) ~= nil, got() end)
            local ok, made, second = coroutine.resume(inner)
            return { first, ok, made, second }
        end"#,
        "",
        &["time"],
    );
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &entry, vec![Value::from(me.pid().as_str())]);
    assert_eq!(recv(&me).await.topic(), "waiting");
    me.send(&pid, "hello", true).unwrap();
    let exit = exit_of(&me, &pid).await;
    assert!(exit.error.is_none(), "{exit:?}");
    assert_eq!(
        exit.value,
        Value::Array(vec![
            Value::from("hello"),
            Value::Bool(true),
            Value::Bool(true),
            Value::from("after"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_spinning_inside_a_coroutine_can_be_terminated() {
    let (node, engine) = one_worker_with_budget(None);
    let entry = register(
        &engine,
        r#"return function()
            coroutine.wrap(function()
                while true do pcall(function() while true do end end) end
            end)()
        end"#,
        "",
        &[],
    );
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &entry, vec![]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.terminate(&pid).unwrap();
    assert_eq!(exit_of(&me, &pid).await.error_text(), Some("terminated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coroutine_stuck_where_it_cannot_yield_still_meets_the_cpu_budget() {
    let (node, engine) = one_worker_with_budget(Some(Duration::from_millis(200)));
    let entry = register(
        &engine,
        r#"return function()
            local f = coroutine.wrap(function()
                while true do
                    pcall(tostring, setmetatable({}, { __tostring = function() while true do end end }))
                end
            end)
            while true do pcall(f) end
        end"#,
        "",
        &[],
    );
    let exit = run_entry(&node, &entry, vec![]).await;
    assert!(
        exit.error_text()
            .unwrap_or_default()
            .contains("cpu budget exceeded"),
        "{exit:?}"
    );
}

/// Coroutine behaviour a program can see, as one line per step; with a loop long enough to
/// be preempted inside a coroutine (which must not be visible). (`coroutine.isyieldable()`
/// outside any coroutine of the program is true in a process, whose code runs in a
/// coroutine, and false in a plain Lua state: not compared.)
const SEMANTICS: &str = r#"
local out = {}
local function add(...) local t = table.pack(...) for i = 1, t.n do t[i] = tostring(t[i]) end out[#out + 1] = table.concat(t, ",") end
local function spin() local x = 0 for i = 1, 3000000 do x = x + i end return x end
local co = coroutine.create(function(a, b)
    add("start", a, b, coroutine.isyieldable(), coroutine.status(coroutine.running()))
    local c, d = coroutine.yield(a + b, "y")
    spin()
    local e = coroutine.yield()
    local ok, err = pcall(function() coroutine.yield("in pcall") error("boom") end)
    add("pcall", ok, err)
    return c, d, e, spin()
end)
add(coroutine.status(co))
add(coroutine.resume(co, 1, 2))
add(coroutine.resume(co, "c", "d"))
add(coroutine.resume(co))
add(coroutine.resume(co, "e"))
add(coroutine.status(co))
add(coroutine.resume(co))
local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
add(gen(), gen(), gen())
local bad = coroutine.wrap(function() spin() error("wrapped") end)
add(pcall(bad))
add(pcall(bad))
local tab = coroutine.wrap(function() error({ code = 7 }) end)
local ok, e = pcall(tab)
add(ok, type(e), e.code)
local closing = coroutine.create(function() coroutine.yield(1) end)
coroutine.resume(closing)
add(coroutine.close(closing), coroutine.status(closing))
add(pcall(coroutine.resume, 5))
add(pcall(coroutine.wrap))
local nested = coroutine.wrap(function()
    local inner = coroutine.wrap(function() coroutine.yield(spin()) coroutine.yield("i2") end)
    coroutine.yield(inner())
    coroutine.yield(inner())
end)
add(nested(), nested())
return table.concat(out, "\n")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn coroutine_semantics_are_lua_54_with_preemption_inside() {
    let expected: String = Lua::new()
        .load(SEMANTICS)
        .set_name("=test")
        .call(())
        .unwrap();
    // Preempt often, so that every spin is preempted inside its coroutine.
    let (_node, engine) = setup_with(EngineConfig {
        workers: 1,
        time_slice: Duration::from_micros(100),
        hook_interval: 1000,
        ..EngineConfig::default()
    });
    let f = named_function(
        &engine,
        "test",
        &format!("return function() {SEMANTICS} end"),
        &[],
    );
    let got = f.call(vec![]).await.unwrap();
    let got = got.as_str().unwrap();
    for (g, e) in got.lines().zip(expected.lines()) {
        assert_eq!(g, e);
    }
    assert_eq!(got.lines().count(), expected.lines().count());
}
