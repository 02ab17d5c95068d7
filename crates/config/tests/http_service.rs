//! docs/spec.md §13: the `http.service` fields for TLS, HTTP/2 and proxies, and strict
//! loading (unknown fields are errors with `--strict`, warnings without).

use std::path::Path;

use wsrelay_config::{AppConfig, HttpService};

use crate::util::{find_error, opts, App};

/// An app whose only server carries `fields` (YAML lines, indented four spaces).
fn service_with(fields: &str) -> App {
    App::new().file(
        "app.yaml",
        &format!(
            "namespace: app\nentries:\n  - name: gateway\n    kind: http.service\n    addr: \"127.0.0.1:0\"\n{fields}"
        ),
    )
}

fn the_service(config: &AppConfig) -> &HttpService {
    config.services.first().expect("one http.service")
}

#[test]
fn service_defaults_to_plain_http_without_proxies() {
    let config = service_with("").load_ok();
    let service = the_service(&config);
    assert_eq!(service.tls, None);
    assert!(!service.h2c);
    assert!(service.trusted_proxies.is_empty());
    assert!(!service.proxy_protocol);
    assert_eq!(service.header_read_timeout, None);
}

#[test]
fn header_read_timeout_is_a_positive_duration() {
    let config = service_with("    header_read_timeout: 2500ms\n").load_ok();
    assert_eq!(
        the_service(&config).header_read_timeout,
        Some(std::time::Duration::from_millis(2500))
    );
    for bad in ["0s", "soon", "-1s"] {
        let errs = service_with(&format!("    header_read_timeout: \"{bad}\"\n")).load_err();
        find_error(
            &errs,
            &[
                "app/app.yaml",
                "entry app:gateway",
                "field header_read_timeout",
            ],
        );
    }
    let errs = service_with("    header_read_timeout: 30\n").load_err();
    find_error(&errs, &["entry app:gateway", "field header_read_timeout"]);
}

#[test]
fn tls_paths_are_relative_to_the_yaml_file_or_absolute() {
    let app = service_with(
        "    tls:\n      cert: certs/fullchain.pem\n      key: /etc/wsrelay/key.pem\n      client_ca: ../ca.pem\n    h2c: true\n",
    );
    let config = app.load_ok();
    let tls = the_service(&config).tls.clone().expect("tls");
    assert_eq!(tls.cert, app.root().join("certs/fullchain.pem"));
    assert_eq!(tls.key, Path::new("/etc/wsrelay/key.pem"));
    // Certificates may live beside the app: `..` is allowed here, unlike for Lua sources.
    assert_eq!(
        Some(tls.client_ca.unwrap()),
        app.root().parent().map(|p| p.join("ca.pem"))
    );
    assert!(the_service(&config).h2c);
}

#[test]
fn tls_errors_name_the_field() {
    let errs = service_with("    tls:\n      cert: a.pem\n").load_err();
    find_error(
        &errs,
        &[
            "app/app.yaml",
            "entry app:gateway",
            "field tls.key",
            "missing",
        ],
    );

    let errs = service_with("    tls: yes\n").load_err();
    find_error(
        &errs,
        &[
            "entry app:gateway",
            "field tls",
            "a map of cert, key, client_ca",
        ],
    );

    let errs = service_with("    tls: { cert: a.pem, key: b.pem, chain: c.pem }\n").load_err();
    find_error(
        &errs,
        &["entry app:gateway", "field tls.chain", "unknown TLS field"],
    );

    let errs = service_with("    tls: { cert: \"\", key: b.pem }\n").load_err();
    find_error(
        &errs,
        &["entry app:gateway", "field tls.cert", "empty path"],
    );
}

#[test]
fn trusted_proxies_take_networks_and_single_addresses() {
    let config =
        service_with("    trusted_proxies: [\"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\", \"10.1.2.3/16\"]\n")
            .load_ok();
    let nets: Vec<String> = the_service(&config)
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    // A single address is a /32 (or /128); host bits of a network are cleared.
    assert_eq!(
        nets,
        ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32", "10.1.0.0/16"]
    );
}

#[test]
fn bad_trusted_proxies_and_a_lone_proxy_protocol_are_errors() {
    let errs = service_with("    trusted_proxies: [\"10.0.0.0/8\", \"the balancer\"]\n").load_err();
    let line = find_error(&errs, &["entry app:gateway", "field trusted_proxies[1]"]);
    assert!(line.contains("the balancer"), "{line}");

    let errs = service_with("    proxy_protocol: true\n").load_err();
    let line = find_error(&errs, &["entry app:gateway", "field proxy_protocol"]);
    assert!(line.contains("needs trusted_proxies"), "{line}");

    let config =
        service_with("    proxy_protocol: true\n    trusted_proxies: [\"10.0.0.1\"]\n").load_ok();
    assert!(the_service(&config).proxy_protocol);
}

#[test]
fn unknown_fields_are_errors_only_in_strict_mode() {
    let app = service_with("    tsl: { cert: a.pem, key: b.pem }\n    timeouts: { read: 5s }\n");
    // Default: Wippy apps may carry fields wsrelay ignores; they load (with warnings).
    let config = app.load_ok();
    assert_eq!(the_service(&config).tls, None);
    // Strict: each unknown field is an error naming it and the fields the kind has.
    let errs = AppConfig::load(app.root(), &opts().with_strict(true)).unwrap_err();
    let line = find_error(&errs, &["app/app.yaml", "entry app:gateway", "field tsl"]);
    assert!(
        line.contains("unknown field (known: addr, lifecycle, tls"),
        "{line}"
    );
    find_error(
        &errs,
        &["entry app:gateway", "field timeouts", "unknown field"],
    );
    assert_eq!(errs.iter().count(), 2, "{errs}");
}
