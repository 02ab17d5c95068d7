//! Process identifiers.
//!
//! A [`Pid`] names one process of one node run. Its text form is the one of docs/spec.md §2:
//! `{host|0x0000a}` on the default node `local`, `{node@host|0x0000a}` elsewhere. The text is
//! computed once, so handing a PID to Lua (where PIDs are plain strings) costs no formatting.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use rustc_hash::FxSeededState;

/// The name of the default node, omitted from PID text.
pub const LOCAL_NODE: &str = "local";

/// Texts [`Pid::parse_cached`] keeps per thread, at most.
const PARSED_CACHE: usize = 4096;

thread_local! {
    static PARSED: RefCell<HashMap<Box<str>, Pid, FxSeededState>> = RefCell::new(
        HashMap::with_hasher(FxSeededState::with_seed(RandomState::new().hash_one(0u8) as usize)),
    );
}

/// The identifier of a process: node, host and a number unique per node run.
///
/// Cloning is a reference-count increment; hashing uses the number only.
///
/// # Examples
///
/// ```
/// use wsrelay_process::Pid;
///
/// let pid: Pid = "{app:processes|0x0000a}".parse().unwrap();
/// assert_eq!(pid.host(), "app:processes");
/// assert_eq!(pid.node(), "local");
/// assert_eq!(pid.id(), 10);
/// assert_eq!(pid.to_string(), "{app:processes|0x0000a}");
///
/// let remote: Pid = "{b@app:gateway|0x1f0000}".parse().unwrap();
/// assert_eq!(remote.node(), "b");
/// ```
#[derive(Clone)]
pub struct Pid(Arc<PidInner>);

struct PidInner {
    node: Arc<str>,
    host: Arc<str>,
    id: u64,
    text: Box<str>,
}

impl Pid {
    /// Builds a PID from its parts.
    pub fn new(node: impl Into<Arc<str>>, host: impl Into<Arc<str>>, id: u64) -> Pid {
        let node = node.into();
        let host = host.into();
        // Built by hand: spawning formats one PID per process, and `format!` was a third of
        // the cost of a spawn.
        let mut text = String::with_capacity(node.len() + host.len() + 24);
        text.push('{');
        if &*node != LOCAL_NODE {
            text.push_str(&node);
            text.push('@');
        }
        text.push_str(&host);
        text.push_str("|0x");
        push_hex(&mut text, id);
        text.push('}');
        Pid(Arc::new(PidInner {
            node,
            host,
            id,
            text: text.into_boxed_str(),
        }))
    }

    /// The node that owns the process (`local` by default).
    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// The registry id of the host the process runs on (e.g. `app:processes`).
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The number of the process, unique per node run.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The text form, as shown by `Display` (cached, no allocation).
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// Parses `text` as [`str::parse`] does, through a per-thread cache of the texts parsed
    /// lately.
    ///
    /// A process sends to the same few PIDs over and over (its clients), and a cluster node
    /// reads the same few in every frame it receives; a parse allocates four times, a hit
    /// clones a reference. For texts parsed once (a relay's target) it is a loss: the cache
    /// keeps their PIDs and texts alive until it fills (an idle relay connection cost ~400
    /// bytes more with `Node::resolve` going through it). The cache holds at most 4,096 texts per thread (it is cleared when
    /// full) and only texts that parse. It hashes with Fx, seeded per thread: SipHash of a PID
    /// text was ~250 instructions of every Lua send, and the seed keeps a client that makes a
    /// process send to texts of its choosing from aiming them at one bucket.
    ///
    /// # Errors
    ///
    /// As [`str::parse`].
    pub fn parse_cached(text: &str) -> Result<Pid, PidParseError> {
        if let Some(pid) = PARSED.with(|parsed| parsed.borrow().get(text).cloned()) {
            return Ok(pid);
        }
        let pid: Pid = text.parse()?;
        PARSED.with(|parsed| {
            let mut parsed = parsed.borrow_mut();
            if parsed.len() >= PARSED_CACHE {
                parsed.clear();
            }
            parsed.insert(text.into(), pid.clone());
        });
        Ok(pid)
    }

    pub(crate) fn node_arc(&self) -> &Arc<str> {
        &self.0.node
    }
}

impl PartialEq for Pid {
    fn eq(&self, other: &Pid) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.id == other.0.id
                && self.0.node == other.0.node
                && self.0.host == other.0.host)
    }
}

impl Eq for Pid {}

