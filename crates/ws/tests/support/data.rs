//! Test data, shared by the integration tests (`support::data`) and the unit tests of
//! `src/deflate.rs` (which include this file), so both compress the same kind of message.

/// A JSON array of `len` bytes (cut off at `len`): chat-like records that compress well, as
/// real traffic does.
pub(crate) fn json(len: usize) -> Vec<u8> {
    let mut text = String::from("[");
    let mut i = 0;
    while text.len() < len {
        text.push_str(&format!(r#"{{"id":{i},"user":"user{i}","online":true}},"#));
        i += 1;
    }
    text.truncate(len);
    text.into_bytes()
}
