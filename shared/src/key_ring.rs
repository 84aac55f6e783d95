//! Signing-key rotation without a gap: the OP signs with one key and publishes it together with
//! the keys it replaced, so a token signed before a rotation still verifies against `/jwks`
//! until the old key is removed from the configuration.

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::ConfigError;
use crate::ports::{LocalSigner, Signer, SignerError, public_jwk_with_kid};

/// The active signing key and the public JWKs of the retired ones.
pub struct KeyRing {
    active: Arc<dyn Signer>,
    published: Vec<serde_json::Value>,
}

impl KeyRing {
    /// `active` signs; `retired` (public JWKs with `kid`, `use`, `alg`) are only published, in
    /// the order given. A retired key listed twice, or equal to the active one (a key id and its
    /// alias in the same list), is published once: verifiers pick a key by `kid`.
    pub fn new(active: Arc<dyn Signer>, retired: Vec<serde_json::Value>) -> Self {
        let mut published = vec![active.public_jwk().clone()];
        for jwk in retired {
            if !published.iter().any(|p| p["kid"] == jwk["kid"]) {
                published.push(jwk);
            }
        }
        Self { active, published }
    }
}

/// The kids only: a ring may hold a private key.
impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&serde_json::Value> = self.published.iter().map(|k| &k["kid"]).collect();
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.kid())
            .field("published_kids", &kids)
            .finish()
    }
}

/// The KMS keys `value` lists (`KMS_KEY_ID`: ids, ARNs or aliases separated by commas, the
/// signing key first). Spaces around an entry are tolerated; an empty entry, or one with
/// whitespace inside, is refused rather than passed to KMS as a key nobody meant.
pub fn key_ids<'a>(setting: &str, value: &'a str) -> Result<Vec<&'a str>, ConfigError> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    for (i, entry) in entries.iter().enumerate() {
        let problem = if entry.is_empty() {
            "is empty"
        } else if entry.contains(char::is_whitespace) {
            "contains whitespace"
        } else {
            continue;
        };
        return Err(ConfigError(format!(
            "{setting}: key {} of {} {problem} (a comma-separated list of KMS key ids, ARNs or \
             aliases, the signing key first)",
            i + 1,
            entries.len()
        )));
    }
    Ok(entries)
}

