//! The `wsrelay` command line.
fn main() {}
