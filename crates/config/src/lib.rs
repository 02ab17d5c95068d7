//! wsrelay-config (work in progress).
