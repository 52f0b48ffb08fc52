//! A small seeded random generator for tests that pick moments or orders at random: each prints
//! its seed, so a failure can be replayed with `NETKIT_SEED=<seed>`.

/// xorshift64: fast, reproducible, not for anything but tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `NETKIT_SEED` when set, else from the clock and the process id; prints the
    /// seed (shown with a failing test's output).
    pub fn seeded() -> Self {
        let seed = std::env::var("NETKIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                (nanos ^ u64::from(std::process::id())) | 1
            });
        println!("seed {seed} (replay with NETKIT_SEED={seed})");
        Self::with_seed(seed)
    }

    /// A generator with this seed (0 is taken as 1: xorshift would stay at 0).
    pub fn with_seed(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_within_bounds() {
        let (mut a, mut b) = (Rng::with_seed(42), Rng::with_seed(42));
        let xs: Vec<u64> = (0..100).map(|_| a.below(7)).collect();
        assert!(xs.iter().all(|x| *x < 7));
        assert_eq!(xs, (0..100).map(|_| b.below(7)).collect::<Vec<_>>());
        assert!(xs.iter().any(|x| *x != xs[0]));
        assert_eq!(Rng::with_seed(0).below(0), 0);
    }
}
