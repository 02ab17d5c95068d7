//! The `http` module for `function.lua` handlers: `http.request()`, `http.response()` and
//! `http.STATUS`.
//!
//! Outside an HTTP handler both constructors return `nil, err`.

use std::rc::Rc;

use bytes::{BufMut, BytesMut};
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::json::encode;
use super::{fail, ok_true, string_arg, Ret};
use crate::actor::{current, Actor, CallState};

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
        fn set_header(this: &Response, args: MultiValue) -> mlua::Result<Ret> {
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
            this.0.response.borrow_mut().set_header(&name, &value);
            ok_true()
        }
        fn write(this: &Response, bytes: &[u8]) {
            let mut res = this.0.response.borrow_mut();
            let mut body = BytesMut::from(&res.body[..]);
            body.put_slice(bytes);
            res.body = body.freeze();
            res.body_written = true;
        }
        methods.add_method("set_header", |_, this, args: MultiValue| {
            set_header(this, args)
        });
        methods.add_method("header", |_, this, args: MultiValue| set_header(this, args));
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
        methods.add_method("write", |_, this, args: MultiValue| -> mlua::Result<Ret> {
            match args.front() {
                Some(LuaValue::String(s)) => write(this, &s.as_bytes()),
                Some(v @ (LuaValue::Integer(_) | LuaValue::Number(_))) => {
                    write(this, v.to_string()?.as_bytes())
                }
                _ => return fail("write: expected a string"),
            }
            ok_true()
        });
        methods.add_method(
            "write_json",
            |_, this, args: MultiValue| -> mlua::Result<Ret> {
                let text = match encode(args.front().unwrap_or(&LuaValue::Nil)) {
                    Ok(t) => t,
                    Err(e) => return fail(format!("write_json: {e}")),
                };
                if this.0.response.borrow().header("Content-Type").is_none() {
                    this.0
                        .response
                        .borrow_mut()
                        .set_header("Content-Type", "application/json");
                }
                write(this, text.as_bytes());
                ok_true()
            },
        );
    }
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
