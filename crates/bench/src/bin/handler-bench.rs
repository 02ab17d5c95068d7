//! `handler-bench --addr ADDR`: one HTTP server with two endpoints that answer the same
//! `200 hello`, for `wrk` (the cost of a Lua handler next to a Rust one):
//!
//! * `GET /rust`: a Rust handler.
//! * `GET /lua`: a `function.lua` handler (`res:write("hello")`) run by the Lua engine, with
//!   the request and response copied across as `wsrelay-app` does (minus the body, a GET
//!   has none).
//!
//! Runs like `wsrelay run`: a multi-thread Tokio runtime and one Lua worker per core, so pinned
//! to one core (`taskset -c 0`) it is one runtime thread and one Lua worker.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use http::{HeaderName, HeaderValue, StatusCode};
use wsrelay_http::{
    handler_fn, response, Gateway, Request, Response, ResponseBody, Router, Server, ServerConfig,
};
use wsrelay_lua::{EngineConfig, FunctionSpec, HttpRequest, LuaEngine, LuaFunction};
use wsrelay_process::Node;

/// HTTP server with a Rust and a Lua endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9006")]
    addr: SocketAddr,
}

const SERVER: &str = "bench:http";
const LUA_SOURCE: &str = r#"
local http = require("http")
local function handler()
    local res = http.response()
    res:set_header("Content-Type", "text/plain")
    res:write("hello")
end
return { handler = handler }
"#;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wsrelay_bench::sys::raise_nofile_limit()?;
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let node = Node::new();
    let engine = LuaEngine::new(node.clone(), EngineConfig::default())?;
    let function = Arc::new(engine.function(
        "bench:hello",
        FunctionSpec {
            source: LUA_SOURCE.to_owned(),
            method: "handler".to_owned(),
            modules: vec!["http".to_owned()],
        },
    )?);
    let rust = handler_fn(|_req| async {
        let mut res = response::text(StatusCode::OK, "hello");
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        res
    });
    let lua = handler_fn(move |req| call_lua(function.clone(), req));
    let mut router = Router::new("/")?;
    router.route(http::Method::GET, "/rust", Arc::new(rust))?;
    router.route(http::Method::GET, "/lua", Arc::new(lua))?;
    let mut server = Server::new(SERVER, ServerConfig::new(args.addr));
    server.add_router(router)?;
    let mut gateway = Gateway::new();
    gateway.add_server(server)?;
    let running = gateway.bind().await?;
    eprintln!(
        "handler-bench listening on http://{}/rust and /lua",
        running.local_addr(SERVER).unwrap_or(args.addr)
    );
    tokio::signal::ctrl_c().await?;
    running.shutdown().await?;
    Ok(())
}

async fn call_lua(function: Arc<LuaFunction>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        params: Vec::new(),
        body: bytes::Bytes::new(),
    };
    let answer = match function.call_http(request).await {
        Ok(answer) => answer,
        Err(e) => return response::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let body = if answer.body_written {
        ResponseBody::from(answer.body)
    } else {
        ResponseBody::empty()
    };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            res.headers_mut().append(name, value);
        }
    }
    res
}
