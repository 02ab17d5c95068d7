//! Random numbers for incarnations and session ids.
//!
//! They only need to differ between runs and sessions (they are not secrets), so the
//! OS-seeded hasher of the standard library is enough.

use std::hash::{BuildHasher, Hasher};

/// A random number from the OS-seeded hasher, mixed with the clock.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
