//! Hot reload: a replaced `function.lua` entry runs its new code on the next call, a
//! re-registered `process.lua` entry on the next spawn; what runs keeps its code.

use crate::support::*;
use wsrelay_lua::{FunctionSpec, LuaError, ProcessSpec};
use wsrelay_process::Value;

fn version(text: &str) -> String {
    format!("return function() return '{text}' end")
}

fn spec(source: String) -> FunctionSpec {
    FunctionSpec {
        source,
        method: String::new(),
        modules: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_function_runs_its_new_code_in_every_clone() {
    let (_node, engine) = setup();
    let f = function(&engine, &version("v1"), &[]);
    let clone = f.clone();
    // Both workers compile v1 (calls go round-robin), so the replacement must reach them.
    for _ in 0..4 {
        assert_eq!(f.call(vec![]).await.unwrap(), Value::from("v1"));
    }
    f.replace(spec(version("v2"))).unwrap();
    for _ in 0..4 {
        assert_eq!(clone.call(vec![]).await.unwrap(), Value::from("v2"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_that_does_not_compile_keeps_the_code_in_use() {
    let (_node, engine) = setup();
    let f = named_function(&engine, "app:handler", &version("v1"), &[]);
    let error = f
        .replace(spec("return function() return 'v2' en".to_owned()))
        .unwrap_err();
    let LuaError::Syntax { chunk, message } = &error else {
        panic!("not a syntax error: {error:?}");
    };
    assert_eq!(chunk, "app:handler");
    assert!(message.starts_with("app:handler:1:"), "{message}");
    assert_eq!(f.call(vec![]).await.unwrap(), Value::from("v1"));
}

/// Answers every message with its version, until told to stop.
fn versioned_process(text: &str) -> ProcessSpec {
    let source = format!(
        r#"
        local function main()
            local inbox = process.inbox()
            while true do
                local msg = inbox:receive()
                process.send(msg:from(), "version", "{text}")
            end
        end
        return {{ main = main }}
        "#
    );
    ProcessSpec {
        source,
        method: "main".into(),
        modules: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_process_keeps_its_code_and_a_new_one_gets_the_new() {
    let (node, engine) = setup();
    let (me, _guard) = rust_process(&node);
    engine
        .register_process("app:versioned", versioned_process("old"))
        .unwrap();
    let old = spawn_monitored(&me, "app:versioned", vec![]);
    me.send(&old, "ping", ()).unwrap();
    assert_eq!(recv(&me).await.payload(), &Value::from("old"));

    engine
        .register_process("app:versioned", versioned_process("new"))
        .unwrap();
    let new = spawn_monitored(&me, "app:versioned", vec![]);
    for pid in [&old, &new] {
        me.send(pid, "ping", ()).unwrap();
    }
    for _ in 0..2 {
        let answer = recv(&me).await;
        let expected = if answer.from() == Some(&old) {
            "old"
        } else {
            "new"
        };
        assert_eq!(
            answer.payload(),
            &Value::from(expected),
            "from {:?}",
            answer.from()
        );
    }
}
