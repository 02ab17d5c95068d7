//! Library calls that run inside C (where the instruction hook never fires) are bounded: each
//! either finishes quickly, fails quickly, or runs as preemptible Lua code so the other
//! processes of its worker keep running.

use std::time::{Duration, Instant};

use crate::support::*;
use mlua::Lua;
use wsrelay_process::Value;

/// One worker, so the snippet and the echo share a thread.
fn one_worker() -> (wsrelay_process::Node, wsrelay_lua::LuaEngine) {
    one_worker_with_budget(None)
}

/// Runs `body` as a process on a one-worker engine and checks that an echo process on the
/// same worker answers while it runs; then stops it.
async fn worker_keeps_answering_while(body: &str) {
    let (node, engine) = one_worker();
    let source = format!("return function()\n{body}\nend");
    let hog = register(&engine, &source, "", &[]);
    let echo = register(&engine, ECHO, "main", &[]);
    let (me, _g) = rust_process(&node);
    let hog = spawn_monitored(&me, &hog, vec![]);
    let echo = spawn_monitored(&me, &echo, vec![]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..5 {
        me.send(&echo, "ping", i).unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), me.recv())
            .await
            .unwrap_or_else(|_| panic!("the worker is stuck in: {body}"));
        assert_eq!(reply.payload(), &Value::Int(i));
    }
    let _ = node.terminate(&hog);
}

/// Runs `body` in a fresh process and returns its exit, failing if it takes over 10 s (a hang
/// detector; the aim is milliseconds).
async fn finishes(body: &str) -> wsrelay_process::ExitResult {
    let (_node, engine) = one_worker();
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(10), run_lua(&engine, body))
        .await
        .unwrap_or_else(|_| panic!("did not finish: {body}"));
    eprintln!("{body}: {:?} in {:?}", exit.error_text(), started.elapsed());
    exit
}

