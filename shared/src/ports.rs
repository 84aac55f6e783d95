//! Small ports for time, randomness, signing and name resolution, so handlers and tests can fix
//! them.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

/// Wall-clock time in milliseconds since the epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Seconds since the epoch, the unit of JWT claims and DynamoDB TTL.
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Randomness for identifiers and tokens.
pub trait Random: Send + Sync {
    fn fill(&self, buf: &mut [u8]);

    /// `bytes` random bytes as base64url: `[A-Za-z0-9_-]`, 8 × `bytes` bits of entropy.
    fn token(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.fill(&mut buf);
        URL_SAFE_NO_PAD.encode(buf)
    }
}

pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        OsRng.fill_bytes(buf);
    }
}

/// Name resolution, so the callback address policy can be tested against the answers DNS might
/// give (a public-looking name resolving to 10.0.0.5) without a DNS server.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The addresses `host` resolves to now; an error when it does not resolve.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<std::net::IpAddr>>;
}

/// The system's resolver (`getaddrinfo` through tokio), as a connection would use it.
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
        let addresses = tokio::net::lookup_host((host, 0)).await?;
        Ok(addresses.map(|a| a.ip()).collect())
    }
}

#[derive(Debug)]
pub struct SignerError(pub String);

impl std::fmt::Display for SignerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signer: {}", self.0)
    }
}

/// The OP's ES256 signing key. Async because the deployed key lives in KMS.
#[async_trait]
pub trait Signer: Send + Sync {
    fn kid(&self) -> &str;
    /// The public key as a JWK with `kid`, `use=sig`, `alg=ES256`.
    fn public_jwk(&self) -> &serde_json::Value;
    /// Every key a token this OP signed may carry in its `kid`, as public JWKs: the signing key
    /// first, then the keys it replaced, so tokens signed before a rotation still verify.
    fn published_jwks(&self) -> Vec<serde_json::Value> {
        vec![self.public_jwk().clone()]
    }
    /// The 64-byte r‖s ES256 signature of `input`.
    async fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignerError>;
}

/// A P-256 key held in process memory: generated at start-up or loaded from a PKCS#8 PEM file.
/// It signs through aws-lc (several times faster than the pure-Rust p256 arithmetic), which the
/// JWT verification links anyway.
pub struct LocalSigner {
    key: SigningKey,
    fast: aws_lc_rs::signature::EcdsaKeyPair,
    kid: String,
    jwk: serde_json::Value,
}

impl LocalSigner {
    pub fn generate() -> Self {
        Self::from_key(SigningKey::random(&mut OsRng))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SignerError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| SignerError(e.to_string()))?;
        Ok(Self::from_key(key))
    }

    /// A key from its PKCS#8 DER (an envelope key just decrypted, `crate::envelope`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, SignerError> {
        let key = SigningKey::from_pkcs8_der(der)
            .map_err(|_| SignerError("not a PKCS#8 P-256 private key".into()))?;
        Ok(Self::from_key(key))
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    fn from_key(key: SigningKey) -> Self {
        let public = p256::PublicKey::from(key.verifying_key());
        let (kid, jwk) = public_jwk_with_kid(&public);
        let der = key
            .to_pkcs8_der()
            .expect("a P-256 key always encodes as PKCS#8");
        let fast = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
        )
        .expect("aws-lc reads the PKCS#8 p256 wrote");
        Self {
            key,
            fast,
            kid,
            jwk,
        }
    }
}

/// The JWK of a P-256 public key with its RFC 7638 thumbprint as `kid`.
pub fn public_jwk_with_kid(public: &p256::PublicKey) -> (String, serde_json::Value) {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = public.to_encoded_point(false);
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(point.x().map(|v| &v[..]).unwrap_or_default()),
        URL_SAFE_NO_PAD.encode(point.y().map(|v| &v[..]).unwrap_or_default()),
    );
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = crate::secret::hash(&thumbprint_input);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"
    });
    (kid, jwk)
}

#[async_trait]
impl Signer for LocalSigner {
    fn kid(&self) -> &str {
        &self.kid
    }

    fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    async fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignerError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let fixed = self
            .fast
            .sign(&rng, input)
            .map_err(|_| SignerError("ECDSA signing failed".into()))?;
        let signature =
            Signature::from_slice(fixed.as_ref()).map_err(|e| SignerError(e.to_string()))?;
        // Low-S, like the KMS signer's: the same key material always yields the same form.
        let signature = signature.normalize_s().unwrap_or(signature);
        Ok(signature.to_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_signer_signature_verifies_with_its_public_key() {
        use p256::ecdsa::signature::Verifier;
        let signer = LocalSigner::generate();
        let sig = signer.sign(b"payload").await.unwrap();
        let public = signer.key.verifying_key();
        public
            .verify(b"payload", &Signature::from_slice(&sig).unwrap())
            .unwrap();
    }

    #[test]
    fn local_signer_round_trips_through_pkcs8_pem() {
        let signer = LocalSigner::generate();
        let again = LocalSigner::from_pkcs8_pem(&signer.to_pkcs8_pem()).unwrap();
        assert_eq!(signer.kid(), again.kid());
    }

    #[tokio::test]
    async fn system_resolver_answers_what_a_connection_would_use() {
        let addresses = SystemResolver.resolve("localhost").await.unwrap();
        assert!(
            !addresses.is_empty() && addresses.iter().all(|a| a.is_loopback()),
            "{addresses:?}"
        );
    }

    #[test]
    fn random_tokens_are_url_safe_and_long_enough() {
        let t = OsRandom.token(16);
        assert_eq!(t.len(), 22);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
