//! The endpoint handler that runs a `function.lua` entry: adapts a
//! [`wsrelay_http::Request`] to a Lua [`HttpRequest`] and the Lua
//! [`HttpResponse`] back to a [`wsrelay_http::Response`].

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use wsrelay_http::{response, BoxFuture, Handler, PathParams, Request, Response, ResponseBody};
use wsrelay_lua::{HttpRequest, HttpResponse, LuaFunction};

/// Runs one `function.lua` entry per request.
#[derive(Debug, Clone)]
pub(crate) struct LuaHandler {
    function: Arc<LuaFunction>,
}

impl LuaHandler {
    pub(crate) fn new(function: LuaFunction) -> LuaHandler {
        LuaHandler {
            function: Arc::new(function),
        }
    }
}

impl Handler for LuaHandler {
    fn call(&self, req: Request) -> BoxFuture<Response> {
        let function = self.function.clone();
        Box::pin(async move {
            let request = match to_lua_request(req).await {
                Ok(request) => request,
                Err(rejection) => return rejection,
            };
            match function.call_http(request).await {
                Ok(answer) => from_lua_response(function.entry(), answer),
                Err(error) => {
                    tracing::error!(entry = function.entry(), %error, "handler failed");
                    response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
                }
            }
        })
    }
}

/// Reads the body (within the server's limit) and copies what Lua sees.
async fn to_lua_request(req: Request) -> Result<HttpRequest, Response> {
    // A WebSocket over HTTP/2 (RFC 8441 CONNECT) runs the GET endpoint of its path: the
    // handler sees the method an HTTP/1.1 upgrade has, so one handler serves both.
    let method = if wsrelay_http::is_websocket_connect(&req) {
        http::Method::GET
    } else {
        req.method().clone()
    };
    let (parts, body) = req.into_parts();
    let params = parts
        .extensions
        .get::<PathParams>()
        .map(|params| {
            params
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    let body = body.collect_bytes().await.map_err(|e| e.to_response())?;
    Ok(HttpRequest {
        method: method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        params,
        body,
    })
}

/// Builds the HTTP response; a header Lua set that HTTP cannot carry is
/// logged and dropped rather than failing the request.
fn from_lua_response(entry: &str, answer: HttpResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or_else(|_| {
        tracing::warn!(entry, status = answer.status, "invalid status; using 500");
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let body = if answer.body_written {
        ResponseBody::from(answer.body)
    } else {
        ResponseBody::empty()
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    for (name, value) in &answer.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                res.headers_mut().append(name, value);
            }
            _ => tracing::warn!(entry, header = %name, "invalid response header dropped"),
        }
    }
    res
}
