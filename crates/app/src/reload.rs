//! Hot reload (`wsrelay run --watch`; docs/decisions/hot-reload.md): applies a validated
//! config to the running app without dropping a connection.
//!
//! New handler calls and new spawns run the new code; what runs keeps its own, as in Erlang's
//! old and new code: a Lua process's coroutine holds the closures it started with, and a
//! handler call in flight holds the compiled entry it started with. Routes are replaced whole
//! per server. What the running app cannot take without a restart (listeners, hosts,
//! supervised services, scopes, stores, env, cluster, ops) is reported, not applied.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use wsrelay_config::{AppConfig, EntryId, HttpService, LuaEntry};
use wsrelay_http::{RunningGateway, Server};
use wsrelay_lua::{HttpClientPolicy, LuaEngine};
use wsrelay_relay::Relay;

use crate::gateway::{self, Chains, Functions, Middlewares};
use crate::AppError;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reload {
    /// `function.lua` entries added, removed or with new code (or `http_client` policy).
    pub functions: Vec<String>,
    /// `process.lua` entries added, removed or with new code (or `http_client` policy).
    pub processes: Vec<String>,
    /// Servers whose routing table was replaced (routers, endpoints, static mounts).
    pub servers: Vec<String>,
    /// What changed but takes effect only after a restart: `entry.field`, or
    /// `entry (added)` / `entry (removed)` / `entry (changed)`. The rest of the reload applies.
    pub needs_restart: Vec<String>,
}

impl Reload {
    /// Whether nothing changed (a save that rewrote the same text).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
            && self.processes.is_empty()
            && self.servers.is_empty()
            && self.needs_restart.is_empty()
    }
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("functions", &self.functions),
            ("processes", &self.processes),
            ("routes of", &self.servers),
            ("needs a restart", &self.needs_restart),
        ];
        let mut first = true;
        for (label, items) in parts.iter().filter(|(_, items)| !items.is_empty()) {
            let separator = if first { "" } else { "; " };
            write!(f, "{separator}{label}: {}", items.join(", "))?;
            first = false;
        }
        if first {
            f.write_str("nothing changed")?;
        }
        Ok(())
    }
}

/// What a reload replaces: the config in force and the prepared functions.
pub(crate) struct Live {
    pub(crate) config: AppConfig,
    pub(crate) functions: Functions,
    /// [`Functions::by_name`], what [`crate::RunningApp::handlers`] hands out.
    pub(crate) handlers: std::sync::Arc<crate::Handlers>,
    /// The routers' middleware as built, for the next routing table to reuse.
    chains: Chains,
    /// The largest relayed message the Lua engine was started to carry (its value budget is
    /// sized from it; see `engine_config`).
    message_budget: usize,
}

impl Live {
    pub(crate) fn new(config: AppConfig, functions: Functions, chains: Chains) -> Live {
        let handlers = std::sync::Arc::new(functions.by_name());
        Live {
            chains,
            message_budget: crate::largest_relay_message(&config),
            config,
            functions,
            handlers,
        }
    }
}

/// The running parts a reload changes.
pub(crate) struct Parts<'a> {
    pub(crate) engine: &'a LuaEngine,
    pub(crate) gateway: &'a RunningGateway,
    pub(crate) relay: &'a Relay,
}

