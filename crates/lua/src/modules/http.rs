//! The `http` module for `function.lua` handlers: `http.request()`, `http.response()` and
//! `http.STATUS`.
//!
//! Outside an HTTP handler both constructors return `nil, err`.

use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::json::encode;
use super::{fail, ok_true, string_arg, Ret};
use crate::actor::{current, Actor, CallState};
use crate::convert;

/// The request of the running handler.
pub(crate) struct Request(Rc<CallState>);

/// The response of the running handler.
pub(crate) struct Response(Rc<CallState>);

fn opt_string(lua: &Lua, s: Option<&str>) -> mlua::Result<LuaValue> {
    Ok(match s {
        Some(s) => LuaValue::String(lua.create_string(s)?),
        None => LuaValue::Nil,
    })
}

impl UserData for Request {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        fn req(this: &Request) -> mlua::Result<&crate::http_types::HttpRequest> {
            this.0
                .request
                .as_ref()
                .ok_or_else(|| mlua::Error::runtime("not running in an HTTP handler"))
        }
        methods.add_method("method", |_, this, ()| Ok(req(this)?.method.clone()));
        methods.add_method("path", |_, this, ()| Ok(req(this)?.path.clone()));
        methods.add_method("query", |lua, this, name: String| {
            opt_string(lua, req(this)?.query_param(&name).as_deref())
        });
        methods.add_method("query_string", |_, this, ()| Ok(req(this)?.query.clone()));
        methods.add_method("param", |lua, this, name: String| {
            opt_string(lua, req(this)?.param(&name))
        });
        methods.add_method("header", |lua, this, name: String| {
            opt_string(lua, req(this)?.header(&name))
        });
        methods.add_method("headers", |lua, this, ()| {
            let t = lua.create_table()?;
            for (k, v) in &req(this)?.headers {
                t.raw_set(k.to_ascii_lowercase(), v.as_str())?;
            }
            Ok(t)
        });
        methods.add_method("body", |lua, this, ()| lua.create_string(&req(this)?.body));
    }
}

