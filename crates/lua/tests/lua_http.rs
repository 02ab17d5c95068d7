//! `function.lua` entries: the `http` module, calls, errors, timeouts and concurrency.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use wsrelay_lua::{EngineConfig, FunctionSpec, HttpRequest, LuaEngine, LuaError};
use wsrelay_process::Value;

fn function(engine: &LuaEngine, id: &str, source: &str) -> wsrelay_lua::LuaFunction {
    engine
        .function(
            id,
            FunctionSpec {
                source: source.to_owned(),
                method: "handler".to_owned(),
                modules: vec!["http".into(), "json".into(), "time".into()],
            },
        )
        .unwrap()
}

fn request() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/users/42".into(),
        query: "a=1&b=x+y&c=%E2%9C%93".into(),
        headers: vec![("Content-Type".into(), "text/plain".into())],
        params: vec![("id".into(), "42".into())],
        body: Bytes::from_static(b"payload\0bin"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_accessors_and_response_writers() {
    let (_node, engine) = setup();
    let f = function(
        &engine,
        "app:echo",
        r#"
        local http = require("http")
        local function handler()
            local req, res = http.request(), http.response()
            res:set_status(http.STATUS.CREATED)
            res:set_header("X-Method", req:method())
            res:header("X-Path", req:path())
            res:set_header("X-Q", (req:query("b") or "") .. "|" .. (req:query("c") or "") .. "|" .. tostring(req:query("zz")))
            res:set_header("X-Param", req:param("id"))
            res:set_header("X-CT", req:header("content-type"))
            res:write("len=" .. #req:body() .. ";")
            res:write_json({ ok = true })
            local bad, err = res:set_status("x")
            local bad2, err2 = res:set_header("Bad Name", "v")
            res:set_header("X-Errors", tostring(bad == nil and err ~= nil and bad2 == nil and err2 ~= nil))
        end
        return { handler = handler }
        "#,
    );
    let res = f.call_http(request()).await.unwrap();
    assert_eq!(res.status, 201);
    assert_eq!(res.header("x-method"), Some("POST"));
    assert_eq!(res.header("X-Path"), Some("/users/42"));
    assert_eq!(res.header("X-Q"), Some("x y|✓|nil"));
    assert_eq!(res.header("X-Param"), Some("42"));
    assert_eq!(res.header("X-CT"), Some("text/plain"));
    assert_eq!(res.header("Content-Type"), Some("application/json"));
    assert_eq!(res.header("X-Errors"), Some("true"));
    assert_eq!(&res.body[..], b"len=11;{\"ok\":true}");
    assert!(res.body_written);
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_errors_missing_method_and_syntax() {
    let (_node, engine) = setup();
    let f = function(
        &engine,
        "app:boom",
        "return { handler = function() error('kaput') end }",
    );
    match f.call_http(request()).await {
        Err(LuaError::Runtime { entry, message }) => {
            assert_eq!(entry, "app:boom");
            assert!(
                message.contains("kaput") && message.contains("stack traceback"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let f = function(&engine, "app.ws:handler", "return { other = 1 }");
    let err = f.call_http(request()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "app.ws:handler: method \"handler\" not found in the table returned by the chunk"
    );
    let err = engine
        .function(
            "app:bad",
            FunctionSpec {
                source: "local x = = 1".into(),
                ..FunctionSpec::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, LuaError::Syntax { .. }));
    assert!(err.to_string().contains("app:bad:1:"), "{err}");
    assert!(LuaEngine::check_source("c", "return 1").is_ok());
    assert!(LuaEngine::check_source("c", "\n\nfunction (")
        .unwrap_err()
        .starts_with("c:3:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_outside_a_handler_and_plain_calls() {
    let (_node, engine) = setup();
    let v = eval(
        &engine,
        "local http = require('http') local r, e = http.request() return { r == nil, e }",
    )
    .await;
    assert_eq!(v, array![true, "not running in an HTTP handler"]);
    let f = function(
        &engine,
        "app:add",
        "return { handler = function(a, b) return a + b end }",
    );
    assert_eq!(
        f.call(vec![Value::Int(2), Value::Int(3)]).await.unwrap(),
        Value::Int(5)
    );
}

/// A handler that waits does not hold up its worker: twenty calls on one worker are all
/// inside the handler at once, each waiting until all twenty have arrived. Calls run one
/// after another would never see that: the first would wait until its `call_timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn slow_handlers_run_concurrently() {
    const CALLS: i64 = 20;
    let (_node, engine) = setup_with(EngineConfig {
        workers: 1,
        ..EngineConfig::default()
    });
    engine.register_memory_store("app:arrived", 4).unwrap();
    let slow = engine
        .function(
            "app:slow",
            FunctionSpec {
                source: format!(
                    r#"local time = require("time")
                    local store = require("store")
                    return {{ handler = function()
                        local arrived = assert(store.get("app:arrived"))
                        -- One worker: nothing else runs between the read and the write.
                        assert(arrived:set("n", (arrived:get("n") or 0) + 1))
                        while arrived:get("n") < {CALLS} do assert(time.sleep("5ms")) end
                    end }}"#
                ),
                method: "handler".to_owned(),
                modules: vec!["time".into(), "store".into()],
            },
        )
        .unwrap();
    let calls: Vec<_> = (0..CALLS).map(|_| slow.call_http(request())).collect();
    for c in calls {
        c.await.expect("every call saw all the others arrive");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_never_yields_times_out() {
    let (_node, engine) = setup_with(EngineConfig {
        workers: 1,
        call_timeout: Duration::from_millis(500),
        ..EngineConfig::default()
    });
    let spin = function(
        &engine,
        "app:spin",
        "return { handler = function() while true do end end }",
    );
    let err = spin.call_http(request()).await.unwrap_err();
    assert!(matches!(err, LuaError::Timeout { .. }), "{err:?}");
}
