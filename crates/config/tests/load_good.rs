//! A realistic app loads into the expected typed model.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use wsrelay_config::{EntryId, LuaKind, Method, RestartPolicy, SourceOrigin, StaticMount};

use crate::util::App;

const HTTP_YAML: &str = r#"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
    lifecycle:
      auto_start: true
  - name: admin
    kind: http.service
    addr: "[::1]:9090"
    lifecycle:
      auto_start: false
  - name: ws_router
    kind: http.router
    meta:
      server: gateway
    prefix: /ws/
    post_middleware:
      - websocket_relay
    post_options:
      wsrelay.allowed.origins: "https://app.example.com"
      wsrelay.max_message_size: 65536
  - name: api
    kind: http.router
    meta:
      server: app:gateway
    middleware: [cors]
    options:
      cors.allow.credentials: true
  - name: ws_endpoint
    kind: http.endpoint
    meta:
      router: ws_router
    method: get
    path: /connect/{room}
    func: app.ws:connect
  - name: status
    kind: http.endpoint
    meta:
      router: api
    method: GET
    path: /status
    func: app.ws:connect
  - name: site
    kind: http.static
    meta:
      server: gateway
    path: /
    directory: ./public
"#;

const WS_YAML: &str = r#"
namespace: app.ws
entries:
  - name: connect
    kind: function.lua
    source: file://connect.lua
    method: handler
    modules: [http, json, process]
    imports:
      util: lib
  - name: lib
    kind: function.lua
    source: |
      return { greet = function(name) return "hi " .. name end }
  - name: handler
    kind: process.lua
    source: file://../lua/handler.lua
    method: main
    modules: [process, channel, time, json]
  - name: chat
    kind: process.service
    process: handler
    host: app:processes
    input: [general, {max: 10}]
    lifecycle:
      auto_start: true
      restart:
        initial_delay: 500ms
        max_delay: 1m30s
        max_attempts: 5
"#;

const HOSTS_YAML: &str = r#"
namespace: app
entries:
  - name: processes
    kind: process.host
    workers: 2
    max_processes: 10000
    queue_size: 512
"#;

fn realistic_app() -> App {
    App::new()
        .file("http.yaml", HTTP_YAML)
        .file("ws/ws.yml", WS_YAML)
        .file("ws/connect.lua", "return { handler = function() end }\n")
        .file("lua/handler.lua", "return { main = function() end }\n")
        .file("hosts.yaml", HOSTS_YAML)
        .file("public/index.html", "<h1>hi</h1>")
        .file("README.md", "not yaml, ignored")
        .file(".hidden/broken.yaml", "this: [is not loaded")
}

fn id(text: &str) -> EntryId {
    text.parse().unwrap()
}

