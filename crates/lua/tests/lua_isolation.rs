//! Isolation and safety: runaway loops, errors, memory, globals, terminate, links.

use std::time::Duration;

use crate::support::*;
use wsrelay_lua::EngineConfig;
use wsrelay_process::{Event, ExitResult, Pid, Value};

#[tokio::test(flavor = "multi_thread")]
async fn runaway_loop_is_preempted_and_others_keep_running() {
    // One worker: the loop and the echo share a Lua state and a thread.
    let (node, engine) = one_worker_with_budget(None);
    let spin = register(&engine, "return function() while true do end end", "", &[]);
    let echo = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let spinner = spawn_monitored(&me, &spin, vec![]);
    let echo = spawn_monitored(&me, &echo, vec![]);
    for i in 0..20 {
        me.send(&echo, "ping", i).unwrap();
        assert_eq!(recv(&me).await.payload(), &Value::Int(i));
    }
    assert!(node.is_alive(&spinner), "the loop is preempted, not killed");
    // Terminate stops it while it runs.
    node.terminate(&spinner).unwrap();
    assert_eq!(
        exit_of(&me, &spinner).await.error_text(),
        Some("terminated")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loop_that_cannot_yield_exceeds_the_cpu_budget() {
    let (node, engine) = one_worker_with_budget(Some(Duration::from_millis(200)));
    // A comparator runs inside table.sort (a C function): no yield is possible there.
    let stuck = register(
        &engine,
        "return function() table.sort({3, 2, 1}, function(a, b) while true do end end) end",
        "",
        &[],
    );
    let echo = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &stuck, vec![]);
    let exit = exit_of(&me, &pid).await;
    assert!(
        exit.error_text().unwrap().contains("cpu budget exceeded"),
        "{exit:?}"
    );
    let echo = spawn_monitored(&me, &echo, vec![]);
    me.send(&echo, "ping", 1).unwrap();
    assert_eq!(recv(&me).await.payload(), &Value::Int(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn pcall_cannot_swallow_a_budget_failure() {
    let (node, engine) = one_worker_with_budget(Some(Duration::from_millis(100)));
    let stuck = register(
        &engine,
        r#"return function()
            while true do
                pcall(table.sort, {3, 2, 1}, function(a, b) while true do end end)
            end
        end"#,
        "",
        &[],
    );
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &stuck, vec![]);
    let exit = exit_of(&me, &pid).await;
    assert!(exit.error_text().unwrap().contains("cpu budget exceeded"));
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn lua_error_exits_with_message_and_traceback() {
    let (_node, engine) = setup();
    let exit = run_lua(
        &engine,
        r#"
        local function inner() error("boom") end
        inner()
        "#,
    )
    .await;
    let text = exit.error_text().unwrap();
    assert!(text.contains("boom"), "{text}");
    assert!(text.contains("stack traceback"), "{text}");
    assert!(
        text.contains("in local 'inner'") || text.contains("inner"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_method_names_the_entry() {
    let (node, engine) = setup();
    let entry = register(&engine, "return { other = function() end }", "handler", &[]);
    let exit = run_entry(&node, &entry, vec![]).await;
    assert_eq!(
        exit.error_text().unwrap(),
        format!("{entry}: method \"handler\" not found in the table returned by the chunk")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_fails_and_others_survive() {
    // Small limits: the slow grower below fills the whole worker limit one short string at a
    // time, which at 64 MiB took 2–5 s of a debug build and more than the 10 s `exit_of`
    // waits on a loaded machine; 16 MiB is a quarter of that work and shows the same.
    let (node, engine) = setup_with(EngineConfig {
        workers: 1,
        process_memory_limit: 4 << 20,
        worker_memory_limit: 16 << 20,
        ..EngineConfig::default()
    });
    let echo = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let echo = spawn_monitored(&me, &echo, vec![]);
    // Grows slowly (under the per-slice limit) until the worker limit stops it.
    let slow = run_lua(
        &engine,
        "local t = {} while true do t[#t + 1] = string.rep('x', 64) .. #t end",
    )
    .await;
    assert!(slow.error_text().unwrap().contains("memory"), "{slow:?}");
    // Grows fast: the per-process limit stops it within one slice.
    let fast = run_lua(
        &engine,
        "local s = string.rep('x', 8 << 20) local t = {s .. 'y'} return #t",
    )
    .await;
    assert!(fast.error_text().unwrap().contains("memory"), "{fast:?}");
    me.send(&echo, "ping", 7).unwrap();
    assert_eq!(recv(&me).await.payload(), &Value::Int(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn globals_are_private_and_libraries_read_only() {
    let (node, engine) = one_worker();
    let v = eval(
        &engine,
        r#"
        shared_name = "mine"
        local errs = {}
        errs[1] = pcall(function() string.upper = nil end)
        errs[2] = pcall(function() rawset(string, "x", 1) end)
        errs[3] = pcall(function() process.send = nil end)
        errs[4] = pcall(function() setmetatable(_G, {}) end)
        errs[5] = getmetatable("") == false
        errs[6] = load == nil and io == nil and debug == nil and os.execute == nil
        errs[7] = pcall(require, "fs")
        return errs
        "#,
    )
    .await;
    assert_eq!(v, array![false, false, false, false, true, true, false]);
    // Another process on the same worker sees none of it.
    let v = eval(
        &engine,
        "return { shared_name == nil, string.upper('a'), type(process.send) }",
    )
    .await;
    assert_eq!(v, array![true, "A", "function"]);
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_not_listed_cannot_be_required() {
    let (node, engine) = setup();
    let entry = register(
        &engine,
        r#"return function()
            local ok, err = pcall(require, "json")
            local p = require("process")
            return { ok, err, p == process, channel ~= nil }
        end"#,
        "",
        &[],
    );
    let exit = run_entry(&node, &entry, vec![]).await;
    let Value::Array(items) = exit.value else {
        panic!("{exit:?}")
    };
    assert_eq!(items[0], Value::Bool(false));
    assert!(items[1].as_str().unwrap().contains("not enabled"));
    assert_eq!(items[2], Value::Bool(true));
    assert_eq!(items[3], Value::Bool(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_stops_a_blocked_process() {
    let (node, engine) = setup();
    let entry = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &entry, vec![]);
    me.send(&pid, "ping", 1).unwrap();
    recv(&me).await;
    me.terminate(&pid).unwrap();
    assert_eq!(exit_of(&me, &pid).await.error_text(), Some("terminated"));
    assert!(!node.is_alive(&pid));
}

const LINKED: &str = r#"
local function main(trap, partner)
    process.set_options({ trap_links = trap })
    assert(process.link(partner))
    process.send(partner, "linked", true)
    local ev = process.events():receive()
    return { kind = ev.kind, from = ev.from, error = ev.result.error }
end
return { main = main }
"#;

/// Runs [`LINKED`] (trapping links or not) linked to a Rust partner that then fails with
/// `crashed`; returns the Lua process's exit and the partner's PID.
async fn exit_after_linked_partner_fails(trap: bool) -> (ExitResult, Pid) {
    let (node, engine) = setup();
    let entry = register(&engine, LINKED, "main", &[]);
    let (me, _g) = rust_process(&node);
    let (partner, partner_guard) = rust_process(&node);
    let pid = spawn_monitored(
        &me,
        &entry,
        vec![Value::Bool(trap), s(partner.pid().as_str())],
    );
    assert_eq!(recv(&partner).await.topic(), "linked");
    partner_guard.exit(Err::<(), _>("crashed"));
    (exit_of(&me, &pid).await, partner.pid().clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn link_failure_stops_a_process_that_does_not_trap() {
    let (exit, _partner) = exit_after_linked_partner_fails(false).await;
    assert_eq!(exit.error_text(), Some("linked process failed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn link_failure_reaches_a_trapping_process_as_link_down() {
    let (exit, partner) = exit_after_linked_partner_fails(true).await;
    assert!(exit.error.is_none(), "{exit:?}");
    assert_eq!(exit.value.get("kind"), Some(&s("pid.link.down")));
    assert_eq!(exit.value.get("from"), Some(&s(partner.as_str())));
    assert_eq!(exit.value.get("error"), Some(&s("crashed")));
}

#[tokio::test(flavor = "multi_thread")]
async fn lua_error_propagates_over_links_to_rust() {
    let (node, engine) = setup();
    let entry = register(&engine, "return function() error('bad') end", "", &[]);
    let (me, _g) = rust_process(&node);
    me.set_trap_links(true);
    let pid = me.spawn_linked(&entry, HOST, vec![]).unwrap();
    match next_event(&me).await {
        Event::LinkDown { from, result } => {
            assert_eq!(from, pid);
            assert!(result.error_text().unwrap().contains("bad"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A busy process that never yields is sliced, and a message that comes to a neighbour on its
/// worker from another thread is handled after a slice or two of it: the preempted task waits
/// its turn behind the wakes from other threads (crates/lua/src/resume.rs). Polled
/// again at once instead, it kept the echo waiting for dozens of slices (the worker's
/// `LocalSet` looks at those wakes only every so many polls; with the turn taken out, the
/// echo did not come within `recv`'s 10 s of 20 ms slices). Counted in slices, not measured
/// in time: the busy process stops itself as soon as it sees that the echo ran, so the count
/// of preemptions is final when it exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_process_does_not_hold_back_messages_to_its_worker_neighbours() {
    let (node, engine) = setup_with(EngineConfig {
        workers: 1,
        time_slice: Duration::from_millis(20),
        cpu_budget: None,
        ..EngineConfig::default()
    });
    engine.register_memory_store("test:seen", 8).unwrap();
    // Answers every message, after writing its payload into the store as seen.
    let echo = register(
        &engine,
        r#"return function()
            local seen = require("store").get("test:seen")
            local inbox = process.inbox()
            while true do
                local msg = inbox:receive()
                local n = msg:payload():data()
                assert(seen:set("echo" .. n, true))
                process.send(msg:from(), "echo", n)
            end
        end"#,
        "",
        &["store"],
    );
    // Computes until the echo has handled message `n`, never yielding on its own.
    let busy = register(
        &engine,
        r#"return function(n)
            local seen = require("store").get("test:seen")
            while not seen:has("echo" .. n) do end
        end"#,
        "",
        &["store"],
    );
    let (me, _g) = rust_process(&node);
    let echo = spawn_monitored(&me, &echo, vec![]);
    for n in 1..=3 {
        let before = engine.stats().preemptions;
        let busy = spawn_monitored(&me, &busy, vec![Value::Int(n)]);
        // The message must arrive while the busy process has the worker: after its first
        // preemption, and it only stops once the echo has run.
        assert!(
            eventually(WAIT, || engine.stats().preemptions > before).await,
            "the busy process is never preempted"
        );
        me.send(&echo, "ping", n).unwrap();
        // Read after the send: a stall of this thread can only lower the count below.
        let sent = engine.stats().preemptions;
        assert_eq!(recv(&me).await.payload(), &Value::Int(n));
        let exit = exit_of(&me, &busy).await;
        assert!(exit.error.is_none(), "sliced, not killed: {exit:?}");
        let slices = engine.stats().preemptions - sent;
        eprintln!("message {n}: handled after {slices} slice(s) of the busy process");
        assert!(
            slices <= 3,
            "the echo waited {slices} slices of the busy process"
        );
    }
}

/// What a burst leaves behind is returned once the worker is quiet: under generational
/// collection, a table that grew old and was then dropped would otherwise stay until the heap
/// doubled, which an idle server never does.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_of_a_burst_is_collected_when_the_worker_is_quiet() {
    let (_node, engine) = one_worker();
    let v = eval(
        &engine,
        r#"local time = require("time")
        local t = {}
        for i = 1, 100000 do t[i] = { i } end
        local full = collectgarbage("count")
        t = nil
        assert(time.sleep("1500ms"))
        return { full = math.floor(full), after = math.floor(collectgarbage("count")) }"#,
    )
    .await;
    let kib = |k: &str| v.get(k).and_then(Value::as_i64).unwrap();
    let (full, after) = (kib("full"), kib("after"));
    assert!(
        after < full / 2,
        "heap {full} KiB with the table, {after} KiB after a quiet second without it"
    );
}
