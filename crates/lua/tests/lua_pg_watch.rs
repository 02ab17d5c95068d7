//! `pg` subscriptions: `g:monitor` (an atomic snapshot plus later changes), `g:events` (the
//! whole scope), the bounded buffer's overflow marker, one leave per membership at exit, and
//! `sub:close`.

use std::collections::HashSet;

use crate::support::*;
use wsrelay_process::{GroupLimits, Value};

const SCOPE: &str = "app:pg";

fn setup_scope() -> (wsrelay_process::Node, wsrelay_lua::LuaEngine) {
    let (node, engine) = setup();
    node.add_group_scope(SCOPE, GroupLimits::default());
    (node, engine)
}

/// Reads one event of `ch` as `kind:pid,pid` (or `overflow:n`), or `timeout` after `ms`.
const READ: &str = r#"
local time = require("time")
local function read(ch, ms)
    local r = channel.select({ ch:case_receive(), time.after((ms or 2000) .. "ms"):case_receive() })
    if r.channel ~= ch then return "timeout" end
    if not r.ok then return "closed" end
    local e = r.value
    assert(e.system == "pg")
    if e.kind == "overflow" then return "overflow:" .. e.data.Dropped end
    assert(e.path == e.data.Group)
    return e.kind .. ":" .. e.data.Group .. ":" .. table.concat(e.data.PIDs, ",")
end
"#;

