//! Wippy's structured errors: the `errors` global and the error objects the newer modules
//! (`base64`, `hash`, `uuid`, `env`, `crypto`) return as the `err` of `nil, err`.
//!
//! An error object has `err:kind()` (one of the `errors.*` constants, the strings
//! `"INVALID"`, `"NOT_FOUND"`, ...), `err:message()` and `err:retryable()`. `tostring(err)`
//! is the message and `..` concatenates it with strings and numbers, so code written for the
//! older modules' string errors (`print("failed: " .. err)`) keeps working.
//! `errors.is(err, errors.KIND)` is true only for an error object of that kind: a string
//! error has no kind, and guessing one from its text would make `is` lie.
//!
//! The older modules (`process`, `channel`, `time`, `json`, `http`, `pg`) still return
//! string errors; they move to these objects one by one.

use std::fmt;

use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

/// The kind of a Wippy error: what went wrong, independent of the message's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No better kind applies.
    Unknown,
    /// A bad argument: wrong type, size, format or value.
    Invalid,
    /// The thing asked for does not exist (an unset variable).
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// The policy refuses the call.
    PermissionDenied,
    /// A concurrent change won.
    Conflict,
    /// A deadline passed.
    Timeout,
    /// The call was canceled.
    Canceled,
    /// A dependency is not reachable now.
    Unavailable,
    /// Too many calls.
    RateLimited,
    /// The operation failed for a reason the caller cannot fix by changing the arguments
    /// (a decryption or token check that failed, as Wippy reports them).
    Internal,
}

impl Kind {
    /// Every kind, in the order of the `errors` table.
    const ALL: [Kind; 11] = [
        Kind::Unknown,
        Kind::Invalid,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::PermissionDenied,
        Kind::Conflict,
        Kind::Timeout,
        Kind::Canceled,
        Kind::Unavailable,
        Kind::RateLimited,
        Kind::Internal,
    ];

    /// The constant's name and value (`errors.NOT_FOUND == "NOT_FOUND"`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Unknown => "UNKNOWN",
            Kind::Invalid => "INVALID",
            Kind::NotFound => "NOT_FOUND",
            Kind::AlreadyExists => "ALREADY_EXISTS",
            Kind::PermissionDenied => "PERMISSION_DENIED",
            Kind::Conflict => "CONFLICT",
            Kind::Timeout => "TIMEOUT",
            Kind::Canceled => "CANCELED",
            Kind::Unavailable => "UNAVAILABLE",
            Kind::RateLimited => "RATE_LIMITED",
            Kind::Internal => "INTERNAL",
        }
    }
}

/// An error as Lua code gets it: a kind, a message and whether retrying may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct WippyError {
    kind: Kind,
    message: String,
    retryable: bool,
}

impl WippyError {
    /// An error of `kind`; retryable for the kinds where waiting can help.
    pub(crate) fn new(kind: Kind, message: impl fmt::Display) -> WippyError {
        let retryable = matches!(
            kind,
            Kind::Conflict | Kind::Timeout | Kind::Unavailable | Kind::RateLimited
        );
        WippyError {
            kind,
            message: message.to_string(),
            retryable,
        }
    }

    /// An [`Kind::Invalid`] error.
    pub(crate) fn invalid(message: impl fmt::Display) -> WippyError {
        WippyError::new(Kind::Invalid, message)
    }

    /// An [`Kind::Internal`] error.
    pub(crate) fn internal(message: impl fmt::Display) -> WippyError {
        WippyError::new(Kind::Internal, message)
    }

    /// The same error with `retryable` set (Wippy marks network failures and timeouts
    /// INTERNAL but retryable).
    pub(crate) fn with_retryable(mut self, retryable: bool) -> WippyError {
        self.retryable = retryable;
        self
    }

    /// The kind.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

/// Renders a value for `..` with an error: strings and numbers as Lua prints them, an error
/// as its message; anything else raises, as `..` does for it without errors involved.
fn concat_part(value: &LuaValue) -> mlua::Result<String> {
    match value {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        LuaValue::Integer(_) | LuaValue::Number(_) => value.to_string(),
        LuaValue::UserData(ud) => match ud.borrow::<WippyError>() {
            Ok(e) => Ok(e.message.clone()),
            Err(_) => Err(mlua::Error::runtime(
                "attempt to concatenate a userdata value",
            )),
        },
        other => Err(mlua::Error::runtime(format!(
            "attempt to concatenate a {} value",
            other.type_name()
        ))),
    }
}

impl UserData for WippyError {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("kind", |_, e, ()| Ok(e.kind.name()));
        methods.add_method("message", |_, e, ()| Ok(e.message.clone()));
        methods.add_method("retryable", |_, e, ()| Ok(e.retryable));
        methods.add_meta_method(MetaMethod::ToString, |_, e, ()| Ok(e.message.clone()));
        methods.add_meta_function(MetaMethod::Concat, |lua, (a, b): (LuaValue, LuaValue)| {
            let mut text = concat_part(&a)?;
            text.push_str(&concat_part(&b)?);
            lua.create_string(text)
        });
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (LuaValue, LuaValue)| {
            // Two error objects are equal when kind and message are: an error stored and
            // compared later need not be the same object.
            Ok(match (a, b) {
                (LuaValue::UserData(a), LuaValue::UserData(b)) => {
                    match (a.borrow::<WippyError>(), b.borrow::<WippyError>()) {
                        (Ok(a), Ok(b)) => *a == *b,
                        _ => false,
                    }
                }
                _ => false,
            })
        });
    }
}

/// Builds the `errors` table: the kind constants and `errors.is(err, kind)`.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    for kind in Kind::ALL {
        m.raw_set(kind.name(), kind.name())?;
    }
    m.raw_set(
        "is",
        lua.create_function(|_, args: MultiValue| {
            let (Some(LuaValue::UserData(ud)), Some(LuaValue::String(kind))) =
                (args.front(), args.get(1))
            else {
                return Ok(false);
            };
            Ok(ud
                .borrow::<WippyError>()
                .is_ok_and(|e| kind.as_bytes() == e.kind.name().as_bytes()))
        })?,
    )?;
    Ok(m)
}
