//! The Rust side of `string.find`, `string.match`, `string.gmatch` and `string.gsub`.
//!
//! Each function returns its results, or the error text (see [`super::reply`]). `gsub` with a
//! function or table
//! replacement, and the `gmatch` iterator, call back into Lua from the wrapper, not from
//! Rust: the replacement function then runs as ordinary Lua code (preemptible, its errors
//! propagate unchanged) and each Rust call does a bounded amount of work.

use mlua::{Integer, Lua, LuaString, MultiValue, Value as LuaValue};

use super::args::{start_position, Args};
use super::matcher::{has_no_specials, Cap, Matcher, PatternError};

/// What one call of a pattern function may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Matcher steps per call (see [`Matcher`]).
    pub(crate) steps: u64,
    /// The longest string `gsub` may build.
    pub(crate) max_len: usize,
}

/// A result being built, or the error text for the wrapper to raise.
type Out = Result<MultiValue, String>;

impl From<PatternError> for String {
    fn from(e: PatternError) -> String {
        e.0
    }
}

/// The text of capture `cap` of `src` as a Lua value.
fn cap_value(lua: &Lua, src: &[u8], cap: Cap) -> Result<LuaValue, String> {
    Ok(match cap {
        Cap::Text(start, end) => LuaValue::String(string(lua, &src[start..end])?),
        Cap::Position(pos) => LuaValue::Integer(pos as Integer),
    })
}

fn string(lua: &Lua, bytes: &[u8]) -> Result<LuaString, String> {
    lua.create_string(bytes).map_err(|e| e.to_string())
}

/// The 0-based start of a search: `init` (argument 3) counted as Lua does; `None` when it is
/// past the end of the subject (nothing can be found).
fn search_start(args: &Args, len: usize) -> Result<Option<usize>, String> {
    let init = start_position(args.opt_integer(3, 1)?, len) - 1;
    Ok((init <= len).then_some(init))
}

/// `string.find(s, pattern [, init [, plain]])` and `string.match(s, pattern [, init])`.
pub(crate) fn find(lua: &Lua, values: &[LuaValue], limits: Limits, find: bool) -> Out {
    let args = Args::new(
        lua,
        values,
        if find { "string.find" } else { "string.match" },
    );
    let subject = args.string(1)?;
    let pattern = args.string(2)?;
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let Some(init) = search_start(&args, src.len())? else {
        return Ok(MultiValue::from_iter([LuaValue::Nil]));
    };
    let plain = args
        .get(4)
        .is_some_and(|v| !matches!(v, LuaValue::Nil | LuaValue::Boolean(false)));
    if find && (plain || has_no_specials(&pat)) {
        return Ok(match memchr::memmem::find(&src[init..], &pat) {
            Some(at) => MultiValue::from_iter([
                LuaValue::Integer((init + at + 1) as Integer),
                LuaValue::Integer((init + at + pat.len()) as Integer),
            ]),
            None => MultiValue::from_iter([LuaValue::Nil]),
        });
    }
    let (anchored, p0) = anchor(&pat);
    let mut matcher = Matcher::new(&src, &pat, limits.steps);
    for start in init..=src.len() {
        if let Some(end) = matcher.match_at(start, p0)? {
            let mut out = MultiValue::new();
            let captures = if find {
                out.push_back(LuaValue::Integer((start + 1) as Integer));
                out.push_back(LuaValue::Integer(end as Integer));
                matcher.captures(None)?
            } else {
                matcher.captures(Some((start, end)))?
            };
            for cap in captures {
                out.push_back(cap_value(lua, &src, cap)?);
            }
            return Ok(out);
        }
        if anchored {
            break;
        }
    }
    Ok(MultiValue::from_iter([LuaValue::Nil]))
}

/// Whether the pattern is anchored (`^` first), and where its items start.
fn anchor(pat: &[u8]) -> (bool, usize) {
    match pat.first() {
        Some(b'^') => (true, 1),
        _ => (false, 0),
    }
}

/// `string.gmatch(s, pattern [, init])`: checks the arguments and returns the subject, the
/// pattern (numbers converted to strings) and the 0-based position to scan from, for the
/// iterator the wrapper builds on [`scan`].
pub(crate) fn gmatch(lua: &Lua, values: &[LuaValue]) -> Out {
    let args = Args::new(lua, values, "string.gmatch");
    let subject = args.string(1)?;
    let pattern = args.string(2)?;
    let len = subject.as_bytes().len();
    let init = start_position(args.opt_integer(3, 1)?, len) - 1;
    // Past the end: start one past it, where nothing (not even an empty match) is found.
    let from = if init > len { len + 1 } else { init };
    Ok(MultiValue::from_iter([
        LuaValue::String(subject),
        LuaValue::String(pattern),
        LuaValue::Integer(from as Integer),
    ]))
}

/// The arguments of [`scan`]: subject, pattern, from, last, anchored mode, first capture only.
pub(crate) type ScanArgs = (LuaString, LuaString, Integer, Integer, bool, bool);