impl UserData for Response {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        fn set_header(lua: &Lua, this: &Response, args: MultiValue) -> mlua::Result<Ret> {
            let args = args.into_vec();
            let name = match string_arg(&args, 0, "header name") {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            let value = match args.get(1) {
                Some(LuaValue::String(s)) => s.to_string_lossy(),
                Some(LuaValue::Integer(i)) => i.to_string(),
                Some(LuaValue::Number(n)) => n.to_string(),
                _ => return fail("header value must be a string"),
            };
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
                return fail(format!("invalid header name {name:?}"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return fail(format!("invalid value for header {name:?}"));
            }
            if let Err(e) = fits(lua, this, name.len() + value.len()) {
                return fail(e);
            }
            this.0.response.borrow_mut().set_header(&name, &value);
            ok_true()
        }
        fn write(lua: &Lua, this: &Response, bytes: &[u8]) -> mlua::Result<Ret> {
            if let Err(e) = fits(lua, this, bytes.len()) {
                return fail(e);
            }
            this.0.body.borrow_mut().extend_from_slice(bytes);
            this.0.response.borrow_mut().body_written = true;
            ok_true()
        }
        methods.add_method("set_header", |lua, this, args: MultiValue| {
            set_header(lua, this, args)
        });
        methods.add_method("header", |lua, this, args: MultiValue| {
            set_header(lua, this, args)
        });
        methods.add_method("set_content_type", |_, this, ct: String| {
            this.0.response.borrow_mut().set_header("Content-Type", &ct);
            Ok(true)
        });
        methods.add_method(
            "set_status",
            |_, this, args: MultiValue| -> mlua::Result<Ret> {
                let status = match args.front() {
                    Some(LuaValue::Integer(n)) if (100..=999).contains(n) => *n as u16,
                    Some(LuaValue::Number(n))
                        if (100.0..=999.0).contains(n) && n.fract() == 0.0 =>
                    {
                        *n as u16
                    }
                    _ => return fail("set_status: expected a status code between 100 and 999"),
                };
                this.0.response.borrow_mut().status = status;
                ok_true()
            },
        );
        methods.add_method(
            "write",
            |lua, this, args: MultiValue| -> mlua::Result<Ret> {
                match args.front() {
                    Some(LuaValue::String(s)) => write(lua, this, &s.as_bytes()),
                    Some(v @ (LuaValue::Integer(_) | LuaValue::Number(_))) => {
                        write(lua, this, v.to_string()?.as_bytes())
                    }
                    _ => fail("write: expected a string"),
                }
            },
        );
        methods.add_method(
            "write_json",
            |lua, this, args: MultiValue| -> mlua::Result<Ret> {
                let text = match encode(lua, args.front().unwrap_or(&LuaValue::Nil)) {
                    Ok(t) => t,
                    Err(e) => return fail(format!("write_json: {e}")),
                };
                if this.0.response.borrow().header("Content-Type").is_none() {
                    this.0
                        .response
                        .borrow_mut()
                        .set_header("Content-Type", "application/json");
                }
                write(lua, this, text.as_bytes())
            },
        );
    }
}

/// Whether `more` bytes still fit in the response: headers and body together are bounded by
/// `max_value_size`, as every value Lua hands to Rust.
fn fits(lua: &Lua, this: &Response, more: usize) -> Result<(), String> {
    let limit = convert::limit(lua);
    if this.0.response_size().saturating_add(more) > limit {
        return Err(format!(
            "response too large: over {limit} bytes of headers and body (max_value_size)"
        ));
    }
    Ok(())
}

fn http_call() -> Result<Rc<CallState>, String> {
    match current() {
        Some(Actor::Call(c)) if c.request.is_some() => Ok(c),
        _ => Err("not running in an HTTP handler".to_owned()),
    }
}

const STATUS: &[(&str, u16)] = &[
    ("CONTINUE", 100),
    ("SWITCHING_PROTOCOLS", 101),
    ("OK", 200),
    ("CREATED", 201),
    ("ACCEPTED", 202),
    ("NO_CONTENT", 204),
    ("MOVED_PERMANENTLY", 301),
    ("FOUND", 302),
    ("SEE_OTHER", 303),
    ("NOT_MODIFIED", 304),
    ("TEMPORARY_REDIRECT", 307),
    ("PERMANENT_REDIRECT", 308),
    ("BAD_REQUEST", 400),
    ("UNAUTHORIZED", 401),
    ("FORBIDDEN", 403),
    ("NOT_FOUND", 404),
    ("METHOD_NOT_ALLOWED", 405),
    ("CONFLICT", 409),
    ("GONE", 410),
    ("PAYLOAD_TOO_LARGE", 413),
    ("UNSUPPORTED_MEDIA_TYPE", 415),
    ("UNPROCESSABLE_ENTITY", 422),
    ("UPGRADE_REQUIRED", 426),
    ("TOO_MANY_REQUESTS", 429),
    ("INTERNAL_ERROR", 500),
    ("INTERNAL_SERVER_ERROR", 500),
    ("NOT_IMPLEMENTED", 501),
    ("BAD_GATEWAY", 502),
    ("SERVICE_UNAVAILABLE", 503),
    ("GATEWAY_TIMEOUT", 504),
];

/// Builds the `http` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "request",
        lua.create_function(|lua, ()| -> mlua::Result<Ret> {
            match http_call() {
                Ok(c) => Ok((LuaValue::UserData(lua.create_userdata(Request(c))?), None)),
                Err(e) => fail(e),
            }
        })?,
    )?;
    m.raw_set(
        "response",
        lua.create_function(|lua, ()| -> mlua::Result<Ret> {
            match http_call() {
                Ok(c) => Ok((LuaValue::UserData(lua.create_userdata(Response(c))?), None)),
                Err(e) => fail(e),
            }
        })?,
    )?;
    let status = lua.create_table()?;
    for (name, code) in STATUS {
        status.raw_set(*name, *code)?;
    }
    m.raw_set("STATUS", status)?;
    Ok(m)
}
