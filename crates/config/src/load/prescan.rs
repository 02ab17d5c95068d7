//! A cheap look at YAML text before it is parsed: its size, and how deep its
//! flow collections (`[ ]`, `{ }`) nest.
//!
//! The YAML scanner re-examines every open flow level at each token, so its
//! cost grows with the square of the flow depth: 100,000 unclosed `[` took
//! 20 s to fail. This pass is linear and stops at the first bracket past
//! [`MAX_YAML_FLOW_NESTING`], naming its line and column.
//!
//! It knows just enough YAML not to count brackets that are text: inside
//! quoted scalars (which may span lines), block scalars (`|`, `>`: inline Lua
//! is full of `{`), comments, and plain scalars in block context (`a[0]`,
//! including their continuation lines). In flow context every bracket counts,
//! as it does for the scanner. Block nesting (by indentation) is not counted:
//! it costs the parser nothing, and the parser refuses more than 128 levels.

use std::path::Path;

use crate::error::ConfigErrorKind;
use crate::limits::{MAX_YAML_BYTES, MAX_YAML_FLOW_NESTING};

/// Checks the size and the flow nesting of one YAML file's text.
pub(super) fn check(file: &Path, text: &str) -> Result<(), ConfigErrorKind> {
    let size = text.len() as u64;
    if size > MAX_YAML_BYTES {
        return Err(ConfigErrorKind::TooLarge {
            path: file.to_path_buf(),
            size,
            limit: MAX_YAML_BYTES,
        });
    }
    match first_too_deep(text, MAX_YAML_FLOW_NESTING) {
        None => Ok(()),
        Some((line, column)) => Err(ConfigErrorKind::YamlTooDeep {
            line,
            column,
            limit: MAX_YAML_FLOW_NESTING,
        }),
    }
}

/// The 1-based line and column of the first `[` or `{` that opens flow level
/// `limit + 1`, if any.
fn first_too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut scan = Scan::default();
    for (number, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(at) = scan.line(line.as_bytes(), limit) {
            return Some((number + 1, line[..at].chars().count() + 1));
        }
    }
    None
}

/// The lines of a block scalar (`|`, `>`) being skipped.
#[derive(Debug, Clone, Copy)]
struct BlockScalar {
    /// The indentation of the node that holds the scalar: content is deeper.
    parent: usize,
    /// The content's indentation, once known (explicit, or the first line's).
    indent: Option<usize>,
}

/// What carries from one line to the next.
#[derive(Debug, Default)]
struct Scan {
    /// Open flow collections.
    flow: usize,
    /// The open quote (`'` or `"`) of a quoted scalar, which may span lines.
    quote: Option<u8>,
    /// Set while the lines of a block scalar are skipped.
    block_scalar: Option<BlockScalar>,
    /// Set when the last line ended inside a plain scalar in block context:
    /// the indentation of its parent node, which continuation lines exceed.
    plain_parent: Option<usize>,
    /// The indentation of the innermost block node on the current line.
    node_col: usize,
}

/// Where the scanner stands on a line.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The next token starts a node (a key, a value or an item).
    at_node: bool,
    /// Inside a plain (unquoted) scalar.
    in_plain: bool,
    /// Where the current scalar (a possible key) started.
    scalar_col: usize,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

/// Whether `line[i]` ends a token: a blank or the end of the line follows.
fn blank_after(line: &[u8], i: usize) -> bool {
    line.get(i + 1).is_none_or(|&c| is_blank(c))
}

/// The end of an anchor, tag or alias name starting at `i`.
fn name_end(line: &[u8], i: usize) -> usize {
    line[i..]
        .iter()
        .position(|&c| is_blank(c) || is_flow_indicator(c))
        .map_or(line.len(), |n| i + n)
}

impl Scan {
    /// Scans one line; returns the byte offset of a bracket past `limit`.
    fn line(&mut self, line: &[u8], limit: usize) -> Option<usize> {
        let indent = line.iter().take_while(|&&c| c == b' ').count();
        let blank = line[indent..].iter().all(|&c| is_blank(c));
        let mut cursor = Cursor {
            at_node: true,
            in_plain: false,
            scalar_col: indent,
        };
        if self.quote.is_some() {
            cursor.at_node = false;
            return self.tokens(line, 0, cursor, limit);
        }
        if self.skip_block_scalar(indent, blank) {
            return None;
        }
        if let Some(parent) = self.plain_parent {
            if blank {
                return None; // folded into the plain scalar
            }
            self.plain_parent = None;
            if self.flow == 0 && indent > parent && line[indent] != b'#' {
                cursor.at_node = false;
                cursor.in_plain = true;
                self.node_col = parent;
                return self.tokens(line, indent, cursor, limit);
            }
        }
        if self.flow == 0 {
            // Without a key or dash on this line, the parent is shallower.
            self.node_col = indent.saturating_sub(1);
            if line.starts_with(b"%") || Self::document_marker(line, b"...") {
                return None;
            }
            if Self::document_marker(line, b"---") {
                return self.tokens(line, 3, cursor, limit);
            }
        }
        self.tokens(line, indent, cursor, limit)
    }

