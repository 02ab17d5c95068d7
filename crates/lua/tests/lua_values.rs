//! Values Lua hands to Rust are bounded (`max_value_size`): payloads, spawn arguments, return
//! values, JSON and HTTP responses; shared subtables are converted once, cycles refused; and
//! large values from Rust fail inside the Lua memory limit instead of aborting.

use std::time::Duration;

use crate::support::*;
use wsrelay_lua::{EngineConfig, HttpRequest, LuaError};
use wsrelay_process::Value;

/// One worker with a 64 KiB value budget.
fn small_values() -> (wsrelay_process::Node, wsrelay_lua::LuaEngine) {
    setup_with(EngineConfig {
        workers: 1,
        max_value_size: 64 << 10,
        ..EngineConfig::default()
    })
}

/// The snippet of the hardening issue: 2^26 table slots when expanded.
const DOUBLING: &str = "local t = {1} for i = 1, 25 do t = {t, t} end";

#[tokio::test(flavor = "multi_thread")]
async fn exponentially_shared_tables_fail_the_send_not_the_server() {
    let (_node, engine) = setup();
    let (v, me, _g) = tokio::time::timeout(
        Duration::from_secs(20),
        eval_with_probe(
            &engine,
            &format!(
                r#"local me = ...
                {DOUBLING}
                local sent, err = process.send(me, "x", t)
                local text, jerr = require("json").encode(t)
                local small = {{ 1, 2 }}
                assert(process.send(me, "shared", {{ a = small, b = small, c = {{ small }} }}))
                return {{ sent == nil, err, text == nil, jerr }}"#
            ),
        ),
    )
    .await
    .expect("the conversion is bounded");
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items[0], Value::Bool(true));
    assert!(
        items[1].as_str().unwrap().contains("value too large"),
        "{:?}",
        items[1]
    );
    assert_eq!(items[2], Value::Bool(true));
    assert!(
        items[3].as_str().unwrap().contains("value too large"),
        "{:?}",
        items[3]
    );
    // A table met twice is copied where it appears.
    let msg = recv(&me).await;
    assert_eq!(msg.topic(), "shared");
    let small = array![1, 2];
    assert_eq!(msg.payload().get("a"), Some(&small));
    assert_eq!(msg.payload().get("b"), Some(&small));
    assert_eq!(
        msg.payload().get("c"),
        Some(&Value::Array(vec![small.clone()]))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cycles_and_oversized_values_are_refused_with_nil_err() {
    let (_node, engine) = small_values();
    let (v, _me, _g) = eval_with_probe(
        &engine,
        r#"local me = ...
        local cyclic = { name = "c" } cyclic.self = cyclic
        local r = {}
        r[1] = select(2, process.send(me, "x", cyclic))
        r[2] = select(2, process.send(me, "x", string.rep("x", 70 << 10)))
        r[3] = select(2, process.spawn("test:nothing", "app:processes", string.rep("x", 70 << 10)))
        r[4] = select(2, process.send(me, "x", "fits", string.rep("y", 40 << 10), string.rep("z", 40 << 10)))
        r[5] = select(2, require("json").encode({ string.rep("x", 70 << 10) }))
        r[6] = process.send(me, "x", string.rep("x", 60 << 10))
        return r"#,
    )
    .await;
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert!(
        items[0]
            .as_str()
            .unwrap_or_default()
            .contains("contains itself"),
        "{items:?}"
    );
    for (i, item) in items[1..5].iter().enumerate() {
        assert!(
            item.as_str()
                .unwrap_or_default()
                .contains("value too large"),
            "item {}: {item:?}",
            i + 1
        );
    }
    assert_eq!(items[5], Value::Bool(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_return_value_fails_the_call() {
    let (_node, engine) = small_values();
    let f = function(
        &engine,
        &format!(
            "return function(kind) {DOUBLING} if kind == 'fn' then return print end return t end"
        ),
        &[],
    );
    match f.call(vec![]).await {
        Err(LuaError::Runtime { message, .. }) => {
            assert!(
                message.contains("return value: value too large"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A value with no payload form stays null, as before.
    assert_eq!(f.call(vec![s("fn")]).await.unwrap(), Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_responses_are_bounded_by_max_value_size() {
    let (_node, engine) = small_values();
    let f = function(
        &engine,
        r#"return function()
                    local res = require("http").response()
                    local chunk = string.rep("x", 1000)
                    local written, err = 0, nil
                    while true do
                        local ok, e = res:write(chunk)
                        if not ok then err = e break end
                        written = written + 1
                    end
                    local h, herr = res:set_header("X-Big", string.rep("h", 10000))
                    res:set_header("X-Written", tostring(written))
                    res:set_header("X-Error", err)
                    res:set_header("X-Header-Error", tostring(herr))
                end"#,
        &["http"],
    );
    let res = f.call_http(HttpRequest::default()).await.unwrap();
    let written: usize = res.header("X-Written").unwrap().parse().unwrap();
    assert_eq!(res.body.len(), written * 1000);
    assert!(res.body.len() <= 64 << 10 && res.body.len() > 60 << 10);
    assert!(res
        .header("X-Error")
        .unwrap()
        .contains("response too large"));
    assert!(res
        .header("X-Header-Error")
        .unwrap()
        .contains("response too large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_larger_than_the_process_limit_fails_in_lua_not_in_the_server() {
    let (node, engine) = setup_with(EngineConfig {
        workers: 1,
        process_memory_limit: 8 << 20,
        ..EngineConfig::default()
    });
    let entry = register(
        &engine,
        r#"return function()
            local msg = process.inbox():receive()
            local ok, err = pcall(function() return msg:payload():data() end)
            process.send(msg:from(), "result", { ok, tostring(err) })
            local echo = process.inbox():receive()
            process.send(echo:from(), "echo", echo:payload():data())
        end"#,
        "",
        &[],
    );
    let (me, _g) = rust_process(&node);
    let pid = spawn_monitored(&me, &entry, vec![]);
    me.send(&pid, "big", Value::from("x".repeat(48 << 20)))
        .unwrap();
    let result = recv(&me).await;
    let Value::Array(items) = result.payload() else {
        panic!("{result:?}")
    };
    assert_eq!(items[0], Value::Bool(false));
    assert!(items[1].as_str().unwrap().contains("memory"), "{items:?}");
    me.send(&pid, "ping", 5).unwrap();
    assert_eq!(recv(&me).await.payload(), &Value::Int(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_with_many_keys_converts_in_linear_time() {
    let (_node, engine) = setup();
    let (v, me, _g) = tokio::time::timeout(
        Duration::from_secs(20),
        eval_with_probe(
            &engine,
            r#"local me = ...
            local t = {} for i = 1, 100000 do t["k" .. i] = i end
            t[1] = "one" t["1"] = "string one"
            return process.send(me, "many", t)"#,
        ),
    )
    .await
    .expect("linear");
    assert_eq!(v, Value::Bool(true));
    let msg = recv(&me).await;
    let Value::Map(map) = msg.payload() else {
        panic!()
    };
    // Integer 1 and string "1" share the key "1": one entry.
    assert_eq!(map.len(), 100_001);
}

async fn eval_args(engine: &wsrelay_lua::LuaEngine, body: &str, args: Vec<Value>) -> Value {
    let exit = run_lua_args(engine, body, args).await;
    assert!(exit.error.is_none(), "lua failed: {:?}", exit.error);
    exit.value
}

/// Evaluates `body` given the PID of a Rust probe (`local me = ...`), to which it sends;
/// returns the value, the probe and its guard.
async fn eval_with_probe(
    engine: &wsrelay_lua::LuaEngine,
    body: &str,
) -> (Value, wsrelay_process::Context, wsrelay_process::ExitGuard) {
    let (me, guard) = rust_process(engine.node());
    let v = eval_args(engine, body, vec![s(me.pid().as_str())]).await;
    (v, me, guard)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_channels_of_a_worker_hold_a_bounded_number_of_values() {
    let (_node, engine) = setup_with(EngineConfig {
        workers: 1,
        max_channel_values: 1000,
        ..EngineConfig::default()
    });
    let v = eval_args(
        &engine,
        r#"
        local time = require("time")
        local ch = channel.new(math.maxinteger)
        local n = 0
        local ok, err = pcall(function() while true do ch:send(n) n = n + 1 end end)
        local other = channel.new(5)
        local full = channel.select{ other:case_send(1), time.after("10ms"):case_receive() }
        ch:receive()
        local sent = other:send("now fits")
        return { n, ok, tostring(err), full.channel ~= other, sent }
        "#,
        vec![],
    )
    .await;
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items[0], Value::Int(1000));
    assert_eq!(items[1], Value::Bool(false));
    assert!(
        format!("{:?}", items[2]).contains("max_channel_values"),
        "{:?}",
        items[2]
    );
    assert_eq!(items[3], Value::Bool(true));
    assert_eq!(items[4], Value::Bool(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_decode_refuses_text_over_max_value_size() {
    let (_node, engine) = small_values();
    let v = eval_args(
        &engine,
        r#"
        local json = require("json")
        local big = "[" .. string.rep("1,", 40000) .. "1]"
        local value, err = json.decode(big)
        local small = json.decode("[1, 2]")
        return { value == nil, err, #small }
        "#,
        vec![],
    )
    .await;
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items[0], Value::Bool(true));
    assert!(items[1].as_str().unwrap().contains("max_value_size"));
    assert_eq!(items[2], Value::Int(2));
}
