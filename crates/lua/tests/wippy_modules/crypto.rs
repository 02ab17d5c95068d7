//! `crypto`: random values, HMAC, AEAD, JWT, PBKDF2, constant-time compare.

use super::*;

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
    let private = include_str!("../keys/rsa-test-private.pem");
    let public = include_str!("../keys/rsa-test-public.pem");
    let pkcs8 = include_str!("../keys/rsa-test-private-pkcs8.pem");
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
        array!["dd2c1780-811a-5296-81c5-178a0ef488bc", true, true]
    );
}
