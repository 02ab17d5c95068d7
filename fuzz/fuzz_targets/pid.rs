//! PID text (docs/spec.md §2): parsing never panics, what parses prints back to the same text, and
//! every PID built from valid names parses back to itself.
//!
//! The input is tried as PID text, and also read as (node, host, id) parts.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use wsrelay_process::Pid;

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check_text(text: &str) {
    if let Ok(pid) = text.parse::<Pid>() {
        assert_eq!(pid.as_str(), text);
        assert_eq!(pid.to_string(), text);
        let again: Pid = pid.as_str().parse().expect("a printed PID parses");
        assert_eq!(again, pid);
        assert_eq!(
            (again.node(), again.host(), again.id()),
            (pid.node(), pid.host(), pid.id())
        );
    }
}

fn check_parts(node: &str, host: &str, id: u64) {
    let valid_host = !host.is_empty() && host.split(':').all(|p| p.is_empty() || is_name(p));
    if !is_name(node) || !valid_host {
        return;
    }
    let pid = Pid::new(node, host, id);
    let parsed: Pid = pid
        .as_str()
        .parse()
        .unwrap_or_else(|e| panic!("{pid} does not parse back: {e}"));
    assert_eq!(parsed, pid);
    assert_eq!(
        (parsed.node(), parsed.host(), parsed.id()),
        (node, host, id)
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
    let mut u = Unstructured::new(data);
    if let Ok((node, host, id)) = <(&str, &str, u64)>::arbitrary(&mut u) {
        check_parts(node, host, id);
    }
});
