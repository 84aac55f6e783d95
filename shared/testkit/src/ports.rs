//! Ports that tests fix: a clock that only moves when told to, repeatable randomness, and DNS
//! answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use ciba_shared::ports::{Clock, Random, Resolver};

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

/// DNS with the answers a test gives: a listed name resolves to its addresses, any other name
/// does not resolve at all (the default: no test depends on the machine's DNS).
#[derive(Default)]
pub struct StaticResolver(HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    /// `name` resolving to `addresses` (IP address strings).
    pub fn with(mut self, name: &str, addresses: &[&str]) -> Self {
        let addresses = addresses
            .iter()
            .map(|a| a.parse().expect("an IP address"))
            .collect();
        self.0.insert(name.to_owned(), addresses);
        self
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0.get(host).cloned().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} does not resolve"),
            )
        })
    }
}
