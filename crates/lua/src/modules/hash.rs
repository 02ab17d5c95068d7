//! The `hash` module: digests, HMACs and FNV-1 of Lua strings (binary-safe).
//!
//! - `md5`, `sha1`, `sha256`, `sha512`: `(data, raw?)` → lowercase hex, or the raw digest
//!   bytes when `raw` is `true`.
//! - `hmac_md5`, `hmac_sha1`, `hmac_sha256`, `hmac_sha512`: `(data, secret, raw?)`. The
//!   message comes **first** here, as in Wippy's `hash`; `crypto.hmac.*` takes the key first.
//! - `fnv32`, `fnv64`: `(data)` → FNV-1 (not FNV-1a) as an integer. `fnv64` values past
//!   2^63 are negative Lua integers with the same 64 bits (`string.format("%x", h)` prints
//!   them unsigned); a float would lose the low bits.
//! - `pbkdf2`: as `crypto.pbkdf2`.
//!
//! Every input is at most `max_value_size` bytes. Errors: INVALID (a missing or non-string
//! argument, a non-boolean `raw`). MD5 and SHA-1 are here for interoperability (checksums,
//! UUID v3/v5, old protocols), not for new security designs.

use hmac::{Hmac, Mac};
use md5::Md5;
use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use sha1::Sha1;
use sha2::digest::Digest;
use sha2::{Sha256, Sha512};

use super::errors::WippyError;
use super::{bytes_arg, flag_arg, hex, int_arg, wippy_function, WippyFail};
use crate::convert;

/// The digest as Lua gets it: hex text, or the bytes themselves.
pub(crate) fn digest_value(lua: &Lua, bytes: &[u8], raw: bool) -> mlua::Result<LuaValue> {
    Ok(LuaValue::String(if raw {
        lua.create_string(bytes)?
    } else {
        lua.create_string(hex(bytes))?
    }))
}

/// `hash.<name>(data, raw?)` for the digest `D`.
fn digest_fn<D: Digest>(lua: &Lua, name: &'static str) -> mlua::Result<mlua::Function> {
    wippy_function(lua, move |lua, args: MultiValue| {
        let data = bytes_arg(&args, 0, &format!("hash.{name}: data"), convert::limit(lua))?;
        let raw = flag_arg(&args, 1, &format!("hash.{name}: raw"))?;
        Ok(digest_value(lua, &D::digest(&*data.as_bytes()), raw)?)
    })
}

/// A hash function an HMAC can be built on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MacHash {
    /// MD5 (interoperability only).
    Md5,
    /// SHA-1 (interoperability only).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

/// The HMAC of `data` under `key`.
pub(crate) fn hmac(hash: MacHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of every length (longer ones are hashed first): `new_from_slice` has
    // no error to report, and the fallback below is never taken.
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match hash {
        MacHash::Md5 => run::<Hmac<Md5>>(key, data),
        MacHash::Sha1 => run::<Hmac<Sha1>>(key, data),
        MacHash::Sha256 => run::<Hmac<Sha256>>(key, data),
        MacHash::Sha512 => run::<Hmac<Sha512>>(key, data),
    }
}

/// `hash.hmac_<name>(data, secret, raw?)`.
fn hmac_fn(lua: &Lua, hash: MacHash, name: &'static str) -> mlua::Result<mlua::Function> {
    wippy_function(lua, move |lua, args: MultiValue| {
        let limit = convert::limit(lua);
        let data = bytes_arg(&args, 0, &format!("hash.hmac_{name}: data"), limit)?;
        let secret = bytes_arg(&args, 1, &format!("hash.hmac_{name}: secret"), limit)?;
        let raw = flag_arg(&args, 2, &format!("hash.hmac_{name}: raw"))?;
        let mac = hmac(hash, &secret.as_bytes(), &data.as_bytes());
        Ok(digest_value(lua, &mac, raw)?)
    })
}

/// FNV-1 over 32 bits (multiply, then xor), from the FNV reference parameters.
pub(crate) fn fnv1_32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, b| {
        h.wrapping_mul(0x0100_0193) ^ u32::from(*b)
    })
}

/// FNV-1 over 64 bits.
pub(crate) fn fnv1_64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        h.wrapping_mul(0x0000_0100_0000_01b3) ^ u64::from(*b)
    })
}