impl Hash for Pid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialOrd for Pid {
    fn partial_cmp(&self, other: &Pid) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pid {
    fn cmp(&self, other: &Pid) -> std::cmp::Ordering {
        (&*self.0.node, self.0.id, &*self.0.host).cmp(&(&*other.0.node, other.0.id, &*other.0.host))
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

/// Why a text is not a PID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PID {text:?}: {problem}")]
pub struct PidParseError {
    text: String,
    problem: &'static str,
}

impl PidParseError {
    fn new(text: &str, problem: &'static str) -> PidParseError {
        let mut text = text.to_owned();
        if text.len() > 64 {
            let mut end = 64;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        PidParseError { text, problem }
    }

    /// What is wrong with the text, e.g. `"missing braces"`.
    pub fn problem(&self) -> &'static str {
        self.problem
    }
}

impl FromStr for Pid {
    type Err = PidParseError;

    fn from_str(text: &str) -> Result<Pid, PidParseError> {
        let err = |problem| PidParseError::new(text, problem);
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| err("missing braces: expected {host|0xNNNNN}"))?;
        let (left, number) = inner
            .rsplit_once('|')
            .ok_or_else(|| err("missing '|' between host and number"))?;
        let digits = number
            .strip_prefix("0x")
            .ok_or_else(|| err("number must start with 0x"))?;
        if digits.len() < 5 || digits.len() > 16 {
            return Err(err("number must have 5 to 16 hex digits"));
        }
        if !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("number must be lowercase hex"));
        }
        let id = u64::from_str_radix(digits, 16).map_err(|_| err("number out of range"))?;
        let (node, host) = match left.split_once('@') {
            Some((node, host)) => (node, host),
            None => (LOCAL_NODE, left),
        };
        if node.is_empty() || !node.bytes().all(is_name_byte) {
            return Err(err("invalid node name"));
        }
        if host.is_empty() || !host.bytes().all(|b| is_name_byte(b) || b == b':') {
            return Err(err("invalid host id"));
        }
        let pid = Pid::new(node, host, id);
        if pid.as_str() != text {
            // Leading zeros beyond the five-digit minimum would not round-trip.
            return Err(err("number has extra leading zeros"));
        }
        Ok(pid)
    }
}

/// Appends `id` in lowercase hex, at least five digits.
fn push_hex(text: &mut String, id: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let width = ((64 - id.leading_zeros() as usize).div_ceil(4)).max(5);
    for shift in (0..width).rev() {
        text.push(DIGITS[((id >> (shift * 4)) & 0xf) as usize] as char);
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_parse_is_the_parse_and_keeps_only_what_parses() {
        let text = "{n1@app:p|0x1f0000}";
        let first = Pid::parse_cached(text).unwrap();
        let again = Pid::parse_cached(text).unwrap();
        assert!(Arc::ptr_eq(&first.0, &again.0), "the second parse is a hit");
        assert_eq!(first, text.parse::<Pid>().unwrap());
        for bad in ["{app:p|0x0a}", "{app:p|0x00000000000a}", "app", ""] {
            let cached = Pid::parse_cached(bad).unwrap_err();
            assert_eq!(cached.problem(), bad.parse::<Pid>().unwrap_err().problem());
            assert!(PARSED.with(|p| !p.borrow().contains_key(bad)));
        }
        // Past its bound the cache starts over, and answers stay right.
        for id in 0..PARSED_CACHE as u64 + 10 {
            let pid = Pid::new("n1", "app:p", id);
            assert_eq!(Pid::parse_cached(pid.as_str()).unwrap().id(), id);
        }
        assert!(PARSED.with(|p| p.borrow().len()) <= PARSED_CACHE);
        assert_eq!(Pid::parse_cached(text).unwrap(), first);
    }

    #[test]
    fn display_pads_to_five_digits() {
        assert_eq!(
            Pid::new("local", "app:p", 10).to_string(),
            "{app:p|0x0000a}"
        );
        assert_eq!(
            Pid::new("n1", "app:p", 0x123456).to_string(),
            "{n1@app:p|0x123456}"
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        for (text, problem) in [
            ("app:p|0x0000a", "missing braces"),
            ("{app:p 0x0000a}", "missing '|'"),
            ("{app:p|0000a}", "0x"),
            ("{app:p|0x0a}", "5 to 16"),
            ("{app:p|0x0000A}", "lowercase"),
            ("{|0x0000a}", "host"),
            ("{@app:p|0x0000a}", "node"),
            ("{app:p|0x000000a}", "leading zeros"),
        ] {
            let e = text.parse::<Pid>().unwrap_err();
            assert!(e.to_string().contains(problem), "{text}: {e}");
        }
    }

    #[test]
    fn equality_and_hash_use_all_parts() {
        let a: Pid = "{app:p|0x0000a}".parse().unwrap();
        let b = Pid::new("local", "app:p", 10);
        let c = Pid::new("local", "app:q", 10);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    proptest::proptest! {
        #[test]
        fn text_round_trips(node in "[a-z][a-z0-9_-]{0,8}", host in "[a-z]{1,5}:[a-z_]{1,8}", id in 0u64..u64::MAX) {
            let pid = Pid::new(node.as_str(), host.as_str(), id);
            let parsed: Pid = pid.as_str().parse().unwrap();
            proptest::prop_assert_eq!(parsed, pid);
        }

        #[test]
        fn parse_never_panics(text in ".{0,40}") {
            let _ = text.parse::<Pid>();
        }
    }
}
