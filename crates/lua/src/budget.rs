//! What a conversion between Lua and Rust values may cost, and why one fails: shared by the
//! conversions (`convert`) and the stack reader under them (`raw`), which charges the budget
//! as it reads.

/// What one value costs in the budget besides the bytes of its text.
pub(crate) const NODE_COST: usize = 16;

/// Why a Lua value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConvertError {
    /// A function, userdata or thread, a bad key, or a number JSON cannot hold.
    Unsupported(String),
    /// Over the size budget, a cycle, or nested too deeply: the value is too big to convert.
    TooBig(String),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Unsupported(text) | ConvertError::TooBig(text) => f.write_str(text),
        }
    }
}

impl From<String> for ConvertError {
    fn from(text: String) -> ConvertError {
        ConvertError::Unsupported(text)
    }
}
