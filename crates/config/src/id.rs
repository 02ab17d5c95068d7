//! Registry entry ids (`namespace:name`) and how references resolve.

use std::fmt;
use std::str::FromStr;

/// The id of a registry entry: a namespace (which may contain dots, e.g.
/// `app.ws`) and a name. Displays as `namespace:name`.
///
/// # Examples
///
/// ```
/// use wsrelay_config::EntryId;
///
/// let id: EntryId = "app.ws:handler".parse().unwrap();
/// assert_eq!(id.namespace(), "app.ws");
/// assert_eq!(id.name(), "handler");
/// assert_eq!(id.to_string(), "app.ws:handler");
/// // A reference without `:` is relative to the namespace it appears in.
/// assert_eq!(EntryId::resolve("app", "gateway").unwrap().to_string(), "app:gateway");
/// assert_eq!(EntryId::resolve("app", "lib:json").unwrap().to_string(), "lib:json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    namespace: String,
    name: String,
}

/// Why a text is not a valid entry id or reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entry reference {text:?}: {reason}")]
pub struct IdError {
    text: String,
    reason: &'static str,
}

impl EntryId {
    /// Builds an id from a namespace and a name.
    ///
    /// # Errors
    ///
    /// Fails if either part is empty, contains `:` or whitespace.
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        let text = format!("{namespace}:{name}");
        check_part(&text, namespace, "empty namespace")?;
        check_part(&text, name, "empty name")?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Resolves a reference written inside an entry of namespace `base`:
    /// text with a `:` is absolute (`ns:name`), anything else is a name in `base`.
    ///
    /// # Errors
    ///
    /// Fails if the reference (or the resulting id) is malformed.
    pub fn resolve(base: &str, reference: &str) -> Result<Self, IdError> {
        if reference.contains(':') {
            reference.parse()
        } else {
            Self::new(base, reference).map_err(|err| IdError {
                text: reference.to_owned(),
                reason: err.reason,
            })
        }
    }

    /// The namespace, e.g. `app.ws`.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name within the namespace, e.g. `handler`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for EntryId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = text.split_once(':').ok_or(IdError {
            text: text.to_owned(),
            reason: "expected namespace:name",
        })?;
        Self::new(namespace, name).map_err(|err| IdError {
            text: text.to_owned(),
            reason: err.reason,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

fn check_part(text: &str, part: &str, empty_reason: &'static str) -> Result<(), IdError> {
    let reason = if part.is_empty() {
        empty_reason
    } else if part.contains(':') {
        "too many ':' (expected namespace:name)"
    } else if part.chars().any(char::is_whitespace) {
        "whitespace is not allowed"
    } else {
        return Ok(());
    };
    Err(IdError {
        text: text.to_owned(),
        reason,
    })
}
