//! The `pg.scope` kind: its limits, and errors that name the field.

use crate::util::{find_error, App};

fn app(fields: &str) -> App {
    App::new().file(
        "groups.yaml",
        &format!("namespace: app\nentries:\n  - name: rooms\n    kind: pg.scope\n{fields}"),
    )
}

#[test]
fn limits_are_read_and_absent_ones_left_to_the_runtime() {
    let config =
        app("    max_groups: 10\n    max_members_per_group: 0\n    max_remote_members: 5000\n")
            .load_ok();
    let scope = &config.pg_scopes[0];
    assert_eq!(scope.id.to_string(), "app:rooms");
    assert_eq!(scope.max_groups, Some(10));
    assert_eq!(scope.max_members_per_group, Some(0));
    assert_eq!(scope.max_remote_members, Some(5000));

    let config = app("").load_ok();
    let scope = &config.pg_scopes[0];
    assert_eq!(
        (
            scope.max_groups,
            scope.max_members_per_group,
            scope.max_remote_members
        ),
        (None, None, None)
    );
}

#[test]
fn a_limit_that_is_not_a_count_names_file_entry_and_field() {
    let errs = app("    max_remote_members: lots\n").load_err();
    find_error(
        &errs,
        &[
            "groups.yaml",
            "entry app:rooms",
            "field max_remote_members",
            "a non-negative integer",
        ],
    );
    let errs = app("    max_remote_members: -1\n").load_err();
    find_error(&errs, &["entry app:rooms", "field max_remote_members"]);
}
