//! wsrelay-app (work in progress).
