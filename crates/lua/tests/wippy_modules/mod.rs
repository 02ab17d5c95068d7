//! The Wippy utility modules: `errors`, `base64`, `hash`, `uuid`, `env`, `crypto`, `logger`, `store`,
//! `metrics`, `events`,
//! run as real Lua through the engine. Known answers come from the RFCs and FIPS documents
//! named at each vector.

use crate::support::*;
use wsrelay_lua::{EngineConfig, LuaEngine};
use wsrelay_process::Value;

const ALL: &[&str] = &[
    "base64", "hash", "uuid", "env", "crypto", "json", "logger", "store", "time", "metrics",
];

/// Runs `body` as `main(...)` of a fresh process with `modules` enabled and `args`; returns
/// its value, or panics with the Lua error (a failed `assert` in `body` fails the test).
async fn run(engine: &LuaEngine, modules: &[&str], body: &str, args: Vec<Value>) -> Value {
    let source = format!("local function main(...)\n{body}\nend\nreturn {{ main = main }}");
    let entry = register(engine, &source, "main", modules);
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(&me, &entry, args);
    let result = exit_of(&me, &pid).await;
    assert!(result.error.is_none(), "lua failed: {:?}", result.error);
    result.value
}

/// [`run`] with every module and no arguments.
async fn lua(engine: &LuaEngine, body: &str) -> Value {
    run(engine, ALL, body, vec![]).await
}

/// [`lua`] on a node and engine of its own.
async fn lua_fresh(body: &str) -> Value {
    let (_node, engine) = setup();
    lua(&engine, body).await
}

/// The error text a process that runs `body` fails with.
async fn lua_error(engine: &LuaEngine, modules: &[&str], body: &str) -> String {
    let source = format!("local function main()\n{body}\nend\nreturn {{ main = main }}");
    let entry = register(engine, &source, "main", modules);
    let (me, _guard) = rust_process(engine.node());
    let pid = spawn_monitored(&me, &entry, vec![]);
    format!(
        "{:?}",
        exit_of(&me, &pid)
            .await
            .error
            .expect("the process should fail")
    )
}

