//! Config errors: each names the file, the entry and the field it is about.
//!
//! The loader never stops at the first problem: it collects every
//! [`ConfigError`] into [`ConfigErrors`], which displays one per line, so a
//! user fixes an app in one round trip (docs/spec.md §11: "nothing starts").

use std::fmt;
use std::path::PathBuf;

use crate::duration::DurationError;
use crate::files::FileError;
use crate::id::EntryId;
use crate::limits::fmt_bytes;

/// One problem in an app's configuration.
///
/// Displays as `FILE: entry ID: field FIELD: PROBLEM`, leaving out the parts
/// that do not apply, e.g.
/// `app/http.yaml: entry app:ws_router: field post_middleware[0]: unknown middleware "websocket_rely" (known: websocket_relay, cors)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The YAML file the problem is in (for a missing app directory, the directory).
    pub file: PathBuf,
    /// The id (`namespace:name`) of the entry, when the entry has one.
    pub entry: Option<String>,
    /// The dotted path of the field, e.g. `meta.server` or `post_middleware[0]`.
    pub field: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error about a whole file, or a field outside any entry (`namespace`).
    pub(crate) fn in_file(
        file: impl Into<PathBuf>,
        field: Option<String>,
        kind: ConfigErrorKind,
    ) -> Self {
        Self {
            file: file.into(),
            entry: None,
            field,
            kind,
        }
    }

    /// An error on a field of an entry.
    pub(crate) fn in_entry(
        file: impl Into<PathBuf>,
        entry: &EntryId,
        field: impl Into<String>,
        kind: ConfigErrorKind,
    ) -> Self {
        Self {
            file: file.into(),
            entry: Some(entry.to_string()),
            field: Some(field.into()),
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(entry) = &self.entry {
            write!(f, ": entry {entry}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What is wrong, without the location (see [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file is not valid YAML.
    #[error("YAML syntax error{}: {message}", fmt_location(*.line, *.column))]
    YamlSyntax {
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column of the error, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path:?}: {reason}")]
    Unreadable {
        /// The path as resolved.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The path names a FIFO, socket, device or directory where a file is expected.
    #[error("{path:?} is not a regular file (it is {found})")]
    NotAFile {
        /// The path as resolved.
        path: PathBuf,
        /// What it is instead, e.g. `a FIFO`.
        found: &'static str,
    },
    /// A file is over the size the loader reads (see [`limits`](crate::limits)).
    #[error("{path:?} is {size} bytes, over the limit of {}", fmt_bytes(*.limit))]
    TooLarge {
        /// The path as resolved.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// YAML flow collections nest deeper than
    /// [`MAX_YAML_FLOW_NESTING`](crate::limits::MAX_YAML_FLOW_NESTING).
    #[error("YAML nested deeper than {limit} levels of [ ] and {{ }}{}", fmt_location(Some(*.line), Some(*.column)))]
    YamlTooDeep {
        /// 1-based line of the bracket that opens one level too many.
        line: usize,
        /// 1-based column of that bracket.
        column: usize,
        /// The limit.
        limit: usize,
    },
    /// A directory symlink leads back to a directory being loaded; the error's
    /// file is the symlink.
    #[error("directory symlink loop: leads back to {target:?}, which is already being loaded")]
    SymlinkLoop {
        /// The directory the symlink resolves to.
        target: PathBuf,
    },
    /// Subdirectories nest deeper than
    /// [`MAX_DIR_DEPTH`](crate::limits::MAX_DIR_DEPTH); the error's file is
    /// the first directory too deep.
    #[error("directories nested deeper than {limit} levels are not loaded")]
    DirTooDeep {
        /// The limit.
        limit: usize,
    },
    /// The admin token is shorter than
    /// [`AdminConfig::MIN_TOKEN_BYTES`](crate::AdminConfig::MIN_TOKEN_BYTES).
    /// The token itself is never shown.
    #[error("the admin token is {len} bytes long; at least {min} are required (use a long random value)")]
    ShortToken {
        /// Its length in bytes, surrounding white space trimmed.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The app directory holds no `*.yaml`/`*.yml` file.
    #[error("no *.yaml or *.yml files found")]
    NoFiles,
    /// A required field is absent.
    #[error("missing required field")]
    MissingField,
    /// A `${env:NAME}` placeholder names a variable that is not set and gives no default.
    #[error("environment variable {name} is not set (and the placeholder has no |default)")]
    MissingEnvVariable {
        /// The variable.
        name: String,
    },
    /// A `${env:` placeholder is malformed.
    #[error("bad placeholder {text:?}: {reason}")]
    BadPlaceholder {
        /// The placeholder as written (at most 80 characters).
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A field has the wrong YAML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field must be, e.g. `a string`.
        expected: &'static str,
        /// What it is, e.g. `a list`.
        found: &'static str,
    },
    /// A field has the right type but a value that is not allowed.
    #[error("invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The value as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A field this kind does not have (an error only in strict mode).
    #[error("unknown field (known: {}); without --strict it would be ignored", .known.join(", "))]
    UnknownField {
        /// The fields this kind reads, besides `name`, `kind` and `meta`.
        known: Vec<&'static str>,
    },
    /// The entry's `kind` is not one this runtime knows.
    #[error("unknown kind {kind:?} (known: {})", .known.join(", "))]
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// The kinds this loader accepts.
        known: Vec<&'static str>,
    },
    /// Two entries share an id.
    #[error("duplicate entry id {id} (first defined in {})", .first_file.display())]
    DuplicateId {
        /// The id defined twice.
        id: EntryId,
        /// The file of the first definition.
        first_file: PathBuf,
    },
    /// A reference names no entry.
    #[error("reference to {target}: no such entry (expected a {})", .expected.join(" or "))]
    DanglingReference {
        /// The resolved id.
        target: EntryId,
        /// The kinds the reference may point to.
        expected: Vec<&'static str>,
    },
    /// A reference names an entry of the wrong kind.
    #[error("reference to {target}: it is a {found}, expected a {}", .expected.join(" or "))]
    WrongReferenceKind {
        /// The resolved id.
        target: EntryId,
        /// The kinds the reference may point to.
        expected: Vec<&'static str>,
        /// The kind of the entry found.
        found: String,
    },
    /// An `addr` is not a socket address.
    #[error("bad address {addr:?}: {reason}")]
    BadAddress {
        /// The address as written.
        addr: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A middleware name is not registered.
    #[error("unknown middleware {name:?} (known: {})", fmt_known(.known))]
    UnknownMiddleware {
        /// The name as written.
        name: String,
        /// The registered names (from [`LoadOptions`](crate::LoadOptions)).
        known: Vec<String>,
    },
    /// A Lua module name is not one the runtime provides.
    #[error("unknown module {name:?} (known: {})", .known.join(", "))]
    UnknownModule {
        /// The name as written.
        name: String,
        /// The modules the runtime provides.
        known: Vec<&'static str>,
    },
    /// The Lua checker rejected a source.
    #[error("Lua syntax error in {chunk}: {message}")]
    LuaSyntax {
        /// The chunk name given to the checker.
        chunk: String,
        /// The checker's message.
        message: String,
    },
    /// A duration field is not valid duration text.
    #[error("{0}")]
    BadDuration(#[from] DurationError),
    /// A second `cluster` entry.
    #[error("only one cluster entry is allowed (first: {first})")]
    DuplicateCluster {
        /// The id of the first cluster entry.
        first: EntryId,
    },
    /// A second `wsrelay.ops` entry.
    #[error("only one wsrelay.ops entry is allowed (first: {first})")]
    DuplicateOps {
        /// The id of the first `wsrelay.ops` entry.
        first: EntryId,
    },
}

impl ConfigErrorKind {
    /// The kind for a file at `path` that could not be read.
    pub(crate) fn unreadable(path: PathBuf, error: FileError) -> Self {
        match error {
            FileError::NotRegular { found } => Self::NotAFile { path, found },
            FileError::TooLarge { size, limit } => Self::TooLarge { path, size, limit },
            FileError::Io(error) => Self::Unreadable {
                path,
                reason: error.to_string(),
            },
        }
    }
}

fn fmt_location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line} column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn fmt_known(known: &[String]) -> String {
    if known.is_empty() {
        "none registered".to_owned()
    } else {
        known.join(", ")
    }
}

/// Every problem found in one load, in file order. Displays one per line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps a list of errors.
    #[must_use]
    pub fn new(errors: Vec<ConfigError>) -> Self {
        Self { errors }
    }

    /// The errors, in the order they were found.
    #[must_use]
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