/// The most PBKDF2 iterations one call may ask for. Wippy allows 10 million; the call runs
/// on a shard thread that also serves its connections and cannot be preempted inside Rust,
/// and 10 million SHA-256 rounds hold it for seconds. One million (above OWASP's 600 000 for
/// PBKDF2-HMAC-SHA256) holds it a tenth as long.
pub(crate) const MAX_PBKDF2_ITERATIONS: i64 = 1_000_000;
/// The longest PBKDF2 key, in bytes.
pub(crate) const MAX_PBKDF2_KEY: i64 = 1024;

/// `pbkdf2(password, salt, iterations, key_length, hash?)` → the key bytes; shared with
/// `hash.pbkdf2`. `hash` is `"sha256"` (default) or `"sha512"`.
pub(crate) fn pbkdf2_call(lua: &Lua, args: &MultiValue, what: &str) -> Result<Vec<u8>, WippyError> {
    let limit = convert::limit(lua);
    let password = bytes_arg(args, 0, &format!("{what}: password"), limit)?;
    let salt = bytes_arg(args, 1, &format!("{what}: salt"), limit)?;
    let rounds = int_arg(
        args,
        2,
        &format!("{what}: iterations"),
        1..=MAX_PBKDF2_ITERATIONS,
    )?;
    let len = int_arg(args, 3, &format!("{what}: key_length"), 1..=MAX_PBKDF2_KEY)?;
    let sha512 = match args.get(4) {
        None | Some(LuaValue::Nil) => false,
        Some(_) => match &*bytes_arg(args, 4, &format!("{what}: hash"), 16)?.as_bytes() {
            b"sha256" => false,
            b"sha512" => true,
            other => {
                return Err(WippyError::invalid(format!(
                    "{what}: hash must be \"sha256\" or \"sha512\", got {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        },
    };
    // Both bounds were checked above, so the casts cannot truncate.
    let (rounds, len) = (rounds as u32, len as usize);
    let mut out = vec![0u8; len];
    if sha512 {
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
            &password.as_bytes(),
            &salt.as_bytes(),
            rounds,
            &mut out,
        );
    } else {
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            &password.as_bytes(),
            &salt.as_bytes(),
            rounds,
            &mut out,
        );
    }
    Ok(out)
}

/// Builds the `hash` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("md5", digest_fn::<Md5>(lua, "md5")?)?;
    m.raw_set("sha1", digest_fn::<Sha1>(lua, "sha1")?)?;
    m.raw_set("sha256", digest_fn::<Sha256>(lua, "sha256")?)?;
    m.raw_set("sha512", digest_fn::<Sha512>(lua, "sha512")?)?;
    m.raw_set("hmac_md5", hmac_fn(lua, MacHash::Md5, "md5")?)?;
    m.raw_set("hmac_sha1", hmac_fn(lua, MacHash::Sha1, "sha1")?)?;
    m.raw_set("hmac_sha256", hmac_fn(lua, MacHash::Sha256, "sha256")?)?;
    m.raw_set("hmac_sha512", hmac_fn(lua, MacHash::Sha512, "sha512")?)?;
    m.raw_set(
        "fnv32",
        wippy_function(lua, |lua, args: MultiValue| {
            let data = bytes_arg(&args, 0, "hash.fnv32: data", convert::limit(lua))?;
            Ok(LuaValue::Integer(i64::from(fnv1_32(&data.as_bytes()))))
        })?,
    )?;
    m.raw_set(
        "fnv64",
        wippy_function(lua, |lua, args: MultiValue| {
            let data = bytes_arg(&args, 0, "hash.fnv64: data", convert::limit(lua))?;
            // Same bits, two's complement: Lua integers are signed 64-bit.
            Ok(LuaValue::Integer(fnv1_64(&data.as_bytes()) as i64))
        })?,
    )?;
    m.raw_set(
        "pbkdf2",
        wippy_function(
            lua,
            |lua, args: MultiValue| -> Result<LuaValue, WippyFail> {
                let key = pbkdf2_call(lua, &args, "hash.pbkdf2")?;
                Ok(LuaValue::String(lua.create_string(key)?))
            },
        )?,
    )?;
    Ok(m)
}