#[test]
fn realistic_app_loads() {
    let app = realistic_app();
    let config = app.load_ok();

    assert_eq!(config.services.len(), 2);
    let gateway = config.service(&id("app:gateway")).unwrap();
    assert_eq!(gateway.addr, "0.0.0.0:8080".parse::<SocketAddr>().unwrap());
    assert!(gateway.auto_start);
    assert!(gateway.file.ends_with("app/http.yaml"));
    let admin = config.service(&id("app:admin")).unwrap();
    assert_eq!(admin.addr, "[::1]:9090".parse::<SocketAddr>().unwrap());
    assert!(!admin.auto_start);

    let ws_router = config.router(&id("app:ws_router")).unwrap();
    assert_eq!(ws_router.server, id("app:gateway"));
    assert_eq!(ws_router.prefix, "/ws");
    assert_eq!(ws_router.post_middleware, ["websocket_relay"]);
    assert_eq!(
        ws_router.post_options["wsrelay.allowed.origins"],
        "https://app.example.com"
    );
    assert_eq!(ws_router.post_options["wsrelay.max_message_size"], "65536");
    let api = config.router(&id("app:api")).unwrap();
    assert_eq!(api.prefix, "/");
    assert_eq!(api.middleware, ["cors"]);
    assert_eq!(api.options["cors.allow.credentials"], "true");
    assert_eq!(config.routers_of(&id("app:gateway")).count(), 2);

    let endpoint = &config.endpoints[0];
    assert_eq!(endpoint.id, id("app:ws_endpoint"));
    assert_eq!(endpoint.method, Method::Get);
    assert_eq!(endpoint.path, "/connect/{room}");
    assert_eq!(endpoint.params, ["room"]);
    assert_eq!(endpoint.func, id("app.ws:connect"));
    assert_eq!(config.endpoints_of(&id("app:api")).count(), 1);

    let site = &config.statics[0];
    assert_eq!(site.mount, StaticMount::Server(id("app:gateway")));
    assert_eq!(site.path, "/");
    assert_eq!(site.directory, app.root().join("public"));
    assert_eq!(site.index, "index.html");
    assert!(!site.allow_dotfiles, "dotfiles are refused by default");

    let connect = config.function(&id("app.ws:connect")).unwrap();
    assert_eq!(connect.kind, LuaKind::Function);
    assert_eq!(connect.source, "return { handler = function() end }\n");
    assert_eq!(
        connect.origin,
        SourceOrigin::File(app.root().join("ws/connect.lua"))
    );
    assert!(connect.chunk_name.ends_with("ws/connect.lua"));
    assert_eq!(connect.method.as_deref(), Some("handler"));
    assert_eq!(connect.modules, ["http", "json", "process"]);
    assert_eq!(connect.imports["util"], id("app.ws:lib"));
    let lib = config.function(&id("app.ws:lib")).unwrap();
    assert_eq!(lib.origin, SourceOrigin::Inline);
    assert_eq!(lib.chunk_name, "app.ws:lib");
    assert_eq!(lib.method, None);

    let handler = config.process(&id("app.ws:handler")).unwrap();
    assert_eq!(handler.kind, LuaKind::Process);
    assert_eq!(
        handler.origin,
        SourceOrigin::File(app.root().join("lua/handler.lua"))
    );

    let host = config.host(&id("app:processes")).unwrap();
    assert_eq!(host.workers, Some(2));
    assert_eq!(host.max_processes, Some(10000));
    assert_eq!(host.options["queue_size"], json!(512));

    let chat = &config.process_services[0];
    assert_eq!(chat.process, id("app.ws:handler"));
    assert_eq!(chat.host, id("app:processes"));
    assert_eq!(chat.input, [json!("general"), json!({"max": 10})]);
    assert!(chat.auto_start);
    assert_eq!(chat.restart.initial_delay, Duration::from_millis(500));
    assert_eq!(chat.restart.max_delay, Duration::from_secs(90));
    assert_eq!(chat.restart.max_attempts, Some(5));
    assert_eq!(chat.restart.backoff_factor, 2.0);

    assert!(config.cluster.is_none());
}

#[test]
fn defaults_apply() {
    let app = App::new().file(
        "app.yaml",
        r#"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: "localhost:8080"
  - name: processes
    kind: process.host
  - name: worker
    kind: process.lua
    source: "return function() end"
  - name: svc
    kind: process.service
    process: worker
    host: processes
  - name: once
    kind: process.service
    process: worker
    host: processes
    input: solo
    lifecycle:
      restart: false
"#,
    );
    let config = app.load_ok();
    assert_eq!(config.services[0].addr.to_string(), "127.0.0.1:8080");
    assert!(config.services[0].auto_start);
    let svc = &config.process_services[0];
    assert!(
        !svc.auto_start,
        "process.service does not auto start by default"
    );
    assert_eq!(svc.restart, RestartPolicy::default());
    assert!(svc.input.is_empty());
    assert_eq!(svc.restart.delay(0), Duration::from_secs(1));
    assert_eq!(svc.restart.delay(3), Duration::from_secs(8));
    assert_eq!(svc.restart.delay(30), Duration::from_secs(60));
    let once = &config.process_services[1];
    assert_eq!(once.restart.max_attempts, Some(0));
    assert_eq!(once.input, [json!("solo")]);
    assert_eq!(config.hosts[0].workers, None);
}