/// Applies `new` to the running app. Everything fallible (compiling added functions, building
/// routing tables) happens before anything is swapped, so an error leaves the app as it was.
pub(crate) fn apply(
    parts: &Parts<'_>,
    live: &mut Live,
    new: AppConfig,
) -> Result<Reload, AppError> {
    let old = &live.config;
    let mut reload = Reload {
        needs_restart: needs_restart(old, &new, live.message_budget),
        ..Reload::default()
    };

    // Prepare: the new set of functions (existing handlers kept, added ones compiled).
    let mut functions = live.functions.clone();
    let (added, changed, removed) = lua_changes(&old.functions, &new.functions);
    for entry in &added {
        functions.add(entry, parts.engine)?;
    }
    for id in &removed {
        functions.remove(id);
    }
    let routing_changed = !added.is_empty()
        || !removed.is_empty()
        || differ(&old.routers, &new.routers)
        || differ(&old.endpoints, &new.endpoints)
        || differ(&old.statics, &new.statics);
    let mut tables: Vec<(&HttpService, Server)> = Vec::new();
    let registry = crate::registry(parts.relay);
    let mut middleware = Middlewares::new(&registry, &live.chains);
    if routing_changed {
        for (server, _) in parts.gateway.addrs() {
            // A server that left the config or changed its id keeps its routes until a
            // restart (reported by `needs_restart`).
            if let Some(service) = running_service(&new, server) {
                let table = gateway::routes(&new, service, &mut middleware, &functions.handlers)?;
                tables.push((service, table));
            }
        }
    }

    // Commit: nothing below fails on a config the validation path accepted.
    for entry in &changed {
        if let Some(code) = functions.code.get(&entry.id) {
            code.replace(gateway::spec(entry))
                .map_err(AppError::lua(entry))?;
        }
    }
    let (p_added, p_changed, p_removed) = lua_changes(&old.processes, &new.processes);
    for entry in p_added.iter().chain(&p_changed) {
        parts
            .engine
            .register_process(&entry.id.to_string(), gateway::spec(entry))
            .map_err(AppError::lua(entry))?;
    }
    for id in &p_removed {
        parts.engine.node().unregister_factory(&id.to_string());
    }
    let policies = policy_changes(old, &new);
    for (entry, policy) in &policies {
        parts
            .engine
            .set_http_client_policy(&entry.to_string(), policy.clone());
    }
    for (service, table) in tables {
        parts
            .gateway
            .replace_routes(table)
            .map_err(AppError::gateway(&service.id, &service.file))?;
        reload.servers.push(service.id.to_string());
    }

    reload.functions = names(&added, &changed, &removed);
    reload.processes = names(&p_added, &p_changed, &p_removed);
    for (entry, _) in &policies {
        let name = entry.to_string();
        let list = if new.function(entry).is_some() {
            &mut reload.functions
        } else {
            &mut reload.processes
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }
    if routing_changed {
        live.chains = middleware.built;
    }
    live.handlers = std::sync::Arc::new(functions.by_name());
    live.functions = functions;
    live.config = new;
    Ok(reload)
}

/// The entry of the running server `server` in `config`, if it is still there and started.
fn running_service<'a>(config: &'a AppConfig, server: &str) -> Option<&'a HttpService> {
    config
        .services
        .iter()
        .find(|service| service.auto_start && service.id.to_string() == server)
}

/// The Lua entries of `new` that `old` lacks, those whose code changed, and the ids `new`
/// lacks.
fn lua_changes<'a>(
    old: &[LuaEntry],
    new: &'a [LuaEntry],
) -> (Vec<&'a LuaEntry>, Vec<&'a LuaEntry>, Vec<EntryId>) {
    let before: HashMap<&EntryId, &LuaEntry> = old.iter().map(|e| (&e.id, e)).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for entry in new {
        match before.get(&entry.id) {
            None => added.push(entry),
            Some(was)
                if was.source != entry.source
                    || was.method != entry.method
                    || was.modules != entry.modules =>
            {
                changed.push(entry);
            }
            Some(_) => {}
        }
    }
    let removed = old
        .iter()
        .filter(|e| !new.iter().any(|n| n.id == e.id))
        .map(|e| e.id.clone())
        .collect();
    (added, changed, removed)
}

/// The Lua entries whose `http_client` policy changed, with the policy to set (the default
/// one when the field was removed).
fn policy_changes(old: &AppConfig, new: &AppConfig) -> Vec<(EntryId, HttpClientPolicy)> {
    let before: HashMap<&EntryId, &LuaEntry> = old
        .functions
        .iter()
        .chain(&old.processes)
        .map(|e| (&e.id, e))
        .collect();
    new.functions
        .iter()
        .chain(&new.processes)
        .filter(|entry| {
            before
                .get(&entry.id)
                .is_some_and(|was| was.http_client != entry.http_client)
        })
        .map(|entry| {
            let policy = entry
                .http_client
                .as_ref()
                .map_or_else(HttpClientPolicy::default, crate::http_client::policy);
            (entry.id.clone(), policy)
        })
        .collect()
}

