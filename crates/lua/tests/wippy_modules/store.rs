//! `store` and `store.memory` entries.

use super::*;

// ----------------------------------------------------------------------------------- store

#[tokio::test(flavor = "multi_thread")]
async fn store_get_set_has_delete_entry_and_ttl() {
    let (_node, engine) = setup();
    engine.register_memory_store("app:cache", 100).unwrap();
    lua(
        &engine,
        r#"
        local store, time = require("store"), require("time")
        local s, err = store.get("app:missing")
        assert(s == nil and err:kind() == errors.NOT_FOUND)
        s = assert(store.get("app:cache"))
        local v, err = s:get("k")
        assert(v == nil and err:kind() == errors.NOT_FOUND, tostring(err))
        assert(s:set("k", { a = 1, list = { "x", "y" } }) == true)
        v = s:get("k")
        assert(v.a == 1 and v.list[2] == "y")
        -- a copy: changing it does not change the store
        v.a = 2
        assert(s:get("k").a == 1)
        assert(s:has("k") == true and s:has("nope") == false)
        local e = s:entry("k")
        assert(e.key == "k" and e.value.a == 1 and math.type(e.version) == "integer")
        assert(s:set("k", "v2"))
        assert(s:entry("k").version > e.version)
        assert(s:delete("k") == true and s:delete("k") == false)
        assert(s:has("k") == false)
        -- a TTL: gone for every read once it passed
        -- (only lower bounds on time: a slow machine cannot make this fail)
        assert(s:set("t", "x", 0.05))
        assert(s:set("hour", "h", 3600))
        assert(s:set("forever", "y", 0))
        time.sleep("120ms")
        v, err = s:get("t")
        assert(v == nil and err:kind() == errors.NOT_FOUND)
        assert(s:has("t") == false and s:entry("t") == nil)
        assert(s:get("forever") == "y" and s:get("hour") == "h")
        assert(s:delete("hour"))
        -- bad arguments are INVALID
        for _, bad in ipairs({
            function() return s:get("") end,
            function() return s:get(5) end,
            function() return s:set("k", nil) end,
            function() return s:set("k", 1, -1) end,
            function() return s:set("k", 1, "1s") end,
            function() return s:set(string.rep("k", 1025), 1) end,
        }) do
            local r, e2 = bad()
            assert(r == nil and e2:kind() == errors.INVALID, tostring(e2))
        end
        local info = s:info()
        assert(info.backend == "memory" and info.max_size == 100 and info.size == 1)
        assert(info.flags.ttl and info.flags.if_version)
        -- a released handle refuses everything; another handle still works
        assert(s:release() == true and s:release() == true)
        v, err = s:get("forever")
        assert(v == nil and err:kind() == errors.INVALID)
        assert(store.get("app:cache"):get("forever") == "y")
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn store_put_conditions_and_the_size_bound() {
    let (_node, engine) = setup();
    engine.register_memory_store("app:tickets", 3).unwrap();
    lua(
        &engine,
        r#"
        local s, time = require("store").get("app:tickets"), require("time")
        local e = assert(s:put("nonce", "used", { only_if_absent = true }))
        assert(e.key == "nonce" and e.value == "used")
        local r, err = s:put("nonce", "again", { only_if_absent = true })
        assert(r == nil and err:kind() == errors.ALREADY_EXISTS and not err:retryable())
        assert(s:get("nonce") == "used")
        local e2 = assert(s:put("nonce", "v2", { if_version = e.version }))
        assert(e2.version > e.version)
        r, err = s:put("nonce", "v3", { if_version = e.version })
        assert(r == nil and err:kind() == errors.CONFLICT and err:retryable())
        r, err = s:put("absent", "x", { if_version = 1 })
        assert(r == nil and err:kind() == errors.CONFLICT)
        r, err = s:put("k", "x", { if_version = 1, only_if_absent = true })
        assert(r == nil and err:kind() == errors.INVALID)
        -- an expired key is absent for only_if_absent
        assert(s:put("short", 1, { ttl = 0.05 }))
        time.sleep("120ms")
        assert(s:put("short", 2, { only_if_absent = true }))
        -- full at 3 live keys: a new key is UNAVAILABLE, an existing one can change
        assert(s:set("third", 3))
        r, err = s:set("fourth", 4)
        assert(r == nil and err:kind() == errors.UNAVAILABLE and err:retryable(), tostring(err))
        assert(s:set("third", 33))
        -- an expired key frees its slot for a new one
        assert(s:set("third", 3, 0.05))
        time.sleep("120ms")
        assert(s:set("fourth", 4))
        assert(s:info().size == 3)
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn store_list_pages_by_prefix() {
    let (_node, engine) = setup();
    engine.register_memory_store("app:sessions", 1000).unwrap();
    let v = lua(
        &engine,
        r#"
        local s, time = require("store").get("app:sessions"), require("time")
        for i = 1, 25 do assert(s:set(string.format("user:%02d", i), i)) end
        assert(s:set("room:1", "r"))
        assert(s:set("user:99", "gone", 0.05))
        time.sleep("120ms")
        local seen, after, pages = {}, nil, 0
        repeat
            local page = assert(s:list({ prefix = "user:", after = after, limit = 10 }))
            pages = pages + 1
            for _, e in ipairs(page.items) do seen[#seen + 1] = e.value end
            after = page.cursor
        until not page.has_more
        local all = s:list()
        local r, err = s:list({ limit = 0 })
        assert(r == nil and err:kind() == errors.INVALID)
        r, err = s:list({ limit = 1001 })
        assert(r == nil and err:kind() == errors.INVALID)
        return { pages, #seen, seen[1], seen[25], #all.items, all.has_more }
        "#,
    )
    .await;
    // 25 live user keys in pages of 10 (the expired one skipped), in key order; all 26.
    assert_eq!(v, array![3, 25, 1, 25, 26, false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn store_registration_refuses_duplicates_and_zero_size() {
    let (_node, engine) = setup();
    engine.register_memory_store("app:s", 1).unwrap();
    assert!(matches!(
        engine.register_memory_store("app:s", 5),
        Err(wsrelay_lua::StoreError::Duplicate(_))
    ));
    assert!(matches!(
        engine.register_memory_store("app:z", 0),
        Err(wsrelay_lua::StoreError::Size(_))
    ));
}
