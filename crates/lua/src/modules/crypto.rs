//! The `crypto` module: randomness, HMAC, authenticated encryption, JWT, PBKDF2 and
//! constant-time comparison, on RustCrypto crates and `jsonwebtoken` (over `ring`).
//!
//! - `random.bytes(n)`, `random.string(n, charset?)` (n characters of `charset`, default
//!   `A-Za-z0-9`, chosen uniformly), `random.uuid()` (v4). n is 1..[`MAX_RANDOM`].
//! - `hmac.sha256(key, data)`, `hmac.sha512(key, data)` → hex. The key comes **first** here;
//!   `hash.hmac_*` takes the message first (both as in Wippy).
//! - `encrypt.aes(data, key, aad?)` (AES-GCM, key of 16, 24 or 32 bytes) and
//!   `encrypt.chacha20(data, key, aad?)` (ChaCha20-Poly1305, key of 32 bytes) → a random
//!   12-byte nonce followed by the ciphertext and its 16-byte tag. `decrypt.aes` and
//!   `decrypt.chacha20(ct, key, aad?)` → the plaintext; a wrong key, a changed byte or a
//!   different `aad` is INTERNAL (as in Wippy).
//! - `jwt.encode(claims, key, alg?)` and `jwt.verify(token, key, alg?, require_exp?)`: see
//!   [`jwt_encode`] and [`jwt_verify`]; stricter than Wippy.
//! - `pbkdf2(password, salt, iterations, key_length, hash?)` → raw key bytes.
//! - `constant_time_compare(a, b)` → boolean (false when the lengths differ).
//!
//! Errors: INVALID for bad arguments (a key of the wrong size, an empty key, an unknown
//! algorithm, a length out of range), INTERNAL for a failed decryption or a refused token.

use std::collections::HashSet;

use aes_gcm::aead::generic_array::typenum::Unsigned;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use chacha20poly1305::ChaCha20Poly1305;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use serde_json::Value as Json;
use subtle::ConstantTimeEq;

use super::errors::WippyError;
use super::hash::{hmac, pbkdf2_call, MacHash};
use super::{bytes_arg, hex, int_arg, wippy_function, WippyFail};
use crate::convert;

/// The most bytes (or characters) one `random.bytes`/`random.string` call makes (1 MiB, as
/// Wippy).
pub(crate) const MAX_RANDOM: i64 = 1 << 20;
/// The longest `random.string` charset, in bytes.
pub(crate) const MAX_CHARSET: usize = 4096;

/// AES-192-GCM with the standard 96-bit nonce (the crate names only 128 and 256).
type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

/// Random bytes from the OS; INTERNAL if the OS has none to give.
fn random_bytes(n: usize) -> Result<Vec<u8>, WippyError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf)
        .map_err(|e| WippyError::internal(format!("crypto.random: no randomness: {e}")))?;
    Ok(buf)
}

