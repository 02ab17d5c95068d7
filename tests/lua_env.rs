//! `env.storage.*` and `env.variable` entries as a Lua handler reads them through the `env`
//! module, with a `${env:NAME|default}` placeholder resolved at load time.

use crate::support::ops::{body_of, get, status_of, TestApp};

/// The env entries of the config tests.
const ENV_ENTRIES: &str = include_str!("../crates/config/tests/fixtures/env_entries.yaml");

/// A handler that reads and writes them.
const HANDLER: &str = r#"  - name: read_env
    kind: function.lua
    modules: [http, env]
    method: handler
    source: |
      local http = require("http")
      local env = require("env")
      local function handler()
        local secret = env.get("JWT_SECRET")
        local _, denied = env.set("JWT_SECRET", "x")
        assert(env.set("REGION", "us-2"))
        http.response():write(secret .. " " .. denied:kind() .. " " .. env.get("REGION"))
      end
      return { handler = handler }
  - name: read_env_ep
    kind: http.endpoint
    meta: { router: api }
    method: GET
    path: /env
    func: read_env
"#;

#[tokio::test]
async fn lua_reads_declared_variables_through_their_storages() {
    let t = TestApp::start_with_files(
        &format!("{ENV_ENTRIES}{HANDLER}"),
        &[("app.env", "JWT_SECRET=from-file\n")],
    )
    .await;
    let answer = get(t.addr, "/api/env", "").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    // The file supplies the secret (read-only), the static storage the placeholder's
    // default, and the write lands in memory, first in the router.
    assert_eq!(body_of(&answer), "from-file PERMISSION_DENIED us-2");
    t.stop().await;
}
