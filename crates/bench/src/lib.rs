//! wsrelay-bench (work in progress).