/// A ring from PEM text (`SIGNING_KEY_PEM`, or the file `SIGNING_KEY_FILE` names): the first
/// block is the PKCS#8 P-256 private key that signs; the others are the keys it replaced,
/// each a private key (the old file's content, pasted below the new key) or a public key.
pub fn from_pem(setting: &str, text: &str) -> Result<KeyRing, ConfigError> {
    let blocks = pem_blocks(text);
    let Some(((_, first), retired)) = blocks.split_first() else {
        return Err(ConfigError(format!(
            "{setting}: the signing key is not a PKCS#8 P-256 PEM"
        )));
    };
    let active = LocalSigner::from_pkcs8_pem(first).map_err(|_| {
        ConfigError(format!(
            "{setting}: the signing key is not a PKCS#8 P-256 PEM"
        ))
    })?;
    let retired = retired
        .iter()
        .enumerate()
        .map(|(i, (label, block))| {
            retired_jwk(label, block).ok_or_else(|| {
                ConfigError(format!(
                    "{setting}: PEM block {} is neither a PKCS#8 P-256 private key nor a P-256 \
                     public key",
                    i + 2
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeyRing::new(Arc::new(active), retired))
}

fn retired_jwk(label: &str, block: &str) -> Option<serde_json::Value> {
    use p256::pkcs8::DecodePublicKey;
    match label {
        "PRIVATE KEY" => LocalSigner::from_pkcs8_pem(block)
            .ok()
            .map(|signer| signer.public_jwk().clone()),
        "PUBLIC KEY" => p256::PublicKey::from_public_key_pem(block)
            .ok()
            .map(|public| public_jwk_with_kid(&public).1),
        _ => None,
    }
}

/// The `-----BEGIN label-----` … `-----END label-----` blocks of `text` with their labels, in
/// order; text between blocks is ignored, as PEM readers do. An unterminated block runs to the
/// end, so that it fails to parse instead of vanishing.
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let label = block[BEGIN.len()..]
            .split_once("-----")
            .map_or("", |(label, _)| label);
        let end_marker = format!("-----END {label}-----");
        let Some(end) = block.find(&end_marker).map(|e| e + end_marker.len()) else {
            blocks.push((label, block));
            break;
        };
        blocks.push((label, &block[..end]));
        rest = &block[end..];
    }
    blocks
}

#[async_trait]
impl Signer for KeyRing {
    fn kid(&self) -> &str {
        self.active.kid()
    }

    fn public_jwk(&self) -> &serde_json::Value {
        self.active.public_jwk()
    }

    fn published_jwks(&self) -> Vec<serde_json::Value> {
        self.published.clone()
    }

    async fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignerError> {
        self.active.sign(input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LocalSigner;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};

    fn verifying_key(jwk: &serde_json::Value) -> VerifyingKey {
        let bare =
            serde_json::json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]});
        VerifyingKey::from(p256::PublicKey::from_jwk_str(&bare.to_string()).unwrap())
    }

    #[test]
    fn ring_publishes_the_active_key_first_then_the_retired_in_order() {
        let (active, old, older) = (
            LocalSigner::generate(),
            LocalSigner::generate(),
            LocalSigner::generate(),
        );
        let expected = vec![
            active.public_jwk().clone(),
            old.public_jwk().clone(),
            older.public_jwk().clone(),
        ];

        let ring = KeyRing::new(
            Arc::new(active),
            vec![old.public_jwk().clone(), older.public_jwk().clone()],
        );

        assert_eq!(ring.published_jwks(), expected);
    }

    #[test]
    fn ring_publishes_each_kid_once() {
        let (active, old) = (LocalSigner::generate(), LocalSigner::generate());
        let retired = vec![
            old.public_jwk().clone(),
            active.public_jwk().clone(),
            old.public_jwk().clone(),
        ];
        let expected = vec![active.public_jwk().clone(), old.public_jwk().clone()];

        let ring = KeyRing::new(Arc::new(active), retired);

        assert_eq!(ring.published_jwks(), expected);
    }

    #[test]
    fn kms_key_list_is_split_on_commas_with_spaces_around_entries_tolerated() {
        assert_eq!(key_ids("KMS_KEY_ID", "k1").unwrap(), ["k1"]);
        assert_eq!(
            key_ids("KMS_KEY_ID", " alias/new , arn:aws:kms:eu-west-1:1:key/old").unwrap(),
            ["alias/new", "arn:aws:kms:eu-west-1:1:key/old"]
        );
    }

    #[test]
    fn empty_kms_key_list_entry_is_a_config_error_naming_the_setting() {
        for value in ["k1,", ",k1", "k1,,k2", "k1, ,k2"] {
            let ConfigError(text) = key_ids("KMS_KEY_ID", value).unwrap_err();
            assert!(text.starts_with("KMS_KEY_ID: key "), "{value}: {text}");
            assert!(text.contains("is empty"), "{value}: {text}");
        }
    }

    #[test]
    fn kms_key_list_entry_with_whitespace_inside_is_a_config_error() {
        let ConfigError(text) = key_ids("KMS_KEY_ID", "k1,alias/a b").unwrap_err();
        assert!(
            text.starts_with("KMS_KEY_ID: key 2 of 2 contains whitespace"),
            "{text}"
        );
    }

    #[test]
    fn pem_ring_signs_with_the_first_block_and_publishes_the_rest() {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let (new, old, older) = (
            LocalSigner::generate(),
            LocalSigner::generate(),
            LocalSigner::generate(),
        );
        let older_public = p256::PublicKey::from_jwk_str(
            &serde_json::json!({"kty": "EC", "crv": "P-256", "x": older.public_jwk()["x"], "y": older.public_jwk()["y"]})
                .to_string(),
        )
        .unwrap()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
        let text = format!(
            "{}\n# replaced in May\n{}{}",
            new.to_pkcs8_pem(),
            old.to_pkcs8_pem(),
            older_public
        );

        let ring = from_pem("SIGNING_KEY_PEM", &text).unwrap();

        assert_eq!(ring.kid(), new.kid());
        assert_eq!(
            ring.published_jwks(),
            [
                new.public_jwk().clone(),
                old.public_jwk().clone(),
                older.public_jwk().clone()
            ]
        );
    }

    #[test]
    fn single_pem_key_publishes_only_itself() {
        let key = LocalSigner::generate();

        let ring = from_pem("SIGNING_KEY_PEM", &key.to_pkcs8_pem()).unwrap();

        assert_eq!(ring.published_jwks(), [key.public_jwk().clone()]);
    }

    #[test]
    fn unreadable_pem_block_is_a_config_error_naming_the_setting_and_block() {
        let key = LocalSigner::generate().to_pkcs8_pem();
        let ConfigError(text) = from_pem("SIGNING_KEY_PEM", "not a key").unwrap_err();
        assert_eq!(
            text,
            "SIGNING_KEY_PEM: the signing key is not a PKCS#8 P-256 PEM"
        );

        let truncated = format!("{key}{}", &key[..60]);
        let ConfigError(text) = from_pem("SIGNING_KEY_FILE /k.pem", &truncated).unwrap_err();
        assert!(
            text.starts_with("SIGNING_KEY_FILE /k.pem: PEM block 2 is neither"),
            "{text}"
        );
        assert!(
            !text.contains(&key[30..60]),
            "no key material in the message"
        );
    }

    #[tokio::test]
    async fn ring_signs_with_the_active_key_and_names_it() {
        let (active, old) = (LocalSigner::generate(), LocalSigner::generate());
        let (active_jwk, old_jwk) = (active.public_jwk().clone(), old.public_jwk().clone());
        let ring = KeyRing::new(Arc::new(active), vec![old_jwk.clone()]);

        let signature = Signature::from_slice(&ring.sign(b"input").await.unwrap()).unwrap();

        assert_eq!(ring.kid(), active_jwk["kid"]);
        assert_eq!(ring.public_jwk(), &active_jwk);
        verifying_key(&active_jwk)
            .verify(b"input", &signature)
            .unwrap();
        assert!(
            verifying_key(&old_jwk)
                .verify(b"input", &signature)
                .is_err()
        );
    }
}
