//! The loader's limits: what it refuses to read, and why.
//!
//! A config is written by an operator, not by a client, but a mistake in it
//! (a FIFO named `x.yaml`, a generated file gone wrong, a symlink loop) must
//! end in an error naming the file, not in a hang or a minutes-long parse.
//! Each limit is far above what a real app needs.

/// The largest YAML file the loader reads, in bytes (1 MiB).
///
/// Checked before parsing, from the file's size on disk (and again on the
/// text for [`AppConfig::from_sources`](crate::AppConfig::from_sources)).
pub const MAX_YAML_BYTES: u64 = 1024 * 1024;

/// The largest file a `file://` source may name, in bytes (4 MiB).
///
/// Lua sources are code, not data; a bundled library is a few hundred KiB.
pub const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;

/// The deepest nesting of YAML flow collections (`[ ]`, `{ }`) accepted.
///
/// Checked by a pre-scan before parsing, because the YAML scanner's cost
/// grows with the square of the flow depth: 100,000 unclosed `[` took 20 s to
/// fail. Block nesting (by indentation) has no such cost; the parser refuses
/// any nesting deeper than 128 levels on its own.
pub const MAX_YAML_FLOW_NESTING: usize = 64;

/// How deep the loader descends into subdirectories of the app directory.
///
/// Deeper directories are reported, not silently skipped; symlink loops are
/// detected before this limit is reached.
pub const MAX_DIR_DEPTH: usize = 32;

/// Formats a byte count the way the limits above are written (`1 MiB`).
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}