    /// Whether the line starts with `---` or `...` as a document marker.
    fn document_marker(line: &[u8], marker: &[u8]) -> bool {
        line.starts_with(marker) && blank_after(line, marker.len() - 1)
    }

    /// Whether this line belongs to the block scalar being skipped.
    fn skip_block_scalar(&mut self, indent: usize, blank: bool) -> bool {
        let Some(block) = &mut self.block_scalar else {
            return false;
        };
        if blank {
            return true;
        }
        let content = *block.indent.get_or_insert(indent);
        if indent > block.parent && indent >= content {
            return true;
        }
        self.block_scalar = None;
        false
    }

    /// Scans the tokens of a line from byte `i`.
    fn tokens(
        &mut self,
        line: &[u8],
        mut i: usize,
        mut cur: Cursor,
        limit: usize,
    ) -> Option<usize> {
        while i < line.len() {
            let c = line[i];
            if let Some(quote) = self.quote {
                i = self.in_quote(line, i, quote);
                continue;
            }
            if c == b'#' && (i == 0 || is_blank(line[i - 1])) {
                break; // a comment
            }
            let next = if self.flow > 0 {
                self.flow_token(line, i, &mut cur, limit)
            } else {
                self.block_token(line, i, &mut cur, limit)
            };
            match next {
                Next::At(at) => i = at,
                Next::TooDeep => return Some(i),
                Next::EndOfLine => break,
            }
        }
        self.plain_parent =
            (self.flow == 0 && self.quote.is_none() && cur.in_plain).then_some(self.node_col);
        None
    }

    /// Steps over one byte inside a quoted scalar; returns the next offset.
    fn in_quote(&mut self, line: &[u8], i: usize, quote: u8) -> usize {
        let c = line[i];
        if quote == b'"' && c == b'\\' {
            return i + 2; // an escape; at the end of a line, a continuation
        }
        if c == quote {
            if quote == b'\'' && line.get(i + 1) == Some(&b'\'') {
                return i + 2; // '' is a quote inside '...'
            }
            self.quote = None;
        }
        i + 1
    }

    /// Opens a flow collection at `i`, unless it would be one level too many.
    fn open(&mut self, i: usize, cur: &mut Cursor, limit: usize) -> Next {
        if self.flow >= limit {
            return Next::TooDeep;
        }
        self.flow += 1;
        cur.at_node = true;
        cur.in_plain = false;
        Next::At(i + 1)
    }

    /// One token in flow context, where every bracket counts.
    fn flow_token(&mut self, line: &[u8], i: usize, cur: &mut Cursor, limit: usize) -> Next {
        match line[i] {
            b'[' | b'{' => self.open(i, cur, limit),
            b']' | b'}' => {
                self.flow -= 1;
                *cur = Cursor {
                    at_node: false,
                    in_plain: false,
                    ..*cur
                };
                Next::At(i + 1)
            }
            b',' => {
                cur.at_node = true;
                cur.in_plain = false;
                Next::At(i + 1)
            }
            b':' if !cur.in_plain
                || line
                    .get(i + 1)
                    .is_none_or(|&n| is_blank(n) || is_flow_indicator(n)) =>
            {
                cur.at_node = true;
                cur.in_plain = false;
                Next::At(i + 1)
            }
            _ => self.scalar_token(line, i, cur),
        }
    }

