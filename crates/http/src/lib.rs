//! wsrelay-http (work in progress).
