//! The OP secret: one high-entropy value kept in AWS Secrets Manager (the template creates it),
//! from which every keyed hash and derived value of the OP takes its own key.
//!
//! The functions that need it are given its ARN (`OP_SECRET_ARN`), read it once per cold start
//! (`GetSecretValue`) and keep only the keys derived from it: HMAC-SHA-256(secret, label), one
//! label per purpose, so a key leaked through one use says nothing of the others or of the
//! secret. Nothing here shows a key or the secret in `Debug` or in an error text.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::aws_error::chain;
use crate::config::ConfigError;
use crate::secret::Secret;

/// The shortest OP secret accepted: 32 characters, as the template generates 64 of
/// `[A-Za-z0-9]` (about 380 bits).
pub const MIN_LEN: usize = 32;

/// Where the deployed functions find the OP secret: its Secrets Manager ARN.
pub const ARN_VAR: &str = "OP_SECRET_ARN";

const PUSH_TOKEN_LABEL: &str = "ciba push-token v1";
const USER_CODE_LABEL: &str = "ciba user-code v1";
const DPOP_NONCE_LABEL: &str = "ciba dpop-nonce v1";

/// The keys derived from the OP secret, one per purpose.
#[derive(Clone, Debug)]
pub struct Keys {
    /// What push-mode token values are derived from (`TokenValues::derived`), so every retry of
    /// a push carries the tokens stored for it.
    pub push_token: Secret,
    /// What user codes are hashed under, so a copy of the table does not give them away to a
    /// brute force of 10⁴ SHA-256 hashes.
    user_code: Secret,
    /// What the DPoP nonces the OP hands out are authenticated with (`dpop::current_nonce`),
    /// so a client cannot make one up for a time to come.
    pub dpop_nonce: Secret,
}

impl Keys {
    /// The keys of `secret`, refused when it is shorter than [`MIN_LEN`].
    pub fn derive(secret: &Secret) -> Result<Self, ConfigError> {
        if secret.expose().chars().count() < MIN_LEN {
            return Err(ConfigError(format!(
                "the OP secret must be at least {MIN_LEN} characters"
            )));
        }
        let key = |label: &str| Secret::new(URL_SAFE_NO_PAD.encode(hmac(secret.expose(), label)));
        Ok(Self {
            push_token: key(PUSH_TOKEN_LABEL),
            user_code: key(USER_CODE_LABEL),
            dpop_nonce: key(DPOP_NONCE_LABEL),
        })
    }

    /// The keys of the secret `OP_SECRET_ARN` names: one `GetSecretValue`, at cold start.
    pub async fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let arn = std::env::var(ARN_VAR)
            .ok()
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| ConfigError(format!("{ARN_VAR} is not set")))?;
        Self::from_secrets_manager(aws, arn.trim()).await
    }

    /// The keys of the Secrets Manager secret `secret_id` (ARN or name), whose value is the
    /// secret string.
    pub async fn from_secrets_manager(
        aws: &aws_config::SdkConfig,
        secret_id: &str,
    ) -> Result<Self, ConfigError> {
        let out = aws_sdk_secretsmanager::Client::new(aws)
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                ConfigError(format!(
                    "{ARN_VAR}: GetSecretValue of {secret_id} failed: {}",
                    chain(&e)
                ))
            })?;
        let value = out.secret_string().ok_or_else(|| {
            ConfigError(format!(
                "{ARN_VAR}: secret {secret_id} has no secret string"
            ))
        })?;
        Self::derive(&Secret::new(value))
            .map_err(|e| ConfigError(format!("{ARN_VAR}: secret {secret_id}: {}", e.0)))
    }

    /// The stored form of a user code: base64url(HMAC-SHA-256(user-code key, code)).
    pub fn user_code_hash(&self, code: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(self.user_code.expose(), code))
    }

    /// Compares a presented user code with its stored hash in constant time.
    pub fn user_code_matches(&self, presented: &str, stored_hash: &str) -> bool {
        self.user_code_hash(presented)
            .as_bytes()
            .ct_eq(stored_hash.as_bytes())
            .into()
    }
}

fn hmac(key: &str, message: &str) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::derive(&Secret::new(secret)).unwrap()
    }

    #[test]
    fn op_secret_shorter_than_32_characters_is_refused() {
        let err = Keys::derive(&Secret::new("x".repeat(31))).unwrap_err();
        assert_eq!(err.0, "the OP secret must be at least 32 characters");
        assert!(Keys::derive(&Secret::new("x".repeat(32))).is_ok());
    }

    #[test]
    fn user_code_hash_is_keyed_not_bare_sha256() {
        let a = keys(&"a".repeat(40));
        let b = keys(&"b".repeat(40));
        assert_ne!(a.user_code_hash("4321"), crate::secret::hash("4321"));
        assert_ne!(a.user_code_hash("4321"), b.user_code_hash("4321"));
        assert!(a.user_code_matches("4321", &a.user_code_hash("4321")));
        assert!(!a.user_code_matches("4322", &a.user_code_hash("4321")));
        assert!(!b.user_code_matches("4321", &a.user_code_hash("4321")));
    }

    #[test]
    fn each_purpose_has_its_own_key_and_none_is_the_secret() {
        let secret = "s".repeat(40);
        let k = keys(&secret);
        assert_ne!(k.push_token, k.user_code);
        assert_ne!(k.push_token.expose(), secret);
        assert_ne!(k.user_code.expose(), secret);
        // The derivation itself: HMAC-SHA-256(secret, label).
        assert_eq!(
            k.push_token.expose(),
            URL_SAFE_NO_PAD.encode(hmac(&secret, "ciba push-token v1"))
        );
    }

    #[test]
    fn keys_debug_shows_no_key() {
        let k = keys(&"s".repeat(40));
        let shown = format!("{k:?}");
        assert!(!shown.contains(k.push_token.expose()));
        assert!(!shown.contains(k.user_code.expose()));
    }
}