    /// One token in block context, where brackets count only at a node.
    fn block_token(&mut self, line: &[u8], i: usize, cur: &mut Cursor, limit: usize) -> Next {
        match line[i] {
            b'[' | b'{' if cur.at_node => self.open(i, cur, limit),
            b'-' | b'?' if cur.at_node && blank_after(line, i) => {
                self.node_col = i;
                Next::At(i + 1)
            }
            b':' if blank_after(line, i) => {
                // After a key, the mapping stands where the key started; a `:` at a node
                // (the value of an explicit `? key`, or of an empty key) is at the
                // mapping's own column. Continuation lines of a plain value must be deeper
                // than that column.
                self.node_col = if cur.at_node { i } else { cur.scalar_col };
                cur.at_node = true;
                cur.in_plain = false;
                Next::At(i + 1)
            }
            b'|' | b'>' if cur.at_node => {
                self.block_scalar = Some(BlockScalar {
                    parent: self.node_col,
                    indent: explicit_indent(&line[i + 1..]).map(|n| self.node_col + n),
                });
                Next::EndOfLine
            }
            _ => self.scalar_token(line, i, cur),
        }
    }

    /// A blank, a node property, an alias, a quote or plain text.
    fn scalar_token(&mut self, line: &[u8], i: usize, cur: &mut Cursor) -> Next {
        let c = line[i];
        if is_blank(c) || !cur.at_node {
            return Next::At(i + 1); // a separator, or text inside a plain scalar
        }
        cur.scalar_col = i;
        match c {
            b'&' | b'!' => Next::At(name_end(line, i)), // still at the node
            b'*' => {
                cur.at_node = false;
                Next::At(name_end(line, i))
            }
            b'\'' | b'"' => {
                self.quote = Some(c);
                cur.at_node = false;
                Next::At(i + 1)
            }
            _ => {
                cur.at_node = false;
                cur.in_plain = true;
                Next::At(i + 1)
            }
        }
    }
}

/// What to do after a token.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Go on at this byte offset.
    At(usize),
    /// The bracket here opens one level too many.
    TooDeep,
    /// The rest of the line is not YAML structure (a block scalar header).
    EndOfLine,
}

