//! The Wippy utility modules: `errors`, `base64`, `hash`, `uuid`, `env`, `crypto`, `logger`, `store`,
//! `metrics`,
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
    let (_node, engine) = setup();
    let v = lua(
        &engine,
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
    use wsrelay_lua::{EnvError, EnvStorageSpec};
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
    engine
        .register_env_variable("PATH", "os", None, true)
        .unwrap();
    engine
        .register_env_variable("REGION", "fixed", None, false)
        .unwrap();
    engine
        .register_env_variable("SHADOWED", "all", None, false)
        .unwrap();
    engine
        .register_env_variable("MODE", "all", Some("dev".into()), false)
        .unwrap();
    engine
        .register_env_variable("ABSENT", "mem", None, false)
        .unwrap();
    assert!(matches!(
        engine.register_env_variable("X", "nope", None, false),
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
    let (_node, engine) = setup();
    let v = lua(
        &engine,
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

// ---------------------------------------------------------------------------------- crypto

#[tokio::test(flavor = "multi_thread")]
async fn crypto_random_bytes_strings_and_uuids() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local crypto = require("crypto")
        local b = crypto.random.bytes(32)
        assert(#b == 32 and b ~= crypto.random.bytes(32))
        local s = crypto.random.string(64)
        assert(#s == 64 and s:match("^[A-Za-z0-9]+$"), s)
        local digits = crypto.random.string(1000, "01")
        assert(digits:match("^[01]+$") and digits:find("0") and digits:find("1"))
        -- a multi-byte charset gives characters, not bytes
        local u = crypto.random.string(10, "äö")
        assert(utf8.len(u) == 10, u)
        assert(require("uuid").version(crypto.random.uuid()) == 4)
        for _, n in ipairs({ 0, -1, 1048577, 1.5 }) do
            local v, err = crypto.random.bytes(n)
            assert(v == nil and errors.is(err, errors.INVALID), tostring(n))
        end
        assert(#crypto.random.bytes(1048576) == 1048576)
        local v, err = crypto.random.string(5, "")
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_hmac_takes_the_key_first() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local crypto, hash = require("crypto"), require("hash")
        local msg, key = "what do ya want for nothing?", "Jefe"
        -- RFC 4231 test case 2
        assert(crypto.hmac.sha256(key, msg) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        assert(crypto.hmac.sha512(key, msg) == hash.hmac_sha512(msg, key))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_encrypt_round_trips_and_refuses_tampering() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local crypto = require("crypto")
        local function flip(s, i)
            return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1)
        end
        local plain = "attack at dawn \0 with binary"
        local ciphers = {
            { crypto.encrypt.aes, crypto.decrypt.aes, string.rep("k", 16) },
            { crypto.encrypt.aes, crypto.decrypt.aes, string.rep("k", 24) },
            { crypto.encrypt.aes, crypto.decrypt.aes, string.rep("k", 32) },
            { crypto.encrypt.chacha20, crypto.decrypt.chacha20, string.rep("k", 32) },
        }
        for i, c in ipairs(ciphers) do
            local enc, dec, key = c[1], c[2], c[3]
            local ct = assert(enc(plain, key))
            -- nonce (12) + ciphertext + tag (16)
            assert(#ct == 12 + #plain + 16, i)
            assert(ct ~= enc(plain, key), "nonces must differ")
            assert(dec(ct, key) == plain, i)
            -- a changed nonce, body or tag, another key, another aad: INTERNAL
            for _, pos in ipairs({ 1, 13, #ct }) do
                local v, err = dec(flip(ct, pos), key)
                assert(v == nil and errors.is(err, errors.INTERNAL), i .. ":" .. pos)
            end
            local v, err = dec(ct, string.rep("j", #key))
            assert(v == nil and errors.is(err, errors.INTERNAL))
            local with_aad = assert(enc(plain, key, "room:1"))
            assert(dec(with_aad, key, "room:1") == plain)
            local v, err = dec(with_aad, key, "room:2")
            assert(v == nil and errors.is(err, errors.INTERNAL))
            local v, err = dec(with_aad, key)
            assert(v == nil and errors.is(err, errors.INTERNAL))
            local v, err = dec("short", key)
            assert(v == nil and errors.is(err, errors.INTERNAL))
            assert(dec(enc("", key), key) == "")
        end
        -- wrong key sizes: INVALID
        for _, n in ipairs({ 0, 15, 33 }) do
            local v, err = crypto.encrypt.aes("x", string.rep("k", n))
            assert(v == nil and errors.is(err, errors.INVALID), n)
        end
        local v, err = crypto.encrypt.chacha20("x", string.rep("k", 16))
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_jwt_hs_round_trips_and_refusals() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local crypto, base64, json = require("crypto"), require("base64"), require("json")
        local jwt, secret = crypto.jwt, "s3cret"
        local function part(token, i)
            local seg = {}
            for p in token:gmatch("[^.]+") do seg[#seg + 1] = p end
            local b = seg[i]:gsub("-", "+"):gsub("_", "/")
            return json.decode(base64.decode(b .. string.rep("=", (4 - #b % 4) % 4)))
        end
        local exp = os.time() + 3600
        for _, alg in ipairs({ "HS256", "HS384", "HS512" }) do
            local token = assert(jwt.encode({ sub = "u1", exp = exp, room = "lobby" }, secret, alg))
            assert(part(token, 1).alg == alg)
            local claims = assert(jwt.verify(token, secret, alg))
            assert(claims.sub == "u1" and claims.exp == exp and claims.room == "lobby")
            -- wrong algorithm, wrong key: refused
            local other = alg == "HS256" and "HS512" or "HS256"
            local v, err = jwt.verify(token, secret, other)
            assert(v == nil and errors.is(err, errors.INTERNAL), alg)
            local v, err = jwt.verify(token, "other", alg)
            assert(v == nil and errors.is(err, errors.INTERNAL))
        end
        -- HS256 is the default
        local token = jwt.encode({ sub = "u1", exp = exp, _header = { kid = "k1" } }, secret)
        local header = part(token, 1)
        assert(header.alg == "HS256" and header.kid == "k1" and header.typ == "JWT")
        assert(part(token, 2)._header == nil)
        assert(jwt.verify(token, secret).sub == "u1")
        -- a changed payload is refused
        local h, p, sig = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
        local forged = base64.encode(json.encode({ sub = "admin", exp = exp })):gsub("=", "")
        local v, err = jwt.verify(h .. "." .. forged .. "." .. sig, secret)
        assert(v == nil and errors.is(err, errors.INTERNAL))
        -- expired, not yet valid, no exp
        local v, err = jwt.verify(jwt.encode({ exp = os.time() - 10 }, secret), secret)
        assert(v == nil and errors.is(err, errors.INTERNAL) and err:message():find("xpired"), tostring(err))
        local v, err = jwt.verify(jwt.encode({ exp = exp, nbf = os.time() + 600 }, secret), secret)
        assert(v == nil and errors.is(err, errors.INTERNAL))
        local no_exp = jwt.encode({ sub = "u1" }, secret)
        local v, err = jwt.verify(no_exp, secret)
        assert(v == nil and errors.is(err, errors.INTERNAL))
        assert(jwt.verify(no_exp, secret, "HS256", false).sub == "u1")
        -- an exp that is not an integer does not count as absent
        local v, err = jwt.verify(jwt.encode({ exp = "never" }, secret), secret, "HS256", false)
        assert(v == nil and errors.is(err, errors.INTERNAL), tostring(v))
        -- alg "none" is refused, whatever the key
        local none = base64.encode('{"alg":"none","typ":"JWT"}'):gsub("=", "") .. "."
            .. base64.encode('{"sub":"admin"}'):gsub("=", "") .. "."
        local v, err = jwt.verify(none, secret, "HS256", false)
        assert(v == nil and errors.is(err, errors.INTERNAL))
        -- unknown or unsupported algorithms, empty keys, bad claims: INVALID
        for _, alg in ipairs({ "none", "HS257", "ES256", "hs256" }) do
            local v, err = jwt.encode({ exp = exp }, secret, alg)
            assert(v == nil and errors.is(err, errors.INVALID), alg)
            local v, err = jwt.verify(token, secret, alg)
            assert(v == nil and errors.is(err, errors.INVALID), alg)
        end
        local v, err = jwt.encode({ exp = exp }, "")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = jwt.verify(token, "")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = jwt.encode("claims", secret)
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = jwt.encode({ exp = exp, _header = { alg = "none" } }, secret)
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = jwt.verify("not a token", secret)
        assert(v == nil and errors.is(err, errors.INTERNAL))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_jwt_verifies_a_token_made_elsewhere() {
    let (_node, engine) = setup();
    // The HS256 example of RFC 7519 §3.1's format as jwt.io publishes it (secret
    // "your-256-bit-secret", no exp), checked against Python's hmac when written.
    let v = lua(
        &engine,
        r#"
        local jwt = require("crypto").jwt
        local token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
            .. ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
            .. ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        local claims = assert(jwt.verify(token, "your-256-bit-secret", "HS256", false))
        local v, err = jwt.verify(token, "your-256-bit-secret")
        assert(v == nil and errors.is(err, errors.INTERNAL))
        return claims.name .. "/" .. claims.sub .. "/" .. claims.iat
        "#,
    )
    .await;
    assert_eq!(v, s("John Doe/1234567890/1516239022"));
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_jwt_rs256_with_pem_keys() {
    let (_node, engine) = setup();
    let private = include_str!("keys/rsa-test-private.pem");
    let public = include_str!("keys/rsa-test-public.pem");
    let pkcs8 = include_str!("keys/rsa-test-private-pkcs8.pem");
    run(
        &engine,
        ALL,
        r#"
        local private, public, pkcs8 = ...
        local jwt = require("crypto").jwt
        local token = assert(jwt.encode({ sub = "u1", exp = os.time() + 60 }, private, "RS256"))
        assert(jwt.verify(token, public, "RS256").sub == "u1")
        -- the same key in PKCS#8 form signs too
        local token8 = assert(jwt.encode({ sub = "u8", exp = os.time() + 60 }, pkcs8, "RS256"))
        assert(jwt.verify(token8, public, "RS256").sub == "u8")
        -- an HS256 verifier given the public key as a secret refuses the token (the
        -- classic algorithm-confusion attack needs the verifier to follow the header)
        local v, err = jwt.verify(token, public, "HS256")
        assert(v == nil and errors.is(err, errors.INTERNAL))
        -- a token signed with HS256 using the public key text is refused by RS256
        local forged = jwt.encode({ sub = "admin", exp = os.time() + 60 }, public, "HS256")
        local v, err = jwt.verify(forged, public, "RS256")
        assert(v == nil and errors.is(err, errors.INTERNAL))
        -- a key that is not PEM is INVALID
        local v, err = jwt.encode({ exp = 1 }, "not a pem", "RS256")
        assert(v == nil and errors.is(err, errors.INVALID))
        local v, err = jwt.verify(token, "not a pem", "RS256")
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
        vec![s(private), s(public), s(pkcs8)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_pbkdf2_and_constant_time_compare() {
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local crypto, hash = require("crypto"), require("hash")
        local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
        -- RFC 7914 section 11 (PBKDF2-HMAC-SHA256)
        local dk = crypto.pbkdf2("passwd", "salt", 1, 64)
        assert(hex(dk) == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
            .. "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783", hex(dk))
        assert(hash.pbkdf2("passwd", "salt", 1, 64, "sha256") == dk)
        -- SHA-512, as Python's hashlib.pbkdf2_hmac computes it
        assert(hex(crypto.pbkdf2("password", "salt", 1, 64, "sha512")) ==
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"
            .. "c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce")
        for _, args in ipairs({
            { "p", "s", 0, 32 }, { "p", "s", 1000001, 32 }, { "p", "s", 1, 0 },
            { "p", "s", 1, 1025 }, { "p", "s", 1, 32, "md5" }, { "p", nil, 1, 32 },
        }) do
            local v, err = crypto.pbkdf2(args[1], args[2], args[3], args[4], args[5])
            assert(v == nil and errors.is(err, errors.INVALID))
        end
        assert(crypto.constant_time_compare("abc", "abc") == true)
        assert(crypto.constant_time_compare("abc", "abd") == false)
        assert(crypto.constant_time_compare("abc", "abcd") == false)
        assert(crypto.constant_time_compare("", "") == true)
        local v, err = crypto.constant_time_compare("abc", nil)
        assert(v == nil and errors.is(err, errors.INVALID))
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_work_in_function_entries() {
    let (_node, engine) = setup();
    let f = function(
        &engine,
        r#"
        return function(name)
            local uuid = require("uuid")
            local v, err = uuid.parse(name)
            return { uuid.v5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", name),
                     errors.is(err, errors.INVALID), tostring(err) ~= "" }
        end
        "#,
        &["uuid"],
    );
    let v = f.call(vec![s("https://example.com/")]).await.unwrap();
    // The URL namespace of RFC 9562 (6ba7b811-...), as Python's uuid.uuid5 computes it.
    assert_eq!(
        v,
        Value::Array(vec![
            s("dd2c1780-811a-5296-81c5-178a0ef488bc"),
            Value::Bool(true),
            Value::Bool(true)
        ])
    );
}

// ---------------------------------------------------------------------------------- logger

/// One captured `tracing` event of the logger's target: level and every field as text.
#[derive(Debug, Clone)]
struct Line {
    level: tracing::Level,
    fields: std::collections::BTreeMap<String, String>,
}

/// A layer that keeps the logger's events (the shards log on their own threads, so a
/// thread-local subscriber would see nothing: this one is the global default).
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Line>>>);

struct Fields<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "wsrelay_lua::logger" {
            return;
        }
        let mut fields = std::collections::BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// The captured lines whose `fields` contain `marker` (each test marks its own lines, as
/// the tests of this file run in parallel into one global subscriber).
fn captured(marker: &str) -> Vec<Line> {
    use tracing_subscriber::layer::SubscriberExt;
    static LINES: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<Line>>>> =
        std::sync::OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines = std::sync::Arc::default();
        let subscriber =
            tracing_subscriber::registry().with(Capture(std::sync::Arc::clone(&lines)));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        lines
    });
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.fields.get("fields").is_some_and(|f| f.contains(marker)))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logger_writes_levels_messages_and_fields_to_tracing() {
    captured("");
    let (_node, engine) = setup();
    let pid = lua(
        &engine,
        r#"
        local logger = require("logger")
        assert(require("logger") == logger)
        local log = logger:with({ test = "levels" })
        assert(log:debug("d msg", { n = 1 }))
        assert(log:info("i msg", { ok = true, text = "two words" }))
        log:warn("w msg")
        log:error("e msg", { n = 2.5 })
        local relay = log:named("relay"):named("conn"):with({ conn_id = "c1" })
        relay:info("named msg", { test = "levels" })
        -- the parent is unchanged by its children
        log:info("parent msg")
        return process.pid()
        "#,
    )
    .await;
    let Value::String(pid) = pid else {
        panic!("expected a pid, got {pid:?}")
    };
    let lines = captured("test=levels");
    let by_msg = |m: &str| {
        lines
            .iter()
            .find(|l| l.fields.get("message").map(String::as_str) == Some(m))
            .unwrap_or_else(|| panic!("no line {m:?} in {lines:?}"))
            .clone()
    };
    use tracing::Level;
    for (msg, level, fields) in [
        ("d msg", Level::DEBUG, "n=1 test=levels"),
        (
            "i msg",
            Level::INFO,
            "ok=true test=levels text=\"two words\"",
        ),
        ("w msg", Level::WARN, "test=levels"),
        ("e msg", Level::ERROR, "n=2.5 test=levels"),
        ("parent msg", Level::INFO, "test=levels"),
    ] {
        let line = by_msg(msg);
        assert_eq!(line.level, level, "{msg}");
        assert_eq!(line.fields["fields"], fields, "{msg}");
        assert_eq!(line.fields["logger"], "", "{msg}");
        assert_eq!(line.fields["pid"], pid.to_string(), "{msg}");
        assert!(line.fields["entry"].starts_with("test:entry"), "{line:?}");
    }
    let named = by_msg("named msg");
    assert_eq!(named.fields["logger"], "relay.conn");
    assert_eq!(named.fields["fields"], "conn_id=c1 test=levels");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logger_bounds_sizes_and_refuses_bad_arguments() {
    captured("");
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local logger = require("logger")
        local log = logger:with({ test = "bounds" })
        -- an 8 KiB message and a 1 KiB value are kept; longer ones are cut and say so
        log:info(string.rep("m", 9000), { big = string.rep("v", 2000) })
        local many = {}
        for i = 1, 40 do many[string.format("k%02d", i)] = i end
        log:info("many", many)
        -- bad arguments: INVALID, and nothing written
        local v, err = logger:named("")
        assert(v == nil and err:kind() == errors.INVALID, tostring(err))
        v, err = logger:named(5)
        assert(v == nil and err:kind() == errors.INVALID)
        v, err = logger:with("x")
        assert(v == nil and err:kind() == errors.INVALID)
        local ok, err2 = log:info({}, nil)
        assert(ok == false and err2:kind() == errors.INVALID)
        ok, err2 = log:info("bad fields", 7)
        assert(ok == false and err2:kind() == errors.INVALID)
        "#,
    )
    .await;
    let lines = captured("test=bounds");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let big = &lines
        .iter()
        .find(|l| l.fields["message"] != "many")
        .unwrap();
    let msg = &big.fields["message"];
    assert!(
        msg.starts_with(&"m".repeat(8192)) && msg.ends_with("…[truncated, 9000 bytes in all]"),
        "{}",
        &msg[8000..]
    );
    assert!(!msg.contains(&"m".repeat(8193)));
    let fields = &big.fields["fields"];
    let value = format!("big={}…[truncated, 2000 bytes in all]", "v".repeat(1024));
    // the value holds a space (the marker), so it is quoted
    assert!(fields.contains(&format!("{:?}", &value[4..])), "{fields}");
    let many = lines
        .iter()
        .find(|l| l.fields["message"] == "many")
        .unwrap();
    let fields = &many.fields["fields"];
    // 32 fields in all: `test` and 31 of the 40, and the rest counted
    assert_eq!(fields.split(' ').count(), 33, "{fields}");
    assert!(fields.ends_with("dropped_fields=9"), "{fields}");
}

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
    assert_eq!(
        v,
        Value::Array(vec![
            Value::Int(3),
            Value::Int(25),
            Value::Int(1),
            Value::Int(25),
            Value::Int(26),
            Value::Bool(false)
        ])
    );
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

// --------------------------------------------------------------------------------- metrics

#[tokio::test(flavor = "multi_thread")]
async fn metrics_counters_gauges_and_histograms_keep_their_series() {
    use wsrelay_lua::{MetricKind, SeriesValue};
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local metrics = require("metrics")
        assert(metrics.counter_inc("hits", {room = "a"}) == true)
        assert(metrics.counter_add("hits", 2.5, {room = "a"}))
        assert(metrics.counter_inc("hits_total", {room = "b"}))
        assert(metrics.gauge_set("depth", 10, {shard = 1}))
        assert(metrics.gauge_inc("depth", {shard = 1}))
        assert(metrics.gauge_dec("depth", {shard = 1}))
        assert(metrics.gauge_dec("depth", {shard = 1}))
        assert(metrics.histogram("wait_seconds", 0.02))
        assert(metrics.histogram("wait_seconds", 3))
        return true
        "#,
    )
    .await;
    assert_eq!(v, Value::Bool(true));
    let snap = engine.metrics_snapshot();
    let names: Vec<(&str, MetricKind)> = snap.iter().map(|f| (f.name.as_str(), f.kind)).collect();
    assert_eq!(
        names,
        [
            ("depth", MetricKind::Gauge),
            ("hits", MetricKind::Counter),
            ("wait_seconds", MetricKind::Histogram)
        ]
    );
    let depth = &snap[0].series[0];
    assert_eq!(depth.labels, [("shard".to_owned(), "1".to_owned())]);
    assert_eq!(depth.value, SeriesValue::Gauge(9.0));
    let hits: Vec<(String, SeriesValue)> = snap[1]
        .series
        .iter()
        .map(|s| (s.labels[0].1.clone(), s.value.clone()))
        .collect();
    assert_eq!(
        hits,
        [
            ("a".to_owned(), SeriesValue::Counter(3.5)),
            ("b".to_owned(), SeriesValue::Counter(1.0))
        ]
    );
    let SeriesValue::Histogram { count, buckets, .. } = &snap[2].series[0].value else {
        panic!("{snap:?}");
    };
    assert_eq!(*count, 2);
    assert_eq!(buckets.iter().find(|b| b.0 == 0.025).map(|b| b.1), Some(1));
    assert_eq!(buckets.iter().find(|b| b.0 == 5.0).map(|b| b.1), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_refuse_bad_names_labels_values_and_type_changes() {
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local metrics = require("metrics")
        local function invalid(what, ok, err)
          assert(ok == nil, what)
          assert(err:kind() == errors.INVALID, what .. ": " .. tostring(err))
        end
        invalid("leading digit", metrics.counter_inc("9lives"))
        invalid("dot", metrics.counter_inc("a.b"))
        invalid("empty", metrics.counter_inc(""))
        invalid("long name", metrics.counter_inc(string.rep("a", 129)))
        invalid("no name", metrics.counter_inc(nil))
        invalid("negative counter", metrics.counter_add("c", -1))
        invalid("NaN", metrics.gauge_set("g", 0/0))
        invalid("infinity", metrics.gauge_set("g", math.huge))
        invalid("string value", metrics.histogram("h", "1"))
        invalid("label name", metrics.counter_inc("c", {["bad-key"] = "x"}))
        invalid("reserved label", metrics.counter_inc("c", {__reserved = "x"}))
        invalid("number label name", metrics.counter_inc("c", {[1] = "x"}))
        invalid("le on a histogram", metrics.histogram("h", 1, {le = "1"}))
        invalid("long value", metrics.counter_inc("c", {k = string.rep("v", 257)}))
        invalid("table value", metrics.counter_inc("c", {k = {}}))
        invalid("labels not a table", metrics.counter_inc("c", "labels"))
        local many = {}
        for i = 1, 17 do many["k" .. i] = "v" end
        invalid("17 labels", metrics.counter_inc("c", many))
        -- Nothing above created a series.
        assert(metrics.counter_inc("c"))
        invalid("counter as gauge", metrics.gauge_set("c", 1))
        invalid("counter as histogram", metrics.histogram("c", 1))
        -- Sample names may not collide: counter c exposes c_total, histogram h exposes h_count.
        invalid("gauge over c_total", metrics.gauge_set("c_total", 1))
        assert(metrics.histogram("h", 1))
        invalid("gauge over h_count", metrics.gauge_set("h_count", 1))
        return true
        "#,
    )
    .await;
    assert_eq!(v, Value::Bool(true));
    let names: Vec<String> = engine
        .metrics_snapshot()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["c", "h"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_series_are_capped_per_metric_and_overall() {
    use wsrelay_lua::{MAX_METRIC_SERIES, MAX_SERIES_PER_METRIC};
    let (_node, engine) = setup();
    let v = run(
        &engine,
        &["metrics"],
        r#"
        local metrics, per, total = require("metrics"), ...
        for i = 1, per do assert(metrics.counter_inc("users", {id = i})) end
        local ok, err = metrics.counter_inc("users", {id = "one more"})
        assert(ok == nil and err:kind() == errors.INTERNAL, tostring(err))
        assert(not err:retryable())
        -- The series that exist keep counting.
        assert(metrics.counter_inc("users", {id = 1}))
        -- Fill the engine's overall cap with other metrics.
        local made, m = per, 0
        while made < total do
          m = m + 1
          for i = 1, math.min(per, total - made) do
            assert(metrics.gauge_set("g" .. m, i, {id = i}))
            made = made + 1
          end
        end
        ok, err = metrics.gauge_set("g1", 1, {id = "new"})
        assert(ok == nil and err:kind() == errors.INTERNAL, "overall cap")
        ok, err = metrics.histogram("fresh", 1)
        assert(ok == nil and err:kind() == errors.INTERNAL, "no new metric either")
        return made
        "#,
        vec![
            Value::from(MAX_SERIES_PER_METRIC as i64),
            Value::from(MAX_METRIC_SERIES as i64),
        ],
    )
    .await;
    assert_eq!(v, Value::from(MAX_METRIC_SERIES as i64));
    let snap = engine.metrics_snapshot();
    let series: usize = snap.iter().map(|f| f.series.len()).sum();
    assert_eq!(series, MAX_METRIC_SERIES);
    let users = snap.iter().find(|f| f.name == "users").unwrap();
    assert_eq!(users.series.len(), MAX_SERIES_PER_METRIC);
}
