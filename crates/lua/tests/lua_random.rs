//! `math.random` has a generator per process and per function call: a seed set by one does
//! not make another's numbers predictable; seeded sequences and errors are Lua 5.4's.

use crate::support::*;
use mlua::Lua;
use wsrelay_process::Value;

/// Draws numbers after seeding with 42 (or without seeding when `seed` is false) and returns
/// them as one line, with the outcomes of calls that must fail.
const DRAW: &str = r#"
local seed = ...
local out = {}
if seed then out[#out + 1] = table.concat({ math.randomseed(42, 7) }, ",") end
for _ = 1, 5 do out[#out + 1] = math.random(1, 100) end
out[#out + 1] = math.random(10)
out[#out + 1] = math.random(-3, 3)
out[#out + 1] = math.random(math.mininteger, math.maxinteger)
out[#out + 1] = math.random(0)
out[#out + 1] = string.format("%.17g", math.random())
out[#out + 1] = math.random(3.0)
return table.concat(out, " ")
"#;

/// Calls that fail, each giving its error text.
const ERRORS: &str = r#"
local out = {}
local function err(...) local ok, e = pcall(...) out[#out + 1] = tostring(ok) .. ":" .. tostring(e) end
err(math.random, 1, 2, 3)
err(math.random, 2, 1)
err(math.random, 1.5)
err(math.random, "x")
err(math.random, nil)
err(math.random, 1, nil)
err(math.randomseed, 1.5)
err(math.randomseed, {})
local a, b = math.randomseed()
out[#out + 1] = math.type(a) .. math.type(b)
out[#out + 1] = math.type(math.random(0)) .. math.type(math.random())
return table.concat(out, "\n")
"#;

fn c_lua(chunk: &str, arg: bool) -> String {
    let lua = Lua::new();
    lua.load(chunk).call(arg).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_sequences_and_errors_are_those_of_lua_54() {
    let (_node, engine) = setup();
    let draw = eval_body(&engine, DRAW, true).await;
    assert_eq!(draw, c_lua(DRAW, true));
    let errors = eval_body(&engine, ERRORS, true).await;
    assert_eq!(errors, c_lua(ERRORS, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_set_by_one_process_or_call_does_not_reach_the_next() {
    // One worker: every process and call below shares one Lua state.
    let (node, engine) = one_worker();
    let seeded = eval_body(&engine, DRAW, true).await;
    // With one generator per state, the next caller would continue the seeded sequence.
    let predictable = {
        let lua = Lua::new();
        let draw: mlua::Function = lua.load(DRAW).into_function().unwrap();
        assert_eq!(draw.call::<String>(true).unwrap(), seeded);
        draw.call::<String>(false).unwrap()
    };
    // Another process after it draws from its own, OS-seeded generator.
    let next = eval_body(&engine, DRAW, false).await;
    assert_ne!(next, predictable);
    let other = eval_body(&engine, DRAW, false).await;
    assert_ne!(other, next, "two processes got the same sequence");
    // The same for function calls (HTTP handlers).
    let f = function(&engine, &format!("return function(...) {DRAW} end"), &[]);
    let first = f.call(vec![Value::Bool(true)]).await.unwrap();
    assert_eq!(first.as_str().unwrap(), seeded);
    let second = f.call(vec![Value::Bool(false)]).await.unwrap();
    assert_ne!(second.as_str().unwrap(), predictable);
    drop(node);
}

/// Runs `chunk` (which reads its argument with `...`) in a fresh process.
async fn eval_body(engine: &wsrelay_lua::LuaEngine, chunk: &str, seed: bool) -> String {
    let exit = run_lua_args(
        engine,
        &format!("return (function(...) {chunk} end)(...)"),
        vec![Value::Bool(seed)],
    )
    .await;
    assert!(exit.error.is_none(), "{exit:?}");
    exit.value.as_str().unwrap().to_owned()
}
