//! wsrelay-relay (work in progress).