#[tokio::test(flavor = "multi_thread")]
async fn string_rep_of_nothing_returns_at_once() {
    let exit = finishes(
        r#"return { #string.rep("", math.maxinteger), #("").rep("", 1 << 62, ""), #string.rep("ab", 3, "") }"#,
    )
    .await;
    assert_eq!(exit.value, array![0, 0, 6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_strings_fail_at_allocation_not_after_filling_them() {
    // 900 MiB is under the worker limit (1 GiB) but over the per-process limit (64 MiB): the
    // allocation is refused before C writes a byte.
    for body in [
        r#"return #string.rep("x", 900 << 20)"#,
        r#"return #string.pack("c1000000000", "")"#,
        r#"return #string.rep("x", 40 << 20, "y")"#,
    ] {
        let exit = finishes(body).await;
        let error = exit.error_text().unwrap_or_default().to_owned();
        assert!(error.contains("not enough memory"), "{body}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn setmetatable_refuses_finalizers() {
    // A __gc metamethod runs inside the collector with hooks disabled: an endless loop there
    // would hold the worker forever.
    let exit = finishes(
        r#"
        local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
        local plain = setmetatable({}, { __index = { x = 1 } })
        return { ok, err, plain.x }
        "#,
    )
    .await;
    let Value::Array(items) = exit.value else {
        panic!("{exit:?}")
    };
    assert_eq!(items[0], Value::Bool(false));
    assert!(
        items[1].as_str().unwrap().contains("__gc"),
        "{:?}",
        items[1]
    );
    assert_eq!(items[2], Value::Int(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn table_move_over_a_huge_range_is_preemptible() {
    worker_keeps_answering_while("table.move({}, 1, 1 << 50, 1)").await;
}

/// A table whose length and elements come from C functions: `#t` is huge and every read and
/// write is a C call, so a C loop over it never meets the hook.
const SYNTHETIC: &str = r#"
local huge = setmetatable({}, {
    __len = function() return (1 << 31) - 2 end,
    __index = rawlen,
    __newindex = rawlen,
})
local empty = setmetatable({}, { __index = table.concat })
"#;

#[tokio::test(flavor = "multi_thread")]
async fn table_functions_over_synthetic_tables_are_preemptible() {
    for call in [
        "table.insert(huge, 1, 'x')",
        "table.remove(huge, 1)",
        "table.sort(huge)",
        "table.concat(empty, '', 1, 1 << 40)",
        "table.unpack(empty, 1, 1 << 40)",
    ] {
        worker_keeps_answering_while(&format!("{SYNTHETIC}\n{call}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn table_functions_keep_their_results_on_tables_with_metatables() {
    let exit = finishes(
        r#"
        local log = {}
        local proxy = setmetatable({}, {
            __index = function(_, k) return rawget(log, k) end,
            __newindex = function(_, k, v) rawset(log, k, v) end,
            __len = function() return #log end,
        })
        table.insert(proxy, "b")
        table.insert(proxy, 1, "a")
        table.insert(proxy, "c")
        local removed = table.remove(proxy, 2)
        table.insert(proxy, 2, "z")
        table.sort(proxy)
        local joined = table.concat(proxy, ",")
        local moved = table.move(proxy, 1, 3, 2, {})
        local ok, err = pcall(table.concat, setmetatable({}, { __index = function() return {} end }), "", 1, 2)
        return { removed, joined, moved[2], moved[4], ok, err }
        "#,
    )
    .await;
    assert_eq!(
        exit.value,
        array![
            "b",
            "a,c,z",
            "a",
            "z",
            false,
            "invalid value (table) at index 1 in table for 'concat'"
        ]
    );
}

/// Calls of the guarded functions, each returning a line: the results or the error.
const GUARDED_CALLS: &[&str] = &[
    "string.rep('ab', 3, ',')",
    "string.rep('', 5)",
    "string.rep('', 5, '-')",
    "string.rep('x', 0)",
    "string.rep('x', -1)",
    "string.rep(12, 2)",
    "string.rep('', 2.5)",
    "string.rep('', 'x')",
    "string.rep('', 3, 7)",
    "table.insert(mt({1, 2, 3}), 2, 'x')",
    "table.insert(mt({1, 2, 3}), 'x')",
    "table.insert(mt({1, 2, 3}), 5, 'x')",
    "table.insert(mt({1, 2, 3}), 0, 'x')",
    "table.insert(mt({1, 2, 3}), 1.5, 'x')",
    "table.insert(mt({1, 2, 3}), 'p', 'x')",
    "table.insert(mt({1, 2, 3}), 1, 2, 3)",
    "table.remove(mt({1, 2, 3}))",
    "table.remove(mt({1, 2, 3}), 1)",
    "table.remove(mt({1, 2, 3}), 4)",
    "table.remove(mt({1, 2, 3}), 5)",
    "table.remove(mt({}), 0)",
    "table.remove(mt({}))",
    "table.move(mt({1, 2, 3}), 1, 3, 2)",
    "table.move(mt({1, 2, 3}), 2, 3, 1)",
    "table.move(mt({1, 2, 3}), 1, 3, 3, mt({9}))",
    "table.move({1, 2, 3}, 1, 100000, 2)",
    "table.move({1, 2, 3}, 1, math.maxinteger, 2)",
    "table.move({1, 2, 3}, -1, math.maxinteger, 2)",
    "table.move({1, 2, 3}, 3, 1, 2)",
    "table.concat(mt({1, 'a', 2.5}), '-')",
    "table.concat(mt({1, 'a', 2.5}), '-', 2)",
    "table.concat(mt({1, 'a', 2.5}), '-', 2, 5)",
    "table.concat(mt({1, 'a', 2.5}), 7, 1, 2)",
    "table.concat(mt({1, 'a', 2.5}), {})",
    "table.concat(mt({1, {}, 2.5}))",
    "table.concat(mt({}), 'x', 3, 1)",
    "table.sort(mt({3, 1, 2}))",
    "table.sort(mt({3, 1, 2}), function(a, b) return a > b end)",
    "table.sort(mt({3, 1, 2}), 5)",
    "table.sort(mt({3, 'a', 2}))",
];

/// The calls above run with C Lua's functions and with the engine's guarded ones, on tables
/// with a metatable (the Lua versions) and on plain ones (C); the results and error texts
/// match. Error positions are cut: an error raised by a C function under a guard carries the
/// guard's position where C Lua gives the caller's (documented in the bounds module).
#[tokio::test(flavor = "multi_thread")]
async fn guarded_functions_give_the_results_and_errors_of_the_c_library() {
    let body = |plain: bool| {
        let mut body = format!(
            "local function mt(t) return {} end\nlocal out = {{}}\n",
            if plain {
                "t"
            } else {
                "setmetatable(t, { __index = function() end })"
            }
        );
        body.push_str(
            "local function cells(v) local p = {} for k = 1, 6 do p[k] = tostring(rawget(v, k)) end return table.concat(p, ',') end\n",
        );
        body.push_str(
            "local function show(ok, ...) local r = { tostring(ok) } for i = 1, select('#', ...) do local v = select(i, ...) r[#r + 1] = type(v) == 'table' and cells(v) or tostring(v) end return (table.concat(r, ' '):gsub('wsrelay%-lua bounds:%d+: ', ''):gsub('^(%a+ )%S-:%d+: ', '%1')) end\n",
        );
        for call in GUARDED_CALLS {
            body.push_str(&format!(
                "out[#out + 1] = show(pcall(function() local t = {{ {call} }} return table.unpack(t) end))\n"
            ));
        }
        body.push_str("return out");
        body
    };
    for plain in [false, true] {
        let source = body(plain);
        let expected: Vec<String> = {
            let lua = Lua::new();
            lua.load(format!("return (function() {source} end)()"))
                .set_name("=test")
                .eval::<mlua::Table>()
                .unwrap()
                .sequence_values::<String>()
                .map(Result::unwrap)
                .collect()
        };
        let (_node, engine) = one_worker();
        let got = run_lua(&engine, &source).await;
        let Value::Array(lines) = got.value else {
            panic!("{got:?}")
        };
        for (i, (line, want)) in lines.iter().zip(&expected).enumerate() {
            assert_eq!(line.as_str().unwrap(), want, "{}", GUARDED_CALLS[i]);
        }
        assert_eq!(lines.len(), expected.len());
    }
}

/// The heap the engine reports (`LuaStats::heap_bytes`, the `wsrelay_lua_heap_bytes` gauge)
/// follows what Lua code holds: it grows by a process's data and falls once the process is
/// gone and the quiet worker has collected. This binary runs under mimalloc, as `wsrelay`
/// does, so the count is the one of the states' direct mimalloc allocator.
#[tokio::test(flavor = "multi_thread")]
async fn the_reported_lua_heap_follows_what_processes_hold() {
    let (node, engine) = one_worker();
    let (me, _guard) = rust_process(&node);
    assert_eq!(run_lua(&engine, "return 1").await.error_text(), None);
    let before = engine.stats().heap_bytes;
    assert!(before > 100_000, "a state with its libraries: {before} B");
    let entry = register(
        &engine,
        r#"
local function main(owner)
    local keep = {}
    for i = 1, 4000 do keep[i] = string.rep("x", 1000) .. i end
    process.send(owner, "ready", #keep)
    process.inbox():receive()
    return #keep
end
return { main = main }
"#,
        "main",
        &["process"],
    );
    let pid = spawn_monitored(&me, &entry, vec![s(me.pid().as_str())]);
    assert_eq!(recv(&me).await.topic(), "ready");
    let grown = || engine.stats().heap_bytes >= before + 4_000_000;
    assert!(
        eventually(WAIT, grown).await,
        "4,000 strings of 1 KB held: {} B, {before} B before",
        engine.stats().heap_bytes
    );
    me.send(&pid, "go", Value::Null).unwrap();
    assert_eq!(exit_of(&me, &pid).await.error_text(), None);
    let freed = || engine.stats().heap_bytes < before + 1_000_000;
    assert!(
        eventually(WAIT, freed).await,
        "after the exit and a collection: {} B, {before} B before",
        engine.stats().heap_bytes
    );
}