/// The next match of `pattern` in `subject` starting at byte `from` or later whose end is not
/// `last` (an empty match right after the previous match is skipped, as C's `lastmatch`).
/// Returns `start, end` (0-based, end exclusive) and the captures (the whole match if the
/// pattern has none), or nothing. With `anchored_mode` (gsub) a leading `^` anchors the
/// pattern at `from`; otherwise (gmatch) it is an ordinary character. With `first_only`
/// (gsub with a table) only the first capture is taken, so a later unfinished capture is
/// no error, as in C.
pub(crate) fn scan(lua: &Lua, args: ScanArgs, limits: Limits) -> Out {
    let (subject, pattern, from, last, anchored_mode, first_only) = args;
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let (anchored, p0) = if anchored_mode {
        anchor(&pat)
    } else {
        (false, 0)
    };
    let last = usize::try_from(last).ok();
    let from = usize::try_from(from).unwrap_or(0);
    let mut matcher = Matcher::new(&src, &pat, limits.steps);
    for start in from..=src.len() {
        match matcher.match_at(start, p0)? {
            Some(end) if Some(end) != last => {
                let mut out = MultiValue::new();
                out.push_back(LuaValue::Integer(start as Integer));
                out.push_back(LuaValue::Integer(end as Integer));
                let captures = if first_only {
                    vec![matcher.capture(0, start, end)?]
                } else {
                    matcher.captures(Some((start, end)))?
                };
                for cap in captures {
                    out.push_back(cap_value(lua, &src, cap)?);
                }
                return Ok(out);
            }
            _ if anchored => break,
            _ => {}
        }
    }
    Ok(MultiValue::new())
}

/// `string.gsub(s, pattern, repl [, n])`. With a string (or number) replacement the whole
/// substitution is done here: returns `result, count`. With a function or a table it returns
/// `true, subject, pattern, n` and the wrapper drives the substitution with [`scan`].
pub(crate) fn gsub(lua: &Lua, values: &[LuaValue], limits: Limits) -> Out {
    let args = Args::new(lua, values, "string.gsub");
    let subject = args.string(1)?;
    let pattern = args.string(2)?;
    let len = subject.as_bytes().len();
    let max = args.opt_integer(4, len as Integer + 1)?;
    let repl = match args.get(3) {
        Some(LuaValue::Function(_) | LuaValue::Table(_)) => {
            return Ok(MultiValue::from_iter([
                LuaValue::Boolean(true),
                LuaValue::String(subject),
                LuaValue::String(pattern),
                LuaValue::Integer(max),
            ]));
        }
        Some(LuaValue::String(_) | LuaValue::Integer(_) | LuaValue::Number(_)) => args.string(3)?,
        _ => return Err(args.type_error(3, "string/function/table")),
    };
    let (src, pat, repl) = (subject.as_bytes(), pattern.as_bytes(), repl.as_bytes());
    let (result, count) = substitute(&src, &pat, &repl, max, limits)?;
    let result = match result {
        Some(bytes) => string(lua, &bytes)?,
        None => subject.clone(),
    };
    Ok(MultiValue::from_iter([
        LuaValue::String(result),
        LuaValue::Integer(count),
    ]))
}

/// The substitution of `gsub` with a replacement string: the new text (`None` if nothing
/// matched) and the number of matches replaced.
fn substitute(
    src: &[u8],
    pat: &[u8],
    repl: &[u8],
    max: Integer,
    limits: Limits,
) -> Result<(Option<Vec<u8>>, Integer), String> {
    let (anchored, p0) = anchor(pat);
    let mut matcher = Matcher::new(src, pat, limits.steps);
    let mut out = Vec::new();
    let (mut pos, mut last, mut count) = (0usize, None, 0 as Integer);
    while count < max {
        match matcher.match_at(pos, p0)? {
            Some(end) if Some(end) != last => {
                count += 1;
                expand(&mut out, &matcher, repl, pos, end)?;
                pos = end;
                last = Some(end);
            }
            _ if pos < src.len() => {
                out.push(src[pos]);
                pos += 1;
            }
            _ => break,
        }
        if out.len() > limits.max_len {
            return Err("not enough memory".to_owned());
        }
        if anchored {
            break;
        }
    }
    if count == 0 {
        return Ok((None, 0));
    }
    out.extend_from_slice(&src[pos..]);
    Ok((Some(out), count))
}

/// Appends the replacement string for the match `s..e`: `%0` is the match, `%1`-`%9` its
/// captures (`%1` is the match when there are none), `%%` a percent sign.
fn expand(
    out: &mut Vec<u8>,
    matcher: &Matcher,
    repl: &[u8],
    s: usize,
    e: usize,
) -> Result<(), String> {
    let src = matcher.subject();
    let mut rest = repl;
    while let Some(at) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..at]);
        // Past the end C reads the terminating NUL, which is an invalid escape.
        let escaped = rest.get(at + 1).copied().unwrap_or(0);
        match escaped {
            b'%' => out.push(b'%'),
            b'0' => out.extend_from_slice(&src[s..e]),
            b'1'..=b'9' => match matcher.capture(usize::from(escaped - b'1'), s, e)? {
                Cap::Text(start, end) => out.extend_from_slice(&src[start..end]),
                Cap::Position(pos) => out.extend_from_slice(pos.to_string().as_bytes()),
            },
            _ => return Err("invalid use of '%' in replacement string".to_owned()),
        }
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    Ok(())
}
