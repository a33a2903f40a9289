//! A small, fast pseudo-random source for traffic splits, power-of-two choices and request
//! ids. Not cryptographic: each request gets its own generator, seeded from a process-wide
//! counter run through SplitMix64, so draws are independent across requests and cheap.

use std::sync::atomic::{AtomicU64, Ordering};

static SEED: AtomicU64 = AtomicU64::new(0);

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: good enough statistics for load balancing, one multiply per draw.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator with an explicit seed, for tests.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(splitmix64(seed).max(1))
    }

    /// A fresh generator for one request.
    pub(crate) fn per_request() -> Self {
        let start = SEED.load(Ordering::Relaxed);
        if start == 0 {
            // First use: mix in the time and the process id so processes differ.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let _ = SEED.compare_exchange(
                0,
                splitmix64(nanos ^ (u64::from(std::process::id()) << 32)) | 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Self::seeded(SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform draw from `0..n` (`n` > 0), by multiply-shift (no modulo bias worth noting).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64() >> 32) * u128::from(n)) >> 32) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_for_percentages() {
        let mut counts = [0u32; 100];
        for i in 0..100_000u64 {
            counts[Rng::seeded(i).below(100) as usize] += 1;
        }
        // 1,000 expected per bucket.
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn per_request_generators_differ() {
        let a = Rng::per_request().next_u64();
        let b = Rng::per_request().next_u64();
        assert_ne!(a, b);
    }
}
