//! The Lua 5.4 pattern matcher, with a step budget.
//!
//! Same algorithm and results as `lstrlib.c` (backtracking, the same order of attempts, the
//! same 200-level recursion limit and the same errors, raised lazily where the C matcher
//! raises them), so matches and captures are identical. What it adds is a budget: every
//! step (an attempt at a pattern item, one character of a repetition or of a `%b` scan)
//! spends one unit, and when the budget of the call runs out the match fails with
//! `pattern too complex` — the error C Lua gives when the recursion gets too deep. The C
//! matcher has no such bound: `("a"):rep(22):find(("a*"):rep(22) .. "b")` runs for hours
//! inside one C call, where the instruction hook never fires.
//!
//! Positions are byte offsets (0-based) into the subject; the pattern is read as bytes, and
//! reading one past its end gives `0`, as C reads the terminating NUL.

/// The most captures a pattern may have (`LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;

/// The deepest recursion of the matcher (`MAXCCALLS` in `lstrlib.c`).
const MAX_DEPTH: u32 = 200;

/// The error of a pattern that is too costly: too deep or over the step budget.
pub(crate) const TOO_COMPLEX: &str = "pattern too complex";

/// A pattern error, with the text C Lua raises for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternError(pub(crate) String);

impl PatternError {
    fn new(text: impl Into<String>) -> PatternError {
        PatternError(text.into())
    }
}

type Step<T> = Result<T, PatternError>;

/// How long a capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapLen {
    /// Opened, not closed yet.
    Unfinished,
    /// A position capture `()`.
    Position,
    /// A closed capture of this many bytes.
    Len(usize),
}

#[derive(Debug, Clone, Copy)]
struct Capture {
    init: usize,
    len: CapLen,
}

/// One capture of a successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The bytes `start..end` of the subject.
    Text(usize, usize),
    /// A position capture: the 1-based position.
    Position(usize),
}

/// The state of matching one pattern against one subject; the budget is shared by every
/// attempt made with it.
pub(crate) struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    captures: [Capture; MAX_CAPTURES],
    depth: u32,
    steps: u64,
}

