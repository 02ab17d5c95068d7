//! `events`: the node's event bus: patterns, the kind filter, `data`, best effort (the
//! overflow marker), closing, and subscriptions ended with their process.

use super::*;

/// Reads one event of `ch` as `system|kind|path|data`, `overflow:n`, `closed` or `timeout`.
const READ: &str = r#"
local time = require("time")
local json = require("json")
local function read(ch, ms)
    local r = channel.select({ ch:case_receive(), time.after((ms or 2000) .. "ms"):case_receive() })
    if r.channel ~= ch then return "timeout" end
    if not r.ok then return "closed" end
    local e = r.value
    if e.kind == "overflow" then
        assert(e.system == "events")
        return "overflow:" .. e.data.Dropped
    end
    local data = e.data == nil and "-" or json.encode(e.data)
    return e.system .. "|" .. e.kind .. "|" .. e.path .. "|" .. data
end
"#;

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_get_the_events_their_pattern_and_kind_match() {
    let (_node, engine) = setup();
    let body = format!(
        r#"{READ}
        local events = require("events")
        local all = assert(events.subscribe("*"))
        local orders = assert(events.subscribe("orders.*"))
        local created = assert(events.subscribe("orders.*", "created"))
        local exact = assert(events.subscribe("orders"))
        assert(events.send("orders.eu", "created", "orders/1", {{ id = 1, items = {{ "a", "b" }} }}) == true)
        assert(events.send("orders.eu", "paid", "orders/1") == true)
        assert(events.send("orders", "created", "") == true)
        assert(events.send("users", "joined", "users/7", "ann") == true)
        local got = {{}}
        for _, s in ipairs({{ all, orders, created, exact }}) do
            local seen = {{}}
            local ch = s:channel()
            assert(ch == s:channel())
            while true do
                local e = read(ch, 100)
                if e == "timeout" then break end
                seen[#seen + 1] = e
            end
            got[#got + 1] = table.concat(seen, " ; ")
        end
        return got
        "#
    );
    let v = run(&engine, &["events", "time", "json"], &body, vec![]).await;
    let text = |s: &str| Value::String(s.to_owned());
    assert_eq!(
        v,
        Value::Array(vec![
            text(
                "orders.eu|created|orders/1|{\"id\":1,\"items\":[\"a\",\"b\"]} ; orders.eu|paid|orders/1|- ; \
                 orders|created||- ; users|joined|users/7|\"ann\""
            ),
            text("orders.eu|created|orders/1|{\"id\":1,\"items\":[\"a\",\"b\"]} ; orders.eu|paid|orders/1|-"),
            text("orders.eu|created|orders/1|{\"id\":1,\"items\":[\"a\",\"b\"]}"),
            text("orders|created||-"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_cross_processes_and_a_slow_subscriber_is_told_what_it_lost() {
    let (_node, engine) = setup();
    // The listener subscribes, tells the sender, waits for the sender to finish, then reads.
    let sender = register(
        &engine,
        r#"
        local function main(listener)
            local events = require("events")
            for i = 1, 70 do
                assert(events.send("jobs", "done", "jobs/" .. i, i))
            end
            process.send(listener, "sent", true)
        end
        return { main = main }
        "#,
        "main",
        &["events"],
    );
    let body = format!(
        r#"{READ}
        local sender = ...
        local sub = assert(require("events").subscribe("jobs"))
        assert(process.spawn(sender, "app:processes", process.pid()))
        local msg = process.inbox():receive()
        assert(msg:topic() == "sent")
        local ch = sub:channel()
        local first, last, n = read(ch), nil, 1
        while true do
            local e = read(ch, 100)
            if e == "timeout" then break end
            last, n = e, n + 1
        end
        sub:close()
        sub:close()
        return {{ first, last, n, read(ch, 100) }}
        "#
    );
    let v = run(
        &engine,
        &["events", "time", "json"],
        &body,
        vec![Value::String(sender)],
    )
    .await;
    // 64 buffered (the feed's bound), then the marker for the 6 that did not fit.
    assert_eq!(
        v,
        Value::Array(vec![
            "jobs|done|jobs/1|1".into(),
            "overflow:6".into(),
            Value::Int(65),
            "closed".into(),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_are_invalid_and_subscriptions_end_with_their_process() {
    let (node, engine) = setup();
    let v = run(
        &engine,
        &["events"],
        r#"
        local events = require("events")
        local out = {}
        for _, call in ipairs({
            function() return events.subscribe("") end,
            function() return events.subscribe(nil) end,
            function() return events.subscribe("x", "") end,
            function() return events.send("", "k", "p") end,
            function() return events.send("s", "", "p") end,
            function() return events.send("s", "k") end,
            function() return events.send("s", "k", "p", function() end) end,
        }) do
            local v, err = call()
            assert(v == nil and errors.is(err, errors.INVALID), tostring(err))
            out[#out + 1] = err:message()
        end
        -- left open on purpose: the process's end closes it
        assert(events.subscribe("left.open"))
        return out
        "#,
        vec![],
    )
    .await;
    let Value::Array(messages) = v else {
        panic!("{v:?}")
    };
    assert_eq!(messages.len(), 7);
    assert!(format!("{:?}", messages[0]).contains("must not be empty"));
    assert!(format!("{:?}", messages[5]).contains("path is required"));
    // The process has ended: its subscription no longer counts.
    let sent = node
        .send_event(wsrelay_process::BusEvent {
            system: "left.open".into(),
            kind: "k".into(),
            path: "".into(),
            data: Value::Null,
        })
        .unwrap();
    assert_eq!(sent, 0);
}