#[tokio::test(flavor = "multi_thread")]
async fn monitor_gives_the_members_then_later_changes() {
    let (node, engine) = setup_scope();
    let (probe, _guard) = rust_process(&node);
    let body = format!(
        r#"{READ}
        local probe = ...
        local g = require("pg").open("app:pg")
        assert(g:join("room"))
        assert(g:join("other", probe))
        local sub, members = g:monitor("room")
        assert(sub, members)
        local ch = sub:channel()
        assert(ch == sub:channel(), "the same channel every time")
        assert(g:join("room", probe))
        assert(g:join("other"))
        assert(g:leave("room", probe))
        assert(g:leave("room"))
        return {{ #members, members[1] == process.pid(), read(ch), read(ch), read(ch),
                 read(ch, 200) }}
        "#
    );
    let result = run_lua_args(&engine, &body, vec![s(probe.pid().as_str())]).await;
    assert!(result.error.is_none(), "{result:?}");
    let Value::Array(v) = result.value else {
        panic!("{result:?}")
    };
    let probe = probe.pid().as_str().to_owned();
    assert_eq!(v[0], 1.into());
    assert_eq!(v[1], true.into());
    assert_eq!(v[2], s(&format!("member.joined:room:{probe}")));
    assert_eq!(v[3], s(&format!("member.left:room:{probe}")));
    assert!(
        v[4].as_str().unwrap().starts_with("member.left:room:{"),
        "{v:?}"
    );
    assert_eq!(
        v[5],
        s("timeout"),
        "changes of other groups are not reported"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_joins_are_in_the_snapshot_or_the_events_exactly_once() {
    let (node, engine) = setup_scope();
    // Fewer than the buffer (64): a slow reader loses nothing here, so every join must show.
    const N: usize = 60;
    let probes: Vec<_> = (0..N).map(|_| rust_process(&node)).collect();
    let pids: Vec<String> = probes
        .iter()
        .map(|(c, _)| c.pid().as_str().to_owned())
        .collect();
    let scope = node.group_scope(SCOPE).unwrap();
    let joiner_pids: Vec<_> = probes.iter().map(|(c, _)| c.pid().clone()).collect();
    let body = format!(
        r#"{READ}
        local n = ...
        local g = require("pg").open("app:pg")
        local sub, members = g:monitor("busy")
        local seen = {{}}
        for _, pid in ipairs(members) do seen[#seen + 1] = pid end
        local in_snapshot = #members
        while #seen < n do
            local e = read(sub:channel(), 3000)
            if e == "timeout" then break end
            local kind, pid = e:match("^([^:]+):busy:(.+)$")
            assert(kind == "member.joined", e)
            seen[#seen + 1] = pid
        end
        local extra = read(sub:channel(), 200)
        return {{ in_snapshot, seen, extra }}
        "#
    );
    // The joins race the monitor: some land before the snapshot, some after.
    let joiner = std::thread::spawn(move || {
        for (i, pid) in joiner_pids.iter().enumerate() {
            scope.join("busy", pid).unwrap();
            if i % 4 == 0 {
                #[allow(clippy::disallowed_methods)] // a plain thread, not a runtime worker
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        }
    });
    let result = run_lua_args(&engine, &body, vec![(N as i64).into()]).await;
    joiner.join().unwrap();
    assert!(result.error.is_none(), "{result:?}");
    let Value::Array(v) = result.value else {
        panic!("{result:?}")
    };
    let Value::Array(seen) = &v[1] else {
        panic!("{v:?}")
    };
    let seen: Vec<String> = seen
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let distinct: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), N, "snapshot {:?}, seen {seen:?}", v[0]);
    assert_eq!(
        distinct,
        pids.iter().cloned().collect(),
        "no join lost or doubled"
    );
    assert_eq!(v[2], s("timeout"), "nothing after the last join");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_drops_counts_and_marks_the_gap() {
    let (_node, engine) = setup_scope();
    let v = eval(
        &engine,
        &format!(
            r#"{READ}
            local g = require("pg").open("app:pg")
            local sub = g:monitor("room")
            -- Nobody reads while 100 joins happen: the joiner never waits.
            for _ = 1, 100 do assert(g:join("room")) end
            local ch = sub:channel()
            local joined = 0
            local e = read(ch)
            while e:match("^member.joined") do
                joined = joined + 1
                e = read(ch)
            end
            local marker = e
            assert(g:leave("room"))
            local after = read(ch)
            return {{ joined, marker, after:match("^member.left") ~= nil, read(ch, 100) }}
            "#
        ),
    )
    .await;
    assert_eq!(
        v,
        Value::Array(vec![64.into(), s("overflow:36"), true.into(), s("timeout")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_reports_each_membership_left_once() {
    let (_node, engine) = setup_scope();
    let child = register(
        &engine,
        r#"return { main = function()
            local g = require("pg").open("app:pg")
            assert(g:join("room"))
            assert(g:join("room"))
            assert(g:join("side"))
            process.inbox():receive()
        end }"#,
        "main",
        &["pg"],
    );
    let body = format!(
        r#"{READ}
        local child = ...
        local g = require("pg").open("app:pg")
        local sub = g:monitor("room")
        local pid = process.spawn(child, "app:processes")
        local events = {{ read(sub:channel()), read(sub:channel()) }}
        process.send(pid, "stop", true)
        while true do
            local e = read(sub:channel(), 300)
            if e == "timeout" then break end
            events[#events + 1] = e
        end
        return {{ pid, events, #g:get_members("room") }}
        "#
    );
    let result = run_lua_args(&engine, &body, vec![s(&child)]).await;
    assert!(result.error.is_none(), "{result:?}");
    let Value::Array(v) = result.value else {
        panic!("{result:?}")
    };
    let pid = v[0].as_str().unwrap();
    let Value::Array(events) = &v[1] else {
        panic!("{v:?}")
    };
    let events: Vec<&str> = events.iter().map(|e| e.as_str().unwrap()).collect();
    let joined = format!("member.joined:room:{pid}");
    let left = format!("member.left:room:{pid}");
    assert_eq!(
        events,
        [&joined, &joined, &left, &left],
        "two joins, two leaves"
    );
    assert_eq!(v[2], 0.into());
}

#[tokio::test(flavor = "multi_thread")]
async fn events_cover_the_scope_and_close_ends_the_channel() {
    let (node, engine) = setup_scope();
    let (probe, _guard) = rust_process(&node);
    let body = format!(
        r#"{READ}
        local probe = ...
        local g = require("pg").open("app:pg")
        assert(g:join({{ "a", "b" }}))
        local sub, groups = g:events()
        assert(g:join("c", probe))
        assert(g:leave("a"))
        local first, second = read(sub:channel()), read(sub:channel())
        assert(g:join("d"))
        sub:close({{ flush = true }})
        local flushed = read(sub:channel())
        local closed = read(sub:channel())
        assert(g:join("e"))
        local sub2 = g:monitor("e")
        assert(g:join("e"))
        sub2:close()
        sub2:close()
        return {{ #groups.a, #groups.b, groups.c == nil, first, second, flushed, closed,
                 read(sub2:channel()) }}
        "#
    );
    let result = run_lua_args(&engine, &body, vec![s(probe.pid().as_str())]).await;
    assert!(result.error.is_none(), "{result:?}");
    let Value::Array(v) = result.value else {
        panic!("{result:?}")
    };
    let probe = probe.pid().as_str();
    assert_eq!(&v[..3], &[1.into(), 1.into(), true.into()]);
    assert_eq!(v[3], s(&format!("member.joined:c:{probe}")));
    assert!(
        v[4].as_str().unwrap().starts_with("member.left:a:"),
        "{v:?}"
    );
    assert!(
        v[5].as_str().unwrap().starts_with("member.joined:d:"),
        "{v:?}"
    );
    assert_eq!(v[6], s("closed"), "closed after the flushed events");
    assert_eq!(
        v[7],
        s("closed"),
        "closed without flush: the buffered join is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_subscriptions_close_when_it_ends() {
    let (node, engine) = setup_scope();
    let result = run_lua(
        &engine,
        r#"local g = require("pg").open("app:pg")
        for _ = 1, 5 do assert(g:monitor("room")) end
        assert(g:events())"#,
    )
    .await;
    assert!(result.error.is_none(), "{result:?}");
    // A Rust subscriber sees only its own watch: the Lua ones were closed at exit, so a
    // join reaches it alone, and the cap counts one.
    let scope = node.group_scope(SCOPE).unwrap();
    let mut watches = Vec::new();
    loop {
        match scope.monitor("room") {
            Ok((w, _)) => watches.push(w),
            Err(e) => {
                assert!(e.to_string().contains("limit of 10000"), "{e}");
                break;
            }
        }
    }
    assert_eq!(watches.len(), wsrelay_process::MAX_WATCHES);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_need_pg_in_the_modules_list() {
    let (node, engine) = setup_scope();
    let entry = register(
        &engine,
        r#"return { main = function()
            local ok, err = pcall(require, "pg")
            return { ok, tostring(err) }
        end }"#,
        "main",
        &["json"],
    );
    let exit = run_entry(&node, &entry, vec![]).await;
    let Value::Array(v) = exit.value else {
        panic!("{exit:?}")
    };
    assert_eq!(v[0], false.into());
    let text = v[1].as_str().unwrap();
    assert!(text.contains("pg") && text.contains("modules"), "{text}");
}