fn names(added: &[&LuaEntry], changed: &[&LuaEntry], removed: &[EntryId]) -> Vec<String> {
    added
        .iter()
        .map(|e| format!("{} (added)", e.id))
        .chain(changed.iter().map(|e| e.id.to_string()))
        .chain(removed.iter().map(|id| format!("{id} (removed)")))
        .collect()
}

/// An entry compared across reloads: by id, its file ignored (moving an entry to another
/// file changes nothing).
trait Entry: Clone + PartialEq {
    fn id(&self) -> &EntryId;
    fn file(&self) -> &Path;
    fn set_file(&mut self, file: &Path);

    /// Whether `self` and `other` say the same, wherever they are written.
    fn same(&self, other: &Self) -> bool {
        let mut moved = self.clone();
        moved.set_file(other.file());
        moved == *other
    }
}

macro_rules! entries {
    ($($kind:ty),* $(,)?) => {$(
        impl Entry for $kind {
            fn id(&self) -> &EntryId {
                &self.id
            }
            fn file(&self) -> &Path {
                &self.file
            }
            fn set_file(&mut self, file: &Path) {
                self.file = file.to_path_buf();
            }
        }
    )*};
}

entries!(
    wsrelay_config::HttpService,
    wsrelay_config::HttpRouter,
    wsrelay_config::HttpEndpoint,
    wsrelay_config::HttpStatic,
    wsrelay_config::ProcessHost,
    wsrelay_config::ProcessService,
    wsrelay_config::PgScope,
    wsrelay_config::MemoryStore,
    wsrelay_config::EnvStorage,
    wsrelay_config::EnvVariable,
    wsrelay_config::ClusterConfig,
    wsrelay_config::OpsConfig,
);

/// Whether two lists of entries differ (order kept: routes depend on it).
fn differ<E: Entry>(old: &[E], new: &[E]) -> bool {
    old.len() != new.len() || old.iter().zip(new).any(|(a, b)| !a.same(b))
}

/// What differs between `old` and `new` among entries only a restart applies: the fields of
/// each listener by name, other entries whole.
fn needs_restart(old: &AppConfig, new: &AppConfig, message_budget: usize) -> Vec<String> {
    let mut out = Vec::new();
    by_id(&old.services, &new.services, &mut out, service_fields);
    by_id(&old.hosts, &new.hosts, &mut out, whole);
    by_id(
        &old.process_services,
        &new.process_services,
        &mut out,
        whole,
    );
    by_id(&old.pg_scopes, &new.pg_scopes, &mut out, whole);
    by_id(&old.memory_stores, &new.memory_stores, &mut out, whole);
    by_id(&old.env_storages, &new.env_storages, &mut out, whole);
    by_id(&old.env_variables, &new.env_variables, &mut out, whole);
    by_id(
        old.cluster.as_slice(),
        new.cluster.as_slice(),
        &mut out,
        whole,
    );
    by_id(old.ops.as_slice(), new.ops.as_slice(), &mut out, |a, b| {
        changed(&[("addr", a.addr != b.addr), ("admin", a.admin != b.admin)])
    });
    out.extend(value_budget(new, message_budget));
    out
}

/// Compares `old` and `new` by id into `out`: added, removed, and changed entries with the
/// fields `fields` names (`entry (changed)` when it names none).
fn by_id<E: Entry>(
    old: &[E],
    new: &[E],
    out: &mut Vec<String>,
    fields: impl Fn(&E, &E) -> Vec<&'static str>,
) {
    for entry in new {
        match old.iter().find(|was| was.id() == entry.id()) {
            None => out.push(format!("{} (added)", entry.id())),
            Some(was) if !was.same(entry) => {
                let named = fields(was, entry);
                if named.is_empty() {
                    out.push(format!("{} (changed)", entry.id()));
                }
                out.extend(named.iter().map(|field| format!("{}.{field}", entry.id())));
            }
            Some(_) => {}
        }
    }
    for was in old {
        if !new.iter().any(|entry| entry.id() == was.id()) {
            out.push(format!("{} (removed)", was.id()));
        }
    }
}

