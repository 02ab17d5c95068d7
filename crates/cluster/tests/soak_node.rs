//! Nodes D and E of the chaos soak (`soak.rs`) as OS processes, so that the soak can SIGKILL
//! and SIGSTOP nodes: the soak runs this test binary again with `WSR_SOAK_NODE` set, and
//! only then does [`node_process`] start a node (otherwise it returns at once).
//!
//! The node runs a factory process that says `hello` to the soak's listener (its PID in
//! `WSR_SOAK_PARENT`) and, on `spawn` with a count, spawns that many [`echo`] targets (they
//! end on `stop`) and answers `spawned` with their PIDs as text.

use std::process::{Child, Command};
use std::time::Duration;

use wsrelay_process::{Pid, SpawnOptions, Value};

use crate::support::*;

const NODE_VAR: &str = "WSR_SOAK_NODE";
const PARENT_VAR: &str = "WSR_SOAK_PARENT";

/// Starts node `name` as a child process of this test binary, its factory greeting `parent`.
pub(crate) fn spawn_node(name: &str, parent: &Pid) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "soak_node::node_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(NODE_VAR, name)
        .env(PARENT_VAR, parent.as_str())
        .env(PORTS_VAR, ports().to_env())
        .spawn()
        .expect("the node process starts")
}

#[test]
#[ignore = "the soak's nodes D and E: runs only when the soak starts it"]
fn node_process() {
    let (Ok(name), Ok(parent)) = (std::env::var(NODE_VAR), std::env::var(PARENT_VAR)) else {
        return;
    };
    let parent: Pid = parent.parse().expect("the parent PID");
    let started_by = std::os::unix::process::parent_id();
    rt().block_on(async move {
        let c = start(&name).await;
        let node = c.node().clone();
        let factory = c
            .node()
            .spawn(HOST, SpawnOptions::new(), move |ctx| async move {
                // Greets until the soak asks for targets: the first hellos may go out before
                // the session to the soak's node is up.
                let mut greeted = false;
                loop {
                    if !greeted {
                        let _ = ctx.send(&parent, "hello", Value::Null);
                    }
                    let Ok(msg) =
                        tokio::time::timeout(Duration::from_millis(300), ctx.recv()).await
                    else {
                        continue;
                    };
                    greeted = true;
                    if msg.topic() == "quit" {
                        return;
                    }
                    let (Some(from), Value::Int(n)) = (msg.from().cloned(), msg.payload()) else {
                        continue;
                    };
                    let pids = (0..*n)
                        .map(|_| Value::String(echo(&node, "echo").as_str().to_owned()))
                        .collect();
                    let _ = ctx.send(&from, "spawned", Value::Array(pids));
                }
            })
            .expect("the factory");
        drop(factory);
        // Ends with the soak (SIGKILL, or the soak gone).
        while std::os::unix::process::parent_id() == started_by {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c.shutdown();
    });
}
