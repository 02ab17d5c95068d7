//! The `wsrelay.ops` kind: the operations listener and its admin endpoint.

use crate::util::{find_error, App};

fn app(entries: &str) -> App {
    App::new().file("ops.yaml", &format!("namespace: sys\nentries:\n{entries}"))
}

#[test]
fn ops_entry_is_parsed_with_admin_off_by_default() {
    let config =
        app("  - name: ops\n    kind: wsrelay.ops\n    addr: \"127.0.0.1:9090\"\n").load_ok();
    let ops = config.ops.expect("ops entry");
    assert_eq!(ops.id.to_string(), "sys:ops");
    assert_eq!(ops.addr, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(ops.admin, None);

    let config = app(
        "  - name: ops\n    kind: wsrelay.ops\n    addr: \"localhost:0\"\n    admin:\n      enabled: true\n      token_env: WSRELAY_ADMIN_TOKEN\n",
    )
    .load_ok();
    let admin = config.ops.unwrap().admin.expect("admin on");
    assert_eq!(admin.token_env.as_deref(), Some("WSRELAY_ADMIN_TOKEN"));
    assert_eq!(admin.token, None);
}

#[test]
fn ops_errors_name_the_field() {
    let errs = app("  - name: ops\n    kind: wsrelay.ops\n").load_err();
    find_error(
        &errs,
        &[
            "ops.yaml",
            "entry sys:ops",
            "field addr",
            "missing required field",
        ],
    );

    let errs = app("  - name: ops\n    kind: wsrelay.ops\n    addr: \"nowhere\"\n").load_err();
    find_error(&errs, &["entry sys:ops", "field addr"]);

    // Admin on without a token source is refused: it would be open to anyone.
    let errs = app(
        "  - name: ops\n    kind: wsrelay.ops\n    addr: \":9090\"\n    admin: { enabled: true }\n",
    )
    .load_err();
    find_error(
        &errs,
        &[
            "entry sys:ops",
            "field admin.token_env",
            "missing required field",
        ],
    );

    let errs = app(
        "  - name: ops\n    kind: wsrelay.ops\n    addr: \":9090\"\n    admin: { enabled: true, token_env: \"NOT A VAR\" }\n",
    )
    .load_err();
    find_error(
        &errs,
        &["entry sys:ops", "field admin.token_env", "NOT A VAR"],
    );

    let errs = app(
        "  - name: a\n    kind: wsrelay.ops\n    addr: \":1\"\n  - name: b\n    kind: wsrelay.ops\n    addr: \":2\"\n",
    )
    .load_err();
    find_error(
        &errs,
        &["entry sys:b", "only one wsrelay.ops entry", "sys:a"],
    );
}
