//! Secrets and their hashes. Client secrets, user codes, access and refresh tokens are stored only
//! as SHA-256 hashes: every one of them is either high-entropy (generated here) or checked against
//! a single stored hash in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret value that never shows itself in `Debug` output (and so never in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// base64url(SHA-256(value)), the stored form of every secret.
pub fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Compares a presented secret with a stored hash in constant time.
pub fn matches(presented: &str, stored_hash: &str) -> bool {
    hash(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// The left half of SHA-256 of `value`, base64url: `at_hash` and `rt_hash` (OIDC Core §3.1.3.6).
pub fn left_half_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }

    #[test]
    fn matching_secret_matches_its_hash() {
        let stored = hash("s3cret");
        assert!(matches("s3cret", &stored));
        assert!(!matches("s3creT", &stored));
        assert!(!matches("", &stored));
    }

    #[test]
    fn at_hash_is_left_half_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223 b00361a3...; the left half, base64url:
        assert_eq!(left_half_hash("abc"), "ungWv48Bz-pBQUDeXa4iIw");
    }
}
