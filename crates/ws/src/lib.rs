//! wsrelay-ws (work in progress).
