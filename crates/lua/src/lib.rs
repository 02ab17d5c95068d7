//! wsrelay-lua (work in progress).
