//! The generator behind `math.random`: xoshiro256**, Lua 5.4's own, so a seeded sequence is
//! the one C Lua gives. Its own module because each actor owns one (`crate::actor`) and the
//! `math` functions (`random`) draw from it.

/// A xoshiro256** generator, as in Lua 5.4's `lmathlib.c`.
#[derive(Debug, Clone)]
pub(crate) struct Xoshiro([u64; 4]);

impl Xoshiro {
    /// The generator `math.randomseed(n1, n2)` makes.
    pub(crate) fn seeded(n1: u64, n2: u64) -> Xoshiro {
        let mut rng = Xoshiro([n1, 0xff, n2, 0]);
        // Discard the first values to spread the seed, as Lua does.
        for _ in 0..16 {
            rng.next();
        }
        rng
    }

    /// Two seeds from the operating system (the time and a counter if it has none).
    pub(crate) fn os_seeds() -> (u64, u64) {
        let mut bytes = [0u8; 16];
        if getrandom::getrandom(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        }
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        (half(&bytes[..8]), half(&bytes[8..]))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.0;
        let s2 = s2 ^ s0;
        let s3 = s3 ^ s1;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        self.0 = [s0 ^ s3, s1 ^ s2, s2 ^ (s1 << 17), s3.rotate_left(45)];
        result
    }

    /// A float in [0, 1) from the 53 high bits of a random value.
    pub(crate) fn float(x: u64) -> f64 {
        (x >> 11) as f64 * (0.5 / (1u64 << 52) as f64)
    }

    /// A uniform integer in [0, n] from `ran`, drawing again when `ran` falls outside.
    pub(crate) fn project(&mut self, mut ran: u64, n: u64) -> u64 {
        if n & n.wrapping_add(1) == 0 {
            return ran & n;
        }
        // The smallest 2^b - 1 not below n.
        let lim = u64::MAX >> n.leading_zeros();
        loop {
            ran &= lim;
            if ran <= n {
                return ran;
            }
            ran = self.next();
        }
    }
}