#[test]
fn cluster_entry_is_parsed() {
    let app = App::new().file(
        "cluster.yaml",
        r#"
namespace: app
entries:
  - name: cluster
    kind: cluster
    node: node-a
    nats_urls: ["nats://127.0.0.1:4222"]
    credentials: secrets/app.creds
    tls:
      ca: certs/ca.pem
    secret_file: secrets/cluster.secret
    max_peers: 32
"#,
    );
    let config = app.load_ok();
    let cluster = config.cluster.unwrap();
    assert_eq!(
        cluster.secret_file.as_deref(),
        Some(app.root().join("secrets/cluster.secret").as_path())
    );
    assert_eq!(cluster.max_peers, Some(32));
    assert_eq!(cluster.node.as_deref(), Some("node-a"));
    assert_eq!(cluster.nats_urls, ["nats://127.0.0.1:4222"]);
    assert_eq!(
        cluster.credentials.unwrap(),
        app.root().join("secrets/app.creds")
    );
    assert_eq!(
        cluster.tls.unwrap().ca.unwrap(),
        app.root().join("certs/ca.pem")
    );
}

#[test]
fn cluster_secret_file_may_be_absolute_and_both_fields_are_optional() {
    let cluster = |fields: &str| {
        App::new()
            .file(
                "cluster.yaml",
                &format!(
                    "namespace: app\nentries:\n  - name: cluster\n    kind: cluster\n    nats_urls: [\"nats://127.0.0.1:4222\"]\n{fields}"
                ),
            )
            .load_ok()
            .cluster
            .unwrap()
    };
    // A mounted secret lives outside the app directory.
    let mounted = cluster("    secret_file: /run/secrets/wsrelay-cluster\n");
    assert_eq!(
        mounted.secret_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/wsrelay-cluster"))
    );
    let bare = cluster("");
    assert_eq!((bare.secret_file, bare.max_peers), (None, None));
}

#[test]
fn files_load_in_sorted_order() {
    let entry = |name: &str| {
        format!("namespace: app\nentries:\n  - name: {name}\n    kind: process.host\n")
    };
    let app = App::new()
        .file("b.yaml", &entry("b"))
        .file("a/z.yml", &entry("az"))
        .file("c.yaml", &entry("c"));
    let names: Vec<String> = app
        .load_ok()
        .hosts
        .iter()
        .map(|host| host.id.name().to_owned())
        .collect();
    assert_eq!(names, ["az", "b", "c"]);
}

/// The base app, a directory `www` and the `http.static` entry `entry` (YAML lines under
/// `entries:`) in the file `file`.
fn static_app(file: &str, entry: &str) -> App {
    App::new()
        .file("base.yaml", crate::util::BASE)
        .file(file, &format!("namespace: app\nentries:\n{entry}"))
        .dir("www")
}

#[test]
fn static_on_router_with_custom_index() {
    let app = static_app(
        "site/static.yaml",
        "  - name: docs\n    kind: http.static\n    meta: {router: api}\n    path: /docs/\n    directory: ../www\n    index: main.html\n",
    );
    let config = app.load_ok();
    let docs = &config.statics[0];
    assert_eq!(docs.mount, StaticMount::Router(id("app:api")));
    assert_eq!(docs.path, "/docs");
    assert_eq!(docs.directory, app.root().join("www"));
    assert_eq!(docs.index, "main.html");
}

#[test]
fn static_can_allow_dotfiles() {
    let app = static_app(
        "site.yaml",
        "  - name: wk\n    kind: http.static\n    meta: {router: api}\n    path: /.well-known\n    directory: www\n    dotfiles: allow\n",
    );
    assert!(app.load_ok().statics[0].allow_dotfiles);
}

/// Two `store.memory` entries: `tickets` with a `max_size` of `tickets_max_size`, `cache`
/// without one.
fn stores_app(tickets_max_size: u64) -> App {
    App::new().file(
        "stores.yaml",
        &format!(
            r#"
namespace: app
entries:
  - name: tickets
    kind: store.memory
    max_size: {tickets_max_size}
    lifecycle:
      auto_start: true
  - name: cache
    kind: store.memory
"#
        ),
    )
}

#[test]
fn memory_stores_load_with_their_max_size() {
    let app = stores_app(500).load_ok();
    let stores: Vec<(String, Option<u64>)> = app
        .memory_stores
        .iter()
        .map(|s| (s.id.to_string(), s.max_size))
        .collect();
    assert_eq!(
        stores,
        [
            ("app:tickets".to_owned(), Some(500)),
            ("app:cache".to_owned(), None)
        ]
    );
}

#[test]
fn memory_store_refuses_a_zero_max_size() {
    let errs = stores_app(0).load_err();
    let line = crate::util::find_error(&errs, &["app:tickets", "max_size"]);
    assert!(line.contains("must be greater than zero"), "{line}");
}
