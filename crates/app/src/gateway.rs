//! Builds the HTTP [`Gateway`] from the config: one server per
//! `http.service`, its routers with their middleware chains, endpoints
//! running `function.lua` entries, and static mounts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use wsrelay_config::{
    AppConfig, EntryId, HttpRouter, HttpService, HttpStatic, LuaEntry, StaticMount,
};
use wsrelay_http::{
    Dotfiles, Gateway, Handler, Middleware, MiddlewareRegistry, Router, Server, ServerConfig,
    StaticDir, TlsFiles, TrustedProxies,
};
use wsrelay_lua::{FunctionSpec, LuaEngine, LuaFunction};

use crate::handler::LuaHandler;
use crate::AppError;

/// The `function.lua` entries, prepared: their code (which a reload replaces) and the
/// handler that serves it (the same object across reloads, so routes and embedders keep it).
#[derive(Clone, Default)]
pub(crate) struct Functions {
    pub(crate) code: HashMap<EntryId, LuaFunction>,
    pub(crate) handlers: HashMap<EntryId, Arc<dyn Handler>>,
}

impl Functions {
    /// Prepares every `function.lua` entry of `config`.
    pub(crate) fn prepare(config: &AppConfig, engine: &LuaEngine) -> Result<Functions, AppError> {
        let mut functions = Functions::default();
        for entry in &config.functions {
            functions.add(entry, engine)?;
        }
        Ok(functions)
    }

    /// Prepares `entry` (its source compiled) and adds it.
    pub(crate) fn add(&mut self, entry: &LuaEntry, engine: &LuaEngine) -> Result<(), AppError> {
        let function = engine
            .function(&entry.id.to_string(), spec(entry))
            .map_err(AppError::lua(entry))?;
        let handler = Arc::new(LuaHandler::new(function.clone())) as Arc<dyn Handler>;
        self.code.insert(entry.id.clone(), function);
        self.handlers.insert(entry.id.clone(), handler);
        Ok(())
    }

    /// Removes the entry `id`.
    pub(crate) fn remove(&mut self, id: &EntryId) {
        self.code.remove(id);
        self.handlers.remove(id);
    }

    /// The handlers by entry id as text (what embedders get).
    pub(crate) fn by_name(&self) -> crate::Handlers {
        self.handlers
            .iter()
            .map(|(id, handler)| (id.to_string(), handler.clone()))
            .collect()
    }
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
    middleware: &mut Middlewares<'_>,
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
        let mut server = server(service, addr)?;
        add_routes(&mut server, config, service, middleware, handlers)?;
        gateway
            .add_server(server)
            .map_err(AppError::gateway(&service.id, &service.file))?;
    }
    Ok(gateway)
}

/// The routing table of the running server of `service`, built from `config` (hot reload):
/// a server whose address and TLS are placeholders, since only its routes are used.
pub(crate) fn routes(
    config: &AppConfig,
    service: &HttpService,
    middleware: &mut Middlewares<'_>,
    handlers: &HashMap<EntryId, Arc<dyn Handler>>,
) -> Result<Server, AppError> {
    let mut server = Server::new(service.id.to_string(), ServerConfig::new(service.addr));
    add_routes(&mut server, config, service, middleware, handlers)?;
    Ok(server)
}

/// Adds the routers and static mounts of `service` to `server`.
fn add_routes(
    server: &mut Server,
    config: &AppConfig,
    service: &HttpService,
    middleware: &mut Middlewares<'_>,
    handlers: &HashMap<EntryId, Arc<dyn Handler>>,
) -> Result<(), AppError> {
    let gateway_error = AppError::gateway(&service.id, &service.file);
    for router in config.routers_of(&service.id) {
        let router = build_router(config, router, middleware, handlers)?;
        server.add_router(router).map_err(gateway_error)?;
    }
    for mount in config.statics_at(&StaticMount::Server(service.id.clone())) {
        server
            .static_files(static_dir(mount)?)
            .map_err(AppError::gateway(&mount.id, &mount.file))?;
    }
    Ok(())
}

/// A server for `service` on `addr`, with its TLS files loaded (so that an unreadable or
/// mismatched file is a configuration error naming the entry, before anything listens).
fn server(service: &HttpService, addr: SocketAddr) -> Result<Server, AppError> {
    let mut config = ServerConfig::new(addr);
    config.h2c = service.h2c;
    config.trusted_proxies = TrustedProxies::new(service.trusted_proxies.clone());
    config.proxy_protocol = service.proxy_protocol;
    if let Some(timeout) = service.header_read_timeout {
        config.header_read_timeout = timeout;
    }
    let mut server = Server::new(service.id.to_string(), config);
    if let Some(tls) = &service.tls {
        let files = TlsFiles {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            client_ca: tls.client_ca.clone(),
        };
        server
            .tls(files)
            .map_err(AppError::gateway(&service.id, &service.file))?;
    }
    Ok(server)
}

