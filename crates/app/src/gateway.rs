//! Builds the HTTP [`Gateway`] from the config: one server per
//! `http.service`, its routers with their middleware chains, endpoints
//! running `function.lua` entries, and static mounts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use wsrelay_config::{AppConfig, EntryId, HttpRouter, LuaEntry, StaticMount};
use wsrelay_http::{Gateway, Handler, MiddlewareRegistry, Router, Server, ServerConfig};
use wsrelay_lua::{FunctionSpec, LuaEngine};

use crate::handler::LuaHandler;
use crate::AppError;

/// Prepares every `function.lua` entry as a handler.
pub(crate) fn handlers(
    config: &AppConfig,
    engine: &LuaEngine,
) -> Result<HashMap<EntryId, Arc<dyn Handler>>, AppError> {
    let mut handlers = HashMap::new();
    for entry in &config.functions {
        let function = engine
            .function(&entry.id.to_string(), spec(entry))
            .map_err(|source| AppError::Lua {
                entry: entry.id.clone(),
                file: entry.file.clone(),
                source: Box::new(source),
            })?;
        handlers.insert(
            entry.id.clone(),
            Arc::new(LuaHandler::new(function)) as Arc<dyn Handler>,
        );
    }
    Ok(handlers)
}

/// The engine's view of a Lua entry.
pub(crate) fn spec(entry: &LuaEntry) -> FunctionSpec {
    FunctionSpec {
        source: entry.source.clone(),
        method: entry.method.clone().unwrap_or_default(),
        modules: entry.modules.clone(),
    }
}

/// Builds the gateway. `listen_override` replaces the address of the first
/// `http.service` (the CLI's `--listen`).
pub(crate) fn build(
    config: &AppConfig,
    registry: &MiddlewareRegistry,
    handlers: &HashMap<EntryId, Arc<dyn Handler>>,
    listen_override: Option<SocketAddr>,
) -> Result<Gateway, AppError> {
    let mut gateway = Gateway::new();
    for (i, service) in config.services.iter().enumerate() {
        if !service.auto_start {
            tracing::info!(service = %service.id, "not started (lifecycle.auto_start: false)");
            continue;
        }
        let addr = match listen_override {
            Some(addr) if i == 0 => addr,
            _ => service.addr,
        };
        let gateway_error = |source| AppError::Gateway {
            entry: service.id.clone(),
            file: service.file.clone(),
            source: Box::new(source),
        };
        let mut server = Server::new(service.id.to_string(), ServerConfig::new(addr));
        for router in config.routers_of(&service.id) {
            let router = build_router(config, router, registry, handlers)?;
            server.add_router(router).map_err(gateway_error)?;
        }
        for mount in &config.statics {
            if mount.mount == StaticMount::Server(service.id.clone()) {
                server
                    .static_files(&mount.path, &mount.directory)
                    .map_err(|source| AppError::Gateway {
                        entry: mount.id.clone(),
                        file: mount.file.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        gateway.add_server(server).map_err(gateway_error)?;
    }
    Ok(gateway)
}

/// Builds the middleware chains of every router, without serving anything:
/// the checks `wsrelay check` adds to the loader's (middleware options).
pub(crate) fn check_middleware(
    config: &AppConfig,
    registry: &MiddlewareRegistry,
) -> Result<(), AppError> {
    for router in &config.routers {
        let mut scratch = Router::new("/").map_err(|source| AppError::Gateway {
            entry: router.id.clone(),
            file: router.file.clone(),
            source: Box::new(source),
        })?;
        add_middleware(&mut scratch, router, registry)?;
    }
    Ok(())
}

fn build_router(
    config: &AppConfig,
    entry: &HttpRouter,
    registry: &MiddlewareRegistry,
    handlers: &HashMap<EntryId, Arc<dyn Handler>>,
) -> Result<Router, AppError> {
    let router_error = |source| AppError::Gateway {
        entry: entry.id.clone(),
        file: entry.file.clone(),
        source: Box::new(source),
    };
    let mut router = Router::new(&entry.prefix).map_err(router_error)?;
    add_middleware(&mut router, entry, registry)?;
    for endpoint in config.endpoints_of(&entry.id) {
        let endpoint_error = |source| AppError::Gateway {
            entry: endpoint.id.clone(),
            file: endpoint.file.clone(),
            source: Box::new(source),
        };
        let method = http::Method::from_bytes(endpoint.method.as_str().as_bytes())
            .expect("config methods are valid HTTP methods");
        // The loader checked that `func` names a function.lua entry.
        let Some(handler) = handlers.get(&endpoint.func) else {
            continue;
        };
        router
            .route(method, &endpoint.path, handler.clone())
            .map_err(endpoint_error)?;
    }
    for mount in &config.statics {
        if mount.mount == StaticMount::Router(entry.id.clone()) {
            router
                .static_files(&mount.path, &mount.directory)
                .map_err(|source| AppError::Gateway {
                    entry: mount.id.clone(),
                    file: mount.file.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(router)
}

fn add_middleware(
    router: &mut Router,
    entry: &HttpRouter,
    registry: &MiddlewareRegistry,
) -> Result<(), AppError> {
    let error = |field, source| AppError::Middleware {
        entry: entry.id.clone(),
        file: entry.file.clone(),
        field,
        source: Box::new(source),
    };
    for name in &entry.middleware {
        let middleware = registry
            .build(name, &entry.options)
            .map_err(|e| error("middleware", e))?;
        router.middleware(middleware);
    }
    for name in &entry.post_middleware {
        let middleware = registry
            .build(name, &entry.post_options)
            .map_err(|e| error("post_middleware", e))?;
        router.post_middleware(middleware);
    }
    Ok(())
}
