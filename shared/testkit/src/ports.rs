//! Ports that tests fix: a clock that only moves when told to, and repeatable randomness.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ciba_shared::ports::{Clock, Random};

/// A clock that only moves when told to: expiry and polling-interval tests set it.
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn at_secs(secs: i64) -> Self {
        Self(AtomicI64::new(secs * 1000))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.advance_ms(secs * 1000);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Deterministic bytes from a counter, for tests that want repeatable ids.
#[derive(Default)]
pub struct CountingRandom(AtomicU64);

impl Random for CountingRandom {
    fn fill(&self, buf: &mut [u8]) {
        let n = self.0.fetch_add(1, Ordering::SeqCst).to_be_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = n[i % 8] ^ (i as u8);
        }
    }
}