/// `n` characters drawn uniformly from `charset` (by rejection sampling, so no character is
/// more likely than another).
fn random_string(n: usize, charset: &[char]) -> Result<String, WippyError> {
    let len = charset.len() as u32;
    // The largest multiple of `len` below 2^16: draws at or above it would favour the first
    // characters, so they are drawn again.
    let zone = 65_536 - 65_536 % len;
    let mut out = String::with_capacity(n);
    let mut made = 0;
    while made < n {
        let pool = random_bytes((n - made) * 2 + 16)?;
        for pair in pool.chunks_exact(2) {
            let v = u32::from(u16::from_le_bytes([pair[0], pair[1]]));
            if v < zone {
                out.push(charset[(v % len) as usize]);
                made += 1;
                if made == n {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Encrypts with the AEAD `C`: a random nonce, then the ciphertext and tag.
fn seal<C: Aead + KeyInit>(key: &[u8], data: &[u8], aad: &[u8]) -> Result<Vec<u8>, WippyError> {
    let cipher = C::new_from_slice(key).map_err(|_| {
        WippyError::invalid(format!("key of {} bytes has the wrong size", key.len()))
    })?;
    let mut nonce = aes_gcm::aead::Nonce::<C>::default();
    getrandom::getrandom(&mut nonce)
        .map_err(|e| WippyError::internal(format!("no randomness for the nonce: {e}")))?;
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: data, aad })
        .map_err(|_| WippyError::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(nonce.len() + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts what [`seal`] made.
fn open<C: Aead + KeyInit>(key: &[u8], data: &[u8], aad: &[u8]) -> Result<Vec<u8>, WippyError> {
    let cipher = C::new_from_slice(key).map_err(|_| {
        WippyError::invalid(format!("key of {} bytes has the wrong size", key.len()))
    })?;
    let nonce_len = <C as AeadCore>::NonceSize::USIZE;
    let tag_len = <C as AeadCore>::TagSize::USIZE;
    if data.len() < nonce_len + tag_len {
        return Err(WippyError::internal(format!(
            "ciphertext of {} bytes is shorter than a nonce and a tag",
            data.len()
        )));
    }
    let (nonce, sealed) = data.split_at(nonce_len);
    cipher
        .decrypt(
            aes_gcm::aead::Nonce::<C>::from_slice(nonce),
            Payload { msg: sealed, aad },
        )
        .map_err(|_| {
            WippyError::internal("decryption failed: wrong key or aad, or the data was changed")
        })
}

/// Which cipher an `encrypt`/`decrypt` function uses.
#[derive(Clone, Copy)]
enum Cipher {
    Aes,
    ChaCha20,
}

/// `encrypt.<cipher>` and `decrypt.<cipher>`: `(data, key, aad?)`.
fn aead_fn(lua: &Lua, cipher: Cipher, encrypt: bool) -> mlua::Result<mlua::Function> {
    let name = match (cipher, encrypt) {
        (Cipher::Aes, true) => "crypto.encrypt.aes",
        (Cipher::Aes, false) => "crypto.decrypt.aes",
        (Cipher::ChaCha20, true) => "crypto.encrypt.chacha20",
        (Cipher::ChaCha20, false) => "crypto.decrypt.chacha20",
    };
    wippy_function(lua, move |lua, args: MultiValue| {
        let limit = convert::limit(lua);
        let data = bytes_arg(&args, 0, &format!("{name}: data"), limit)?;
        let key = bytes_arg(&args, 1, &format!("{name}: key"), 64)?;
        let aad = match args.get(2) {
            None | Some(LuaValue::Nil) => None,
            Some(_) => Some(bytes_arg(&args, 2, &format!("{name}: aad"), limit)?),
        };
        let (data, key) = (data.as_bytes(), key.as_bytes());
        let aad_bytes = aad.as_ref().map(|a| a.as_bytes());
        let aad: &[u8] = aad_bytes.as_deref().unwrap_or(&[]);
        let out = match (cipher, key.len(), encrypt) {
            (Cipher::Aes, 16, true) => seal::<Aes128Gcm>(&key, &data, aad),
            (Cipher::Aes, 24, true) => seal::<Aes192Gcm>(&key, &data, aad),
            (Cipher::Aes, 32, true) => seal::<Aes256Gcm>(&key, &data, aad),
            (Cipher::Aes, 16, false) => open::<Aes128Gcm>(&key, &data, aad),
            (Cipher::Aes, 24, false) => open::<Aes192Gcm>(&key, &data, aad),
            (Cipher::Aes, 32, false) => open::<Aes256Gcm>(&key, &data, aad),
            (Cipher::Aes, n, _) => Err(WippyError::invalid(format!(
                "key must be 16, 24 or 32 bytes, got {n}"
            ))),
            (Cipher::ChaCha20, 32, true) => seal::<ChaCha20Poly1305>(&key, &data, aad),
            (Cipher::ChaCha20, 32, false) => open::<ChaCha20Poly1305>(&key, &data, aad),
            (Cipher::ChaCha20, n, _) => Err(WippyError::invalid(format!(
                "key must be 32 bytes, got {n}"
            ))),
        }
        .map_err(|e| WippyError::new(e.kind(), format!("{name}: {e}")))?;
        Ok(LuaValue::String(lua.create_string(out)?))
    })
}

/// The algorithm argument of `jwt.encode`/`jwt.verify`: HS256 when absent; an unknown name
/// is INVALID (Wippy silently signs with HS256 instead, which hides a typo until a verifier
/// with the intended algorithm refuses every token).
fn jwt_alg(args: &MultiValue, index: usize, what: &str) -> Result<Algorithm, WippyError> {
    let name = match args.get(index) {
        None | Some(LuaValue::Nil) => return Ok(Algorithm::HS256),
        Some(_) => bytes_arg(args, index, what, 16)?,
    };
    match &*name.as_bytes() {
        b"HS256" => Ok(Algorithm::HS256),
        b"HS384" => Ok(Algorithm::HS384),
        b"HS512" => Ok(Algorithm::HS512),
        b"RS256" => Ok(Algorithm::RS256),
        other => Err(WippyError::invalid(format!(
            "{what}: algorithm must be HS256, HS384, HS512 or RS256, got {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// `jwt.encode(claims, key, alg?)`: `claims` is a table (an object); its `_header` field, if
/// any, is taken out and sets the header's `kid`, `typ` and `cty` (other header fields are
/// INVALID: `alg` comes from the argument, and the rest name keys and certificates we do not
/// check). For RS256 the key is an RSA private key in PEM.
fn jwt_encode(lua: &Lua, args: &MultiValue) -> Result<String, WippyError> {
    const WHAT: &str = "crypto.jwt.encode";
    let LuaValue::Table(_) = args.front().unwrap_or(&LuaValue::Nil) else {
        return Err(WippyError::invalid(format!(
            "{WHAT}: claims must be a table"
        )));
    };
    let claims = convert::to_json(lua, args.front().unwrap_or(&LuaValue::Nil))
        .map_err(|e| WippyError::invalid(format!("{WHAT}: claims: {e}")))?;
    let mut claims = match claims {
        Json::Object(map) => map,
        // An empty table converts to an object; a list of values is not a claim set.
        _ => {
            return Err(WippyError::invalid(format!(
                "{WHAT}: claims must be a table with keys"
            )))
        }
    };
    let key = bytes_arg(args, 1, &format!("{WHAT}: key"), 1 << 20)?;
    if key.as_bytes().is_empty() {
        return Err(WippyError::invalid(format!(
            "{WHAT}: key must not be empty"
        )));
    }
    let alg = jwt_alg(args, 2, WHAT)?;
    let mut header = Header::new(alg);
    if let Some(extra) = claims.remove("_header") {
        let Json::Object(extra) = extra else {
            return Err(WippyError::invalid(format!(
                "{WHAT}: _header must be a table"
            )));
        };
        for (name, value) in extra {
            let Json::String(text) = value else {
                return Err(WippyError::invalid(format!(
                    "{WHAT}: _header.{name} must be a string"
                )));
            };
            match name.as_str() {
                "kid" => header.kid = Some(text),
                "typ" => header.typ = Some(text),
                "cty" => header.cty = Some(text),
                other => {
                    return Err(WippyError::invalid(format!(
                        "{WHAT}: _header.{other} cannot be set (only kid, typ, cty)"
                    )))
                }
            }
        }
    }
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&key.as_bytes())
            .map_err(|e| WippyError::invalid(format!("{WHAT}: RS256 key: {e}")))?,
        _ => EncodingKey::from_secret(&key.as_bytes()),
    };
    jsonwebtoken::encode(&header, &Json::Object(claims), &encoding)
        .map_err(|e| WippyError::internal(format!("{WHAT}: {e}")))
}

/// `jwt.verify(token, key, alg?, require_exp?)` → the claims. Stricter than Wippy:
///
/// - only `alg` (default HS256) is accepted; `none` and unknown names are refused;
/// - `exp` is required unless `require_exp` is `false`; `exp` and `nbf`, when present, must
///   be non-negative integers (a token whose `exp` is text or a fraction is refused rather
///   than treated as having none) and are checked against the wall clock with no leeway;
/// - `aud`, `iss` and `sub` are returned, not checked: that is the app's policy.
///
/// A refused token is INTERNAL (as in Wippy); the message says why.
fn jwt_verify(lua: &Lua, args: &MultiValue) -> Result<Json, WippyError> {
    const WHAT: &str = "crypto.jwt.verify";
    let token = bytes_arg(args, 0, &format!("{WHAT}: token"), convert::limit(lua))?;
    let key = bytes_arg(args, 1, &format!("{WHAT}: key"), 1 << 20)?;
    if key.as_bytes().is_empty() {
        return Err(WippyError::invalid(format!(
            "{WHAT}: key must not be empty"
        )));
    }
    let alg = jwt_alg(args, 2, WHAT)?;
    let require_exp = match args.get(3) {
        None | Some(LuaValue::Nil) => true,
        Some(LuaValue::Boolean(b)) => *b,
        Some(other) => {
            return Err(WippyError::invalid(format!(
                "{WHAT}: require_exp must be a boolean, got {}",
                other.type_name()
            )))
        }
    };
    let token = token
        .to_str()
        .map_err(|_| WippyError::internal(format!("{WHAT}: token is not text")))?
        .to_owned();
    let decoding = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(&key.as_bytes())
            .map_err(|e| WippyError::invalid(format!("{WHAT}: RS256 key: {e}")))?,
        _ => DecodingKey::from_secret(&key.as_bytes()),
    };
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.required_spec_claims = if require_exp {
        HashSet::from(["exp".to_owned()])
    } else {
        HashSet::new()
    };
    let data = jsonwebtoken::decode::<Json>(&token, &decoding, &validation)
        .map_err(|e| WippyError::internal(format!("{WHAT}: token refused: {e}")))?;
    for claim in ["exp", "nbf"] {
        if let Some(v) = data.claims.get(claim) {
            if v.as_u64().is_none() {
                return Err(WippyError::internal(format!(
                    "{WHAT}: token refused: {claim} is not a non-negative integer"
                )));
            }
        }
    }
    Ok(data.claims)
}

/// `crypto.hmac.<name>(key, data)` → hex.
fn hmac_fn(lua: &Lua, hash: MacHash, name: &'static str) -> mlua::Result<mlua::Function> {
    wippy_function(lua, move |lua, args: MultiValue| {
        let limit = convert::limit(lua);
        let key = bytes_arg(&args, 0, &format!("crypto.hmac.{name}: key"), limit)?;
        let data = bytes_arg(&args, 1, &format!("crypto.hmac.{name}: data"), limit)?;
        Ok(LuaValue::String(lua.create_string(hex(&hmac(
            hash,
            &key.as_bytes(),
            &data.as_bytes(),
        )))?))
    })
}

/// Builds the `crypto` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;

    let random = lua.create_table()?;
    random.raw_set(
        "bytes",
        wippy_function(lua, |lua, args: MultiValue| {
            let n = int_arg(&args, 0, "crypto.random.bytes: length", 1..=MAX_RANDOM)?;
            Ok(LuaValue::String(
                lua.create_string(random_bytes(n as usize)?)?,
            ))
        })?,
    )?;
    random.raw_set(
        "string",
        wippy_function(lua, |lua, args: MultiValue| {
            let n = int_arg(&args, 0, "crypto.random.string: length", 1..=MAX_RANDOM)?;
            let charset: Vec<char> = match args.get(1) {
                None | Some(LuaValue::Nil) => {
                    ('A'..='Z').chain('a'..='z').chain('0'..='9').collect()
                }
                Some(_) => {
                    let text =
                        super::text_arg(&args, 1, "crypto.random.string: charset", MAX_CHARSET)?;
                    let mut seen = HashSet::new();
                    // A repeated character would be drawn more often than the others.
                    text.chars().filter(|c| seen.insert(*c)).collect()
                }
            };
            if charset.is_empty() {
                return Err(WippyError::invalid("crypto.random.string: charset is empty").into());
            }
            Ok(LuaValue::String(
                lua.create_string(random_string(n as usize, &charset)?)?,
            ))
        })?,
    )?;
    random.raw_set(
        "uuid",
        wippy_function(lua, |lua, ()| {
            let id = uuid::Uuid::new_v4();
            Ok(LuaValue::String(
                lua.create_string(
                    id.hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer()),
                )?,
            ))
        })?,
    )?;
    m.raw_set("random", random)?;

    let mac = lua.create_table()?;
    mac.raw_set("sha256", hmac_fn(lua, MacHash::Sha256, "sha256")?)?;
    mac.raw_set("sha512", hmac_fn(lua, MacHash::Sha512, "sha512")?)?;
    m.raw_set("hmac", mac)?;

    let encrypt = lua.create_table()?;
    encrypt.raw_set("aes", aead_fn(lua, Cipher::Aes, true)?)?;
    encrypt.raw_set("chacha20", aead_fn(lua, Cipher::ChaCha20, true)?)?;
    m.raw_set("encrypt", encrypt)?;
    let decrypt = lua.create_table()?;
    decrypt.raw_set("aes", aead_fn(lua, Cipher::Aes, false)?)?;
    decrypt.raw_set("chacha20", aead_fn(lua, Cipher::ChaCha20, false)?)?;
    m.raw_set("decrypt", decrypt)?;

    let jwt = lua.create_table()?;
    jwt.raw_set(
        "encode",
        wippy_function(lua, |lua, args: MultiValue| {
            let token = jwt_encode(lua, &args)?;
            Ok(LuaValue::String(lua.create_string(token)?))
        })?,
    )?;
    jwt.raw_set(
        "verify",
        wippy_function(lua, |lua, args: MultiValue| {
            let claims = jwt_verify(lua, &args)?;
            Ok(super::json::from_json(lua, &claims)?)
        })?,
    )?;
    m.raw_set("jwt", jwt)?;

    m.raw_set(
        "pbkdf2",
        wippy_function(
            lua,
            |lua, args: MultiValue| -> Result<LuaValue, WippyFail> {
                let key = pbkdf2_call(lua, &args, "crypto.pbkdf2")?;
                Ok(LuaValue::String(lua.create_string(key)?))
            },
        )?,
    )?;
    m.raw_set(
        "constant_time_compare",
        wippy_function(lua, |lua, args: MultiValue| {
            let limit = convert::limit(lua);
            let a = bytes_arg(&args, 0, "crypto.constant_time_compare: a", limit)?;
            let b = bytes_arg(&args, 1, "crypto.constant_time_compare: b", limit)?;
            let same: bool = a.as_bytes().ct_eq(&b.as_bytes()).into();
            Ok(LuaValue::Boolean(same))
        })?,
    )?;
    Ok(m)
}