impl<'a> Matcher<'a> {
    /// A matcher of `pat` against `src` that may take `steps` steps in all.
    pub(crate) fn new(src: &'a [u8], pat: &'a [u8], steps: u64) -> Matcher<'a> {
        Matcher {
            src,
            pat,
            level: 0,
            captures: [Capture {
                init: 0,
                len: CapLen::Unfinished,
            }; MAX_CAPTURES],
            depth: MAX_DEPTH,
            steps,
        }
    }

    /// The subject.
    pub(crate) fn subject(&self) -> &'a [u8] {
        self.src
    }

    /// Matches the pattern from byte `p` on against the subject at `s` exactly (no search);
    /// the end of the match if it succeeds. Captures are those of this attempt.
    pub(crate) fn match_at(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        self.level = 0;
        self.depth = MAX_DEPTH;
        self.do_match(s, p)
    }

    /// The captures of the last successful match. With `whole = Some((s, e))` and no
    /// captures in the pattern, the whole match is the one capture (as `string.match`
    /// returns it); with `None` there are none (as `string.find` returns them).
    pub(crate) fn captures(&self, whole: Option<(usize, usize)>) -> Step<Vec<Cap>> {
        let count = match whole {
            Some(_) if self.level == 0 => 1,
            _ => self.level,
        };
        let (s, e) = whole.unwrap_or((0, 0));
        (0..count).map(|i| self.capture(i, s, e)).collect()
    }

    /// Capture `i` (0-based) of the last match; `s..e` is the whole match, which is capture
    /// 0 of a pattern without captures (`%0` and `%1` in a `gsub` replacement).
    pub(crate) fn capture(&self, i: usize, s: usize, e: usize) -> Step<Cap> {
        if i >= self.level {
            if i != 0 {
                return Err(PatternError(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Cap::Text(s, e));
        }
        let capture = self.captures[i];
        match capture.len {
            CapLen::Unfinished => Err(PatternError::new("unfinished capture")),
            CapLen::Position => Ok(Cap::Position(capture.init + 1)),
            CapLen::Len(len) => Ok(Cap::Text(capture.init, capture.init + len)),
        }
    }

    /// The pattern byte at `p` (`0` at and past the end, like C's terminating NUL).
    fn pb(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    /// The subject byte at `s` (`0` at and past the end).
    fn sb(&self, s: usize) -> u8 {
        self.src.get(s).copied().unwrap_or(0)
    }

    fn tick(&mut self) -> Step<()> {
        match self.steps.checked_sub(1) {
            Some(left) => {
                self.steps = left;
                Ok(())
            }
            None => Err(PatternError::new(TOO_COMPLEX)),
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        if self.depth == 0 {
            return Err(PatternError::new(TOO_COMPLEX));
        }
        self.depth -= 1;
        let result = self.match_here(s, p);
        self.depth += 1;
        result
    }

    /// The body of `match` in `lstrlib.c`; each `continue` is its `goto init` (a tail call).
    fn match_here(&mut self, mut s: usize, mut p: usize) -> Step<Option<usize>> {
        loop {
            self.tick()?;
            if p == self.pat.len() {
                return Ok(Some(s));
            }
            match self.pat[p] {
                b'(' if self.pb(p + 1) == b')' => {
                    return self.start_capture(s, p + 2, CapLen::Position)
                }
                b'(' => return self.start_capture(s, p + 1, CapLen::Unfinished),
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                b'%' if self.pb(p + 1) == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                b'%' if self.pb(p + 1) == b'f' => {
                    p += 2;
                    if self.pb(p) != b'[' {
                        return Err(PatternError::new("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    if !self.bracket_class(previous, p, ep - 1)
                        && self.bracket_class(self.sb(s), p, ep - 1)
                    {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                b'%' if self.pb(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.pb(p + 1))? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {}
            }
            // A single-character class with an optional suffix.
            let ep = self.class_end(p)?;
            let suffix = self.pb(ep);
            if !self.single_match(s, p, ep) {
                if matches!(suffix, b'*' | b'?' | b'-') {
                    p = ep + 1;
                    continue;
                }
                return Ok(None);
            }
            match suffix {
                b'?' => {
                    if let Some(end) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(end));
                    }
                    p = ep + 1;
                }
                b'+' => return self.max_expand(s + 1, p, ep),
                b'*' => return self.max_expand(s, p, ep),
                b'-' => return self.min_expand(s, p, ep),
                _ => {
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, len: CapLen) -> Step<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return Err(PatternError::new("too many captures"));
        }
        self.captures[self.level] = Capture { init: s, len };
        self.level += 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        let l = self.capture_to_close()?;
        self.captures[l].len = CapLen::Len(s - self.captures[l].init);
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.captures[l].len = CapLen::Unfinished;
        }
        Ok(result)
    }

    fn capture_to_close(&self) -> Step<usize> {
        (0..self.level)
            .rev()
            .find(|&l| self.captures[l].len == CapLen::Unfinished)
            .ok_or_else(|| PatternError::new("invalid pattern capture"))
    }

    /// A back-reference `%1`-`%9` (and the invalid `%0`).
    fn match_capture(&mut self, s: usize, digit: u8) -> Step<Option<usize>> {
        let l = usize::from(digit).wrapping_sub(usize::from(b'1'));
        let closed = match self.captures.get(l) {
            Some(capture) if l < self.level => capture.len,
            _ => CapLen::Unfinished,
        };
        let len = match closed {
            CapLen::Unfinished => {
                let index = i32::from(digit) - i32::from(b'0');
                return Err(PatternError(format!("invalid capture index %{index}")));
            }
            // A position is no text: C compares it as a huge length, which never fits.
            CapLen::Position => return Ok(None),
            CapLen::Len(len) => len,
        };
        let init = self.captures[l].init;
        let fits = self.src.len() - s >= len;
        Ok((fits && self.src[init..init + len] == self.src[s..s + len]).then_some(s + len))
    }

    /// Where the single-character class at `p` ends (the index of its optional suffix).
    fn class_end(&self, p: usize) -> Step<usize> {
        let mut p = p;
        let first = self.pb(p);
        p += 1;
        match first {
            b'%' => {
                if p == self.pat.len() {
                    return Err(PatternError::new("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.pb(p) == b'^' {
                    p += 1;
                }
                // The first character is taken literally, so `[]]` is a set holding `]`.
                loop {
                    if p == self.pat.len() {
                        return Err(PatternError::new("malformed pattern (missing ']')"));
                    }
                    let c = self.pat[p];
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.pb(p) == b']' {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            b'%' => class_matches(c, self.pb(p + 1)),
            b'[' => self.bracket_class(c, p, ep - 1),
            literal => literal == c,
        }
    }

    /// Whether `c` is in the set `[...]` between `p` (the `[`) and `ec` (the `]`).
    fn bracket_class(&self, c: u8, p: usize, ec: usize) -> bool {
        let mut p = p;
        let mut found = true;
        if self.pb(p + 1) == b'^' {
            found = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !found;
            }
            if self.pat[p] == b'%' {
                p += 1;
                if class_matches(c, self.pb(p)) {
                    return found;
                }
            } else if self.pb(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.pat[p - 2] <= c && c <= self.pat[p] {
                    return found;
                }
            } else if self.pat[p] == c {
                return found;
            }
        }
    }

    /// `%bxy`: a balanced run from `x` to the matching `y`.
    fn match_balance(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(PatternError::new(
                "malformed pattern (missing arguments to '%b')",
            ));
        }
        if self.sb(s) != self.pat[p] {
            return Ok(None);
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        let mut depth = 1;
        for i in s + 1..self.src.len() {
            self.tick()?;
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    /// `x*` and `x+`: the longest run first, then shorter ones.
    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            self.tick()?;
            i += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    /// `x-`: the shortest run first, then longer ones.
    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single_match(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }
}

/// Whether `c` is in the class `%cl` (`%a`, `%d`, ...; an upper-case letter negates it; any
/// other character stands for itself). ASCII only, as C's classification in the "C" locale.
fn class_matches(c: u8, cl: u8) -> bool {
    let in_class = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace also has the vertical tab, which Rust's is_ascii_whitespace lacks.
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return cl == c,
    };
    if cl.is_ascii_lowercase() {
        in_class
    } else {
        !in_class
    }
}

/// Whether a pattern has none of the characters that make it a pattern, so `string.find` may
/// search it as plain text.
pub(crate) fn has_no_specials(pat: &[u8]) -> bool {
    !pat.iter().any(|b| b"^$*+?.([%-".contains(b))
}