// ---------------------------------------------------------------------------------- errors

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_objects_with_kind_message_and_retryable() {
    let v = lua_fresh(
        r#"
        local base64 = require("base64")
        local v, err = base64.decode("not base64!")
        assert(v == nil)
        assert(type(err) == "userdata")
        assert(err:kind() == errors.INVALID and errors.INVALID == "INVALID")
        assert(err:retryable() == false)
        assert(errors.is(err, errors.INVALID))
        assert(not errors.is(err, errors.NOT_FOUND))
        assert(not errors.is("a string error", errors.INVALID))
        assert(not errors.is(nil, errors.INVALID))
        -- tostring and .. give the message, on either side, with numbers too
        assert(tostring(err) == err:message())
        assert(("failed: " .. err) == "failed: " .. err:message())
        assert((err .. "!") == err:message() .. "!")
        assert((1 .. err) == "1" .. err:message())
        assert(not pcall(function() return {} .. err end))
        -- the metatable, shared by every error of the worker, is not reachable
        assert(type(getmetatable(err)) ~= "table", tostring(getmetatable(err)))
        -- errors is a global and a module, and read-only
        assert(require("errors") == errors)
        assert(not pcall(function() errors.INVALID = "x" end))
        return { err:message(), errors.NOT_FOUND, errors.PERMISSION_DENIED, errors.ALREADY_EXISTS,
                 errors.CONFLICT, errors.UNAVAILABLE, errors.INTERNAL }
        "#,
    )
    .await;
    let Value::Array(items) = v else {
        panic!("expected a list, got {v:?}")
    };
    let Value::String(message) = &items[0] else {
        panic!("expected the message, got {:?}", items[0])
    };
    assert!(message.starts_with("base64.decode: "), "{message}");
    assert_eq!(
        items[1..].to_vec(),
        [
            "NOT_FOUND",
            "PERMISSION_DENIED",
            "ALREADY_EXISTS",
            "CONFLICT",
            "UNAVAILABLE",
            "INTERNAL"
        ]
        .map(s)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn utility_modules_need_the_modules_allowlist() {
    let (_node, engine) = setup();
    for module in [
        "base64", "hash", "uuid", "env", "crypto", "logger", "store", "metrics",
    ] {
        let err = lua_error(&engine, &["json"], &format!("require(\"{module}\")")).await;
        assert!(
            err.contains(&format!("module '{module}' is not enabled")),
            "{module}: {err}"
        );
    }
    // errors needs no entry, as process and channel.
    let v = run(
        &engine,
        &[],
        "return errors.is ~= nil and require('errors') == errors",
        vec![],
    )
    .await;
    assert_eq!(v, Value::Bool(true));
}

// ---------------------------------------------------------------------------------- base64

#[tokio::test(flavor = "multi_thread")]
async fn base64_rfc4648_vectors_and_refusals() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local base64 = require("base64")
        -- RFC 4648 section 10
        local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                          fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
        for plain, text in pairs(vectors) do
            assert(base64.encode(plain) == text, plain)
            assert(base64.decode(text) == plain, text)
        end
        -- binary-safe both ways
        local bin = "\0\255\128\1"
        assert(base64.decode(base64.encode(bin)) == bin)
        assert(base64.encode("\251\255") == "+/8=")
        -- refusals: bad characters, URL-safe alphabet, missing padding, non-strings
        for _, bad in ipairs({ "Zg=", "Zm9v!", "-_8=", "Zg", "Z===" }) do
            local v, err = base64.decode(bad)
            assert(v == nil and errors.is(err, errors.INVALID), bad)
        end
        local v, err = base64.encode(42)
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = base64.decode()
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

// ------------------------------------------------------------------------------------ hash

#[tokio::test(flavor = "multi_thread")]
async fn hash_digests_match_rfc_and_fips_vectors() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local hash = require("hash")
        -- RFC 1321 appendix A.5
        assert(hash.md5("") == "d41d8cd98f00b204e9800998ecf8427e")
        assert(hash.md5("abc") == "900150983cd24fb0d6963f7d28e17f72")
        -- FIPS 180-2 appendix examples ("abc")
        assert(hash.sha1("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d")
        assert(hash.sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        assert(hash.sha512("abc") == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        -- raw = true gives the bytes of the hex digest
        local raw = hash.sha256("abc", true)
        assert(#raw == 32)
        local hex = raw:gsub(".", function(c) return string.format("%02x", c:byte()) end)
        assert(hex == hash.sha256("abc"))
        assert(#hash.md5("x", true) == 16 and #hash.sha1("x", true) == 20 and #hash.sha512("x", true) == 64)
        -- binary input
        assert(hash.sha256("\0") == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        local v, err = hash.sha256(nil)
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = hash.md5("x", "yes")
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_hmac_takes_the_message_first() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local hash = require("hash")
        local msg, key = "what do ya want for nothing?", "Jefe"
        -- RFC 2202 test case 2 (MD5, SHA-1), RFC 4231 test case 2 (SHA-256, SHA-512)
        assert(hash.hmac_md5(msg, key) == "750c783e6ab0b503eaa86e310a5db738")
        assert(hash.hmac_sha1(msg, key) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        assert(hash.hmac_sha256(msg, key) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        assert(hash.hmac_sha512(msg, key) == "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")
        -- swapping the arguments gives another MAC
        assert(hash.hmac_sha256(key, msg) ~= hash.hmac_sha256(msg, key))
        assert(#hash.hmac_sha256(msg, key, true) == 32)
        local v, err = hash.hmac_sha256(msg)
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_fnv1_matches_the_reference_vectors() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local hash = require("hash")
        -- FNV-1 (multiply, then xor) from the FNV reference test suite
        assert(hash.fnv32("") == 0x811c9dc5)
        assert(hash.fnv32("a") == 0x050c5d7e)
        assert(hash.fnv32("foobar") == 0x31f0b262)
        assert(string.format("%x", hash.fnv64("")) == "cbf29ce484222325")
        assert(string.format("%x", hash.fnv64("a")) == "af63bd4c8601b7be")
        assert(string.format("%x", hash.fnv64("foobar")) == "340d8765a4dda9c2")
        assert(math.type(hash.fnv64("a")) == "integer")
        local v, err = hash.fnv32({})
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

// ------------------------------------------------------------------------------------ uuid

#[tokio::test(flavor = "multi_thread")]
async fn uuid_name_based_ids_match_rfc9562() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local uuid = require("uuid")
        local dns = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        -- RFC 9562 appendix A.2 (v3) and A.4 (v5)
        assert(uuid.v3(dns, "www.example.com") == "5df41881-3aed-3515-88a7-2f4a814cf09e")
        assert(uuid.v5(dns, "www.example.com") == "2ed6657d-e927-568b-95e1-2665a8aea6a2")
        -- the namespace may be given in any accepted form
        assert(uuid.v5("urn:uuid:" .. dns, "www.example.com") == uuid.v5(dns, "www.example.com"))
        local v, err = uuid.v5("dns", "x")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = uuid.v3(dns)
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uuid_generation_parse_and_format() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local uuid = require("uuid")
        local pattern = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
        for v, make in pairs({ [1] = uuid.v1, [4] = uuid.v4, [7] = uuid.v7 }) do
            local id = make()
            assert(id:match(pattern), id)
            assert(uuid.validate(id))
            assert(uuid.version(id) == v, id)
            assert(uuid.variant(id) == "RFC4122", id)
        end
        assert(uuid.v4() ~= uuid.v4())
        -- v7 sorts by creation
        local last = uuid.v7()
        for _ = 1, 200 do
            local id = uuid.v7()
            assert(id > last, id .. " <= " .. last)
            last = id
        end
        -- parse: timestamps for v1 and v7 are near now, v1 has a node with the multicast bit
        local now = os.time()
        local p7 = uuid.parse(uuid.v7())
        assert(p7.version == 7 and p7.variant == "RFC4122" and p7.node == nil)
        assert(math.abs(p7.timestamp - now) < 60, p7.timestamp)
        local p1 = uuid.parse(uuid.v1())
        assert(p1.version == 1 and math.abs(p1.timestamp - now) < 60)
        assert(#p1.node == 12 and tonumber(p1.node:sub(1, 2), 16) & 1 == 1, p1.node)
        local p4 = uuid.parse(uuid.v4())
        assert(p4.version == 4 and p4.timestamp == nil)
        -- variants of other ranges
        assert(uuid.variant("00000000-0000-0000-0000-000000000000") == "NCS")
        assert(uuid.variant("00000000-0000-0000-c000-000000000000") == "Microsoft")
        assert(uuid.variant("00000000-0000-0000-e000-000000000000") == "Future")
        -- format
        local id = "5DF41881-3AED-3515-88A7-2F4A814CF09E"
        assert(uuid.format(id, "standard") == "5df41881-3aed-3515-88a7-2f4a814cf09e")
        assert(uuid.format(id, "simple") == "5df418813aed351588a72f4a814cf09e")
        assert(uuid.format(id, "urn") == "urn:uuid:5df41881-3aed-3515-88a7-2f4a814cf09e")
        assert(uuid.format("5df418813aed351588a72f4a814cf09e", "standard") == id:lower())
        local v, err = uuid.format(id, "braces")
        assert(v == nil and errors.is(err, errors.INVALID))
        -- validate never fails; the others refuse bad input
        for _, bad in ipairs({ "", "xyz", "5df41881-3aed-3515-88a7-2f4a814cf09", string.rep("a", 1000) }) do
            assert(uuid.validate(bad) == false, bad)
            local v, err = uuid.version(bad)
            assert(v == nil and errors.is(err, errors.INVALID))
            local v, err = uuid.parse(bad)
            assert(v == nil and errors.is(err, errors.INVALID))
        end
        assert(uuid.validate(42) == false and uuid.validate(nil) == false)
        "#,
    )
    .await;
}

// ------------------------------------------------------------------------------------- env

#[tokio::test(flavor = "multi_thread")]
async fn env_reads_only_the_readable_os_variables() {
    // PATH is set wherever tests run; it is not readable by default.
    let path = std::env::var("PATH").expect("PATH is set");
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local env = require("env")
        local v, err = env.get("PATH")
        assert(v == nil and errors.is(err, errors.NOT_FOUND), tostring(err))
        assert(env.get_all().PATH == nil)
        return true
        "#,
    )
    .await;
    assert_eq!(v, Value::Bool(true));

    let (_node, engine) = setup_with(EngineConfig {
        workers: 2,
        env_readable: vec!["PATH".into()],
        ..EngineConfig::default()
    });
    let v = lua(
        &engine,
        r#"
        local env = require("env")
        assert(env.get_all().PATH == env.get("PATH"))
        return env.get("PATH")
        "#,
    )
    .await;
    assert_eq!(v, s(&path));
}

#[tokio::test(flavor = "multi_thread")]
async fn env_declared_variables_read_and_write_through_their_storages() {
    use std::collections::BTreeMap;
    use wsrelay_lua::{EnvError, EnvStorageSpec, EnvVariableSpec};
    let (_node, engine) = setup();
    let path = std::env::var("PATH").expect("PATH is set");
    let fixed = BTreeMap::from([
        ("REGION".to_owned(), "eu-1".to_owned()),
        ("SHADOWED".to_owned(), "static".to_owned()),
    ]);
    engine
        .register_env_storage("os", EnvStorageSpec::Os)
        .unwrap();
    engine
        .register_env_storage("mem", EnvStorageSpec::Memory)
        .unwrap();
    engine
        .register_env_storage("fixed", EnvStorageSpec::Values(fixed))
        .unwrap();
    // A router reads the first storage that has the variable, writes the first writable.
    engine
        .register_env_storage(
            "all",
            EnvStorageSpec::Router(vec!["mem".into(), "fixed".into(), "os".into()]),
        )
        .unwrap();
    assert!(matches!(
        engine.register_env_storage("bad", EnvStorageSpec::Router(vec!["nope".into()])),
        Err(EnvError::NoStorage(_))
    ));
    assert!(matches!(
        engine.register_env_storage("mem", EnvStorageSpec::Memory),
        Err(EnvError::Duplicate(_))
    ));
    let variable = |storage: &str, default: Option<&str>, read_only| EnvVariableSpec {
        storage: storage.into(),
        default: default.map(Into::into),
        read_only,
    };
    for (name, spec) in [
        ("PATH", variable("os", None, true)),
        ("REGION", variable("fixed", None, false)),
        ("SHADOWED", variable("all", None, false)),
        ("MODE", variable("all", Some("dev"), false)),
        ("ABSENT", variable("mem", None, false)),
    ] {
        engine.register_env_variable(name, spec).unwrap();
    }
    assert!(matches!(
        engine.register_env_variable("X", variable("nope", None, false)),
        Err(EnvError::NoStorage(_))
    ));
    let v = run(
        &engine,
        &["env"],
        r#"
        local env, path = require("env"), ...
        -- The OS storage makes a declared OS variable readable (PATH is not WSRELAY_APP_*).
        assert(env.get("PATH") == path)
        local ok, err = env.set("PATH", "x")
        assert(ok == nil and err:kind() == errors.PERMISSION_DENIED, tostring(err))
        assert(env.get("REGION") == "eu-1")
        ok, err = env.set("REGION", "us-2")
        assert(ok == nil and err:kind() == errors.PERMISSION_DENIED, "static is read-only")
        -- Router: the static value until memory (first, writable) gets one.
        assert(env.get("SHADOWED") == "static")
        assert(env.set("SHADOWED", "memory") == true)
        assert(env.get("SHADOWED") == "memory")
        -- The default until a storage has a value.
        assert(env.get("MODE") == "dev")
        assert(env.set("MODE", "prod"))
        assert(env.get("MODE") == "prod")
        local v, err = env.get("ABSENT")
        assert(v == nil and err:kind() == errors.NOT_FOUND)
        local all = env.get_all()
        assert(all.PATH == path and all.REGION == "eu-1" and all.MODE == "prod")
        assert(all.ABSENT == nil)
        return true
        "#,
        vec![Value::from(path.as_str())],
    )
    .await;
    assert_eq!(v, Value::Bool(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn env_set_is_an_overlay_shared_by_the_engine() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local env = require("env")
        local v, err = env.get("APP_MODE")
        assert(v == nil and errors.is(err, errors.NOT_FOUND))
        assert(env.set("APP_MODE", "test") == true)
        assert(env.get("APP_MODE") == "test")
        assert(env.get_all().APP_MODE == "test")
        -- empty keys, non-strings and oversized values are INVALID
        local v, err = env.get("")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = env.set("", "x")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = env.set("K", 1)
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = env.set("K", string.rep("x", 64 * 1024 + 1))
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = env.set(string.rep("k", 257), "x")
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
    // Another process of the same engine (on either worker) sees the value.
    for _ in 0..4 {
        let v = lua(&engine, r#"return require("env").get("APP_MODE")"#).await;
        assert_eq!(v, s("test"));
    }
    // The OS environment is untouched.
    assert!(std::env::var("APP_MODE").is_err());
    // Another engine has its own overlay.
    let (_node2, other) = setup();
    let v = lua(&other, r#"return (require("env").get("APP_MODE"))"#).await;
    assert_eq!(v, Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn env_overlay_is_bounded() {
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local env = require("env")
        for i = 1, 1024 do assert(env.set("K" .. i, "v")) end
        local v, err = env.set("one_more", "v")
        assert(v == nil and errors.is(err, errors.INVALID))
        -- replacing a set name still works
        assert(env.set("K1", "w") and env.get("K1") == "w")
        return tostring(err)
        "#,
    )
    .await;
    assert_eq!(v, s("env.set: 1024 variables are set already"));

    // Bytes are bounded too: 16 values of 64 KiB fill 1 MiB.
    let v = lua_fresh(
        r#"
        local env = require("env")
        local big = string.rep("x", 64 * 1024 - 8)
        for i = 1, 16 do assert(env.set("B" .. i, big), i) end
        local v, err = env.set("B17", big)
        assert(v == nil and errors.is(err, errors.INVALID))
        -- replacing a value with a smaller one frees room
        assert(env.set("B1", "small"))
        assert(env.set("B17", big))
        return tostring(err)
        "#,
    )
    .await;
    assert_eq!(
        v,
        s("env.set: the variables set would exceed 1048576 bytes")
    );
}

mod crypto;
mod events;
mod logger;
mod metrics;
mod store;
