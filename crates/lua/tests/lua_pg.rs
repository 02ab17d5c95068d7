//! The `pg` module: joins and leaves with multiplicity, members and groups, broadcasts from
//! the caller to every member, memberships ending with their member, and the errors.

use crate::support::*;
use wsrelay_process::{GroupLimits, Map, Value};

const SCOPE: &str = "app:pg";

fn setup_scope() -> (wsrelay_process::Node, wsrelay_lua::LuaEngine) {
    let (node, engine) = setup();
    node.add_group_scope(SCOPE, GroupLimits::default());
    (node, engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_leaves_members_and_groups() {
    let (_node, engine) = setup_scope();
    let v = eval(
        &engine,
        r#"
        local pg = require("pg")
        local g = assert(pg.open("app:pg"))
        assert(g:join("a"))
        assert(g:join({ "a", "b" }))
        local me = process.pid()
        local a = g:get_members("a")
        local groups = g:which_groups()
        table.sort(groups)
        assert(g:leave("a"))
        local after = #g:get_members("a")
        assert(g:leave({ "a", "b" }))
        return { #a, a[1] == me, table.concat(groups, ","), after, #g:which_local_groups() }
        "#,
    )
    .await;
    assert_eq!(
        v,
        Value::Array(vec![2.into(), true.into(), s("a,b"), 1.into(), 0.into()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_reaches_every_member_once_from_the_caller() {
    let (node, engine) = setup_scope();
    let probes: Vec<_> = (0..3).map(|_| rust_process(&node)).collect();
    let pids: Vec<Value> = probes.iter().map(|(c, _)| s(c.pid().as_str())).collect();
    let result = run_lua_args(
        &engine,
        r#"
        local pids = ...
        local g = require("pg").open("app:pg")
        assert(g:join("room", pids))
        assert(g:join("room", pids[1]))
        assert(g:broadcast("room", "news", { text = "hi", n = 2 }, "extra"))
        return process.pid()
        "#,
        vec![Value::Array(pids)],
    )
    .await;
    assert!(result.error.is_none(), "{result:?}");
    let sender = result.value.as_str().unwrap().to_owned();
    for (probe, _) in &probes {
        let msg = recv(probe).await;
        assert_eq!(msg.topic(), "news");
        assert_eq!(msg.from().unwrap().as_str(), sender);
        let payload = msg.payload().clone().into_plain();
        assert_eq!(
            (payload.get("text"), payload.get("n")),
            (Some(&s("hi")), Some(&2.into()))
        );
        assert_eq!(payload.as_map().map(Map::len), Some(2));
        assert_eq!(msg.extra()[0].clone().into_plain(), s("extra"));
        assert!(probe.try_recv().is_none(), "one message per member");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memberships_end_when_their_member_exits() {
    let (node, engine) = setup_scope();
    let result = run_lua(
        &engine,
        r#"assert(require("pg").open("app:pg"):join("gone"))"#,
    )
    .await;
    assert!(result.error.is_none(), "{result:?}");
    assert!(node.group_scope(SCOPE).unwrap().members("gone").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn misuse_returns_nil_and_a_wippy_error() {
    let (_node, engine) = setup_scope();
    let v = eval(
        &engine,
        r#"
        local pg = require("pg")
        local _, unknown = pg.open("app:nope")
        local g = pg.open("app:pg")
        local _, empty = g:join("")
        local _, absent = g:leave("never")
        local _, reserved = g:broadcast("room", "@x", 1)
        local _, dead = g:join("room", "{app:processes|0xfffff}")
        local _, _, no_group = g:monitor("")
        g:release()
        local _, released = g:join("room")
        local _, _, released_monitor = g:events()
        local out = {}
        for _, e in ipairs({ unknown, empty, absent, reserved, dead, no_group, released,
                             released_monitor }) do
            out[#out + 1] = e:kind() .. ": " .. tostring(e)
        end
        return out
        "#,
    )
    .await;
    let Value::Array(errors) = v else {
        panic!("{v:?}")
    };
    let texts: Vec<_> = errors
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts[0].starts_with("INTERNAL: no pg.scope entry"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("INVALID: ") && texts[1].contains("must not be empty"),
        "{texts:?}"
    );
    assert!(
        texts[2].starts_with("INVALID: ") && texts[2].contains("not a member"),
        "{texts:?}"
    );
    assert!(
        texts[3].starts_with("INVALID: ") && texts[3].contains("reserved"),
        "{texts:?}"
    );
    assert!(
        texts[4].starts_with("INVALID: ") && texts[4].contains("not a live local process"),
        "{texts:?}"
    );
    assert!(
        texts[5].starts_with("INVALID: ") && texts[5].contains("must not be empty"),
        "{texts:?}"
    );
    assert!(
        texts[6].starts_with("INVALID: ") && texts[6].contains("released"),
        "{texts:?}"
    );
    assert!(
        texts[7].starts_with("INVALID: ") && texts[7].contains("released"),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_needs_the_module_listed() {
    let (node, engine) = setup_scope();
    let entry = register(
        &engine,
        r#"return { main = function() return pcall(require, "pg") end }"#,
        "main",
        &[],
    );
    let exit = run_entry(&node, &entry, vec![]).await;
    assert_eq!(exit.value, Value::Bool(false), "{exit:?}");
}