/// Builds the middleware chains of every router and loads every server's TLS files,
/// without serving anything: the checks `wsrelay check` adds to the loader's.
pub(crate) fn check_middleware(
    config: &AppConfig,
    registry: &MiddlewareRegistry,
) -> Result<(), AppError> {
    for service in &config.services {
        server(service, service.addr)?;
    }
    let none = Chains::default();
    let mut middleware = Middlewares::new(registry, &none);
    for router in &config.routers {
        let mut scratch = Router::new("/").map_err(AppError::gateway(&router.id, &router.file))?;
        add_middleware(&mut scratch, router, &mut middleware)?;
    }
    Ok(())
}

fn build_router(
    config: &AppConfig,
    entry: &HttpRouter,
    middleware: &mut Middlewares<'_>,
    handlers: &HashMap<EntryId, Arc<dyn Handler>>,
) -> Result<Router, AppError> {
    let mut router =
        Router::new(&entry.prefix).map_err(AppError::gateway(&entry.id, &entry.file))?;
    add_middleware(&mut router, entry, middleware)?;
    for endpoint in config.endpoints_of(&entry.id) {
        let method = http::Method::from_bytes(endpoint.method.as_str().as_bytes())
            .expect("config methods are valid HTTP methods");
        // The loader checked that `func` names a function.lua entry.
        let Some(handler) = handlers.get(&endpoint.func) else {
            continue;
        };
        router
            .route(method, &endpoint.path, handler.clone())
            .map_err(AppError::gateway(&endpoint.id, &endpoint.file))?;
    }
    for mount in config.statics_at(&StaticMount::Router(entry.id.clone())) {
        router.static_files(static_dir(mount)?);
    }
    Ok(router)
}

fn add_middleware(
    router: &mut Router,
    entry: &HttpRouter,
    middleware: &mut Middlewares<'_>,
) -> Result<(), AppError> {
    let chain = middleware.chain(entry, "middleware", &entry.middleware, &entry.options)?;
    for built in chain {
        router.middleware(built);
    }
    let chain = middleware.chain(
        entry,
        "post_middleware",
        &entry.post_middleware,
        &entry.post_options,
    )?;
    for built in chain {
        router.post_middleware(built);
    }
    Ok(())
}

/// One router's chain as configured and as built.
#[derive(Clone)]
struct Chain {
    names: Vec<String>,
    options: BTreeMap<String, String>,
    built: Vec<Arc<dyn Middleware>>,
}

/// The built middleware chains of the routers, by router id and field (`middleware`,
/// `post_middleware`). A reload reuses the chain of a router whose names and options did not
/// change, so its state lives on: `websocket_relay` counts the router's open connections
/// (`max_connections`) and its upgrade rate in the instance.
#[derive(Clone, Default)]
pub(crate) struct Chains(HashMap<(EntryId, &'static str), Chain>);

/// Builds the middleware of routers through `registry`, reusing the unchanged chains of
/// `kept` and collecting every chain it hands out into `built`.
pub(crate) struct Middlewares<'a> {
    registry: &'a MiddlewareRegistry,
    kept: &'a Chains,
    pub(crate) built: Chains,
}

impl<'a> Middlewares<'a> {
    pub(crate) fn new(registry: &'a MiddlewareRegistry, kept: &'a Chains) -> Middlewares<'a> {
        Middlewares {
            registry,
            kept,
            built: Chains::default(),
        }
    }

    /// The chain `field` of router `entry`: the kept one if `names` and `options` are the
    /// same, else built anew.
    fn chain(
        &mut self,
        entry: &HttpRouter,
        field: &'static str,
        names: &[String],
        options: &BTreeMap<String, String>,
    ) -> Result<Vec<Arc<dyn Middleware>>, AppError> {
        let key = (entry.id.clone(), field);
        let kept = self
            .kept
            .0
            .get(&key)
            .filter(|chain| chain.names == names && chain.options == *options);
        let chain = match kept {
            Some(chain) => chain.clone(),
            None => {
                let built = names
                    .iter()
                    .map(|name| self.registry.build(name, options))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| AppError::Middleware {
                        entry: entry.id.clone(),
                        file: entry.file.clone(),
                        field,
                        source: Box::new(source),
                    })?;
                Chain {
                    names: names.to_vec(),
                    options: options.clone(),
                    built,
                }
            }
        };
        let built = chain.built.clone();
        self.built.0.insert(key, chain);
        Ok(built)
    }
}

/// The directory of an `http.static` entry, checked.
fn static_dir(mount: &HttpStatic) -> Result<StaticDir, AppError> {
    let dotfiles = if mount.allow_dotfiles {
        Dotfiles::Allow
    } else {
        Dotfiles::Deny
    };
    StaticDir::new(&mount.path, &mount.directory, dotfiles)
        .map_err(AppError::gateway(&mount.id, &mount.file))
}