/// No field named: the entry is reported whole.
fn whole<E>(_: &E, _: &E) -> Vec<&'static str> {
    Vec::new()
}

fn service_fields(a: &HttpService, b: &HttpService) -> Vec<&'static str> {
    changed(&[
        ("addr", a.addr != b.addr),
        ("tls", a.tls != b.tls),
        ("h2c", a.h2c != b.h2c),
        ("trusted_proxies", a.trusted_proxies != b.trusted_proxies),
        ("proxy_protocol", a.proxy_protocol != b.proxy_protocol),
        (
            "header_read_timeout",
            a.header_read_timeout != b.header_read_timeout,
        ),
        ("lifecycle.auto_start", a.auto_start != b.auto_start),
    ])
}

fn changed(fields: &[(&'static str, bool)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect()
}

/// The routers whose relay `max_message_size` grew past what the Lua engine was started to
/// carry (its value budget is set from the largest at start): their larger messages reach a
/// Lua target only after a restart.
fn value_budget(new: &AppConfig, budget: usize) -> Vec<String> {
    new.routers
        .iter()
        .filter(|router| crate::relay_message_limit(router).is_some_and(|size| size > budget))
        .map(|router| format!("{}.post_options.max_message_size", router.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:8080"
  - name: processes
    kind: process.host
  - name: handler
    kind: function.lua
    source: "return function() return 1 end"
  - name: worker
    kind: process.lua
    source: "return { run = function() end }"
    method: run
"#;

    fn config(files: &[(&str, &str)]) -> AppConfig {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        crate::validate(dir.path(), true).expect("valid test app")
    }

    #[test]
    fn code_changes_are_told_from_additions_and_removals() {
        let old = config(&[("app.yaml", BASE)]);
        let edited = BASE
            .replace("return 1", "return 2")
            .replace("name: worker", "name: worker2");
        let new = config(&[("app.yaml", &edited)]);
        let (added, changed, removed) = lua_changes(&old.functions, &new.functions);
        assert!(added.is_empty() && removed.is_empty());
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id.to_string(), "app:handler");
        let (added, changed, removed) = lua_changes(&old.processes, &new.processes);
        assert_eq!(
            names(&added, &changed, &removed),
            ["app:worker2 (added)", "app:worker (removed)"]
        );
        assert!(needs_restart(&old, &new, 0).is_empty());
    }

    #[test]
    fn listener_fields_and_entries_only_a_restart_applies_are_named() {
        let old = config(&[("app.yaml", BASE)]);
        let edited = BASE.replace("8080", "8081").replace(
            "  - name: processes\n    kind: process.host\n",
            "  - name: processes\n    kind: process.host\n    max_processes: 10\n  - name: scope\n    kind: pg.scope\n",
        );
        let new = config(&[("app.yaml", &edited)]);
        assert_eq!(
            needs_restart(&old, &new, 0),
            [
                "app:gateway.addr",
                "app:processes (changed)",
                "app:scope (added)"
            ]
        );
    }

    #[test]
    fn an_entry_moved_to_another_file_is_unchanged() {
        let old = config(&[("app.yaml", BASE)]);
        let head = BASE.split("  - name: processes").next().unwrap();
        let rest = format!(
            "namespace: app\nentries:\n  - name: processes{}",
            BASE.split("  - name: processes").nth(1).unwrap()
        );
        let new = config(&[("app.yaml", head), ("more.yaml", &rest)]);
        assert!(needs_restart(&old, &new, 0).is_empty());
        let (added, changed, removed) = lua_changes(&old.functions, &new.functions);
        assert!(added.is_empty() && changed.is_empty() && removed.is_empty());
    }

    #[test]
    fn a_report_says_what_changed() {
        let reload = Reload {
            functions: vec!["app:a".into()],
            needs_restart: vec!["app:gateway.addr".into()],
            ..Reload::default()
        };
        assert_eq!(
            reload.to_string(),
            "functions: app:a; needs a restart: app:gateway.addr"
        );
        assert_eq!(Reload::default().to_string(), "nothing changed");
        assert!(Reload::default().is_empty());
    }
}