/// The indentation indicator of a block scalar header (`|2`, `>-1`).
fn explicit_indent(header: &[u8]) -> Option<usize> {
    header
        .iter()
        .take(2)
        .find(|c| c.is_ascii_digit())
        .map(|c| usize::from(c - b'0'))
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value as Json;

    use super::*;

    fn depth(text: &str) -> Option<(usize, usize)> {
        first_too_deep(text, 3)
    }

    #[test]
    fn counts_flow_brackets_and_names_the_position() {
        assert_eq!(depth("a: [[[1]]]"), None);
        assert_eq!(depth("a: [[[[1]]]]"), Some((1, 7)));
        assert_eq!(depth("a: {b: [c, {d: [e]}]}"), Some((1, 16)));
        assert_eq!(depth("a: [\n  [\n    [\n      [x]]]]"), Some((4, 7)));
        assert_eq!(depth("- - [[[ [ ]]]]"), Some((1, 9)));
        assert_eq!(depth("[[[]]]\n[[[ [ ]]]]"), Some((2, 5)));
        assert_eq!(
            depth("é: \"é\" [[[["),
            None,
            "text after a quoted value is not a node"
        );
        assert_eq!(
            depth("é: [[[ \"é\", [ ]]]"),
            Some((1, 13)),
            "columns count characters"
        );
    }

    #[test]
    fn brackets_that_are_text_do_not_count() {
        let texts = [
            "a: 'x[[[[y'",
            "a: \"x[[[[\\\" [[[[\"",
            "a: 'it''s [[[[ '",
            "a: b[[[[c",
            "a: b [[[[ c",
            "a: x # [[[[",
            "# [[[[",
            "a: |\n  {{{{\n  }\n b: 1",
            "- >-\n  [[[[\n\n  [[[[\n- x",
            "a: plain text\n  [[[[ continued\n  more",
            "a: 'multi\n  line [[[[\n  quote'",
            "a: \"multi\\\n  [[[[\"",
            "k: |2\n   [[[[\n  [[[[",
            "[a, 'b]]]]', \"c}}}}\", d # ]]]]\n]",
            "{\"k\":\"[[[[\", \"j\": ['{{{{']}",
            "%YAML 1.1\n--- [[[x]]]\n...",
            "a: &anchor [[[1]]]\nb: *anchor",
            "a: !!seq [[[1]]]",
            "- a[0]: x[[[[\n- {{{a}}}",
        ];
        for text in texts {
            assert_eq!(depth(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_block_scalar_ends_where_its_indentation_does() {
        assert_eq!(depth("a: |\n  [[[[\nb: [[[[x]]]]"), Some((3, 7)));
        assert_eq!(depth("- k: |\n    {{{{\n  j: [[[[x]]]]"), Some((3, 9)));
        // An empty block scalar: the next line at the key's column is a key.
        assert_eq!(depth("- k: |\n  j: [[[[x]]]]"), Some((2, 9)));
    }

    /// Found by the property test below: the plain value `\` of an explicit key ended at
    /// the next `?` of the same mapping, but was taken to go on, so the block scalar after
    /// that `?` was read as YAML and its `{` opened a flow level.
    #[test]
    fn a_plain_value_after_an_explicit_key_ends_at_the_next_key() {
        let yaml = "m:\n  ? |2-\n\n    ~\n  : \\\n  ? |-\n    #\n    {\n  : |2+\n\na{: '%'\n";
        assert_eq!(first_too_deep(yaml, 1), None, "{yaml}");
    }

    #[test]
    fn a_plain_scalar_ends_at_a_shallower_line() {
        assert_eq!(depth("a: text\nb: [[[[x]]]]"), Some((2, 7)));
        assert_eq!(depth("- a\n- [[[[x]]]]"), Some((2, 6)));
    }

    #[test]
    fn the_reported_size_and_depth_come_from_the_limits() {
        let file = Path::new("app.yaml");
        let deep = format!("a: {}", "[".repeat(100_000));
        let Err(ConfigErrorKind::YamlTooDeep {
            line,
            column,
            limit,
        }) = check(file, &deep)
        else {
            panic!("not refused");
        };
        assert_eq!((line, column, limit), (1, 4 + 64, MAX_YAML_FLOW_NESTING));
        let at_limit = format!("a: {}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(check(file, &at_limit), Ok(()));
        let limit = usize::try_from(MAX_YAML_BYTES).unwrap();
        assert_eq!(check(file, &"#".repeat(limit)), Ok(()));
        assert!(matches!(
            check(file, &"#".repeat(limit + 1)),
            Err(ConfigErrorKind::TooLarge { size, .. }) if size == MAX_YAML_BYTES + 1
        ));
    }

    /// Nesting of arrays and objects: a scalar is 0, `[]` is 1.
    fn json_depth(value: &Json) -> usize {
        match value {
            Json::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
            Json::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Text full of YAML's special characters.
    fn tricky_text() -> impl Strategy<Value = String> {
        "[\\[\\]{}'\"#:,\\\\|>&*!%? a-z\n-]{0,8}"
    }

    /// A JSON value nested `spine` levels deep along one path, with tricky
    /// strings beside and below it.
    fn nested() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            tricky_text().prop_map(Json::String),
            any::<i32>().prop_map(Json::from),
            Just(Json::Null),
        ];
        (
            0usize..80,
            leaf,
            prop::collection::vec((any::<bool>(), tricky_text(), tricky_text()), 80),
        )
            .prop_map(|(spine, leaf, levels)| {
                levels[..spine]
                    .iter()
                    .fold(leaf, |inner, (as_array, key, sibling)| {
                        if *as_array {
                            Json::Array(vec![Json::String(sibling.clone()), inner])
                        } else {
                            let mut map = serde_json::Map::new();
                            map.insert(sibling.clone(), Json::String(key.clone()));
                            map.insert(format!("{key}~"), inner);
                            Json::Object(map)
                        }
                    })
            })
    }

    proptest! {
        /// JSON is YAML in flow style: the pre-scan sees its exact depth.
        #[test]
        fn json_is_refused_exactly_past_the_limit(value in nested()) {
            let too_deep = json_depth(&value) > MAX_YAML_FLOW_NESTING;
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            prop_assert_eq!(first_too_deep(&compact, MAX_YAML_FLOW_NESTING).is_some(), too_deep);
            prop_assert_eq!(first_too_deep(&pretty, MAX_YAML_FLOW_NESTING).is_some(), too_deep);
        }

        /// The YAML serializer writes block style, where the only flow
        /// collections are empty ones (`[]`, `{}`): however deep the value and
        /// whatever brackets its quoted, block and plain scalars hold, the
        /// pre-scan sees one level at most.
        #[test]
        fn serialized_block_yaml_has_no_flow_depth(value in nested()) {
            let yaml = serde_yaml_ng::to_string(&value).unwrap();
            prop_assert_eq!(first_too_deep(&yaml, 1), None, "{}", yaml);
        }

        /// Any text at all: no panic.
        #[test]
        fn never_panics(text in "(?s).{0,200}", tricky in "[\\[\\]{}'\"#:,\\\\|>&*!%? a\n\t\r-]{0,200}") {
            let _ = first_too_deep(&text, 2);
            let _ = first_too_deep(&tricky, 2);
        }
    }
}
