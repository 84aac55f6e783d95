//! The envelope signing mode: the OP's ES256 private key is made once (`ciba-admin signing-key`),
//! stored in the table only as the ciphertext KMS `Encrypt` made of it under a symmetric key, and
//! decrypted with one KMS `Decrypt` per cold start into a [`LocalSigner`]: no KMS call per token,
//! so no per-token cost and no ceiling from KMS's request quota (the KMS mode, `crate::kms`, keeps
//! the key in the HSM and pays both).
//!
//! The encryption context `{"purpose": "ciba-signing-key", "kid": <kid>}` binds each ciphertext
//! to its item: a ciphertext copied under another kid, or made for another purpose, does not
//! decrypt, and a key policy can allow `Decrypt` for this purpose only. The decrypted key must
//! also have the item's kid. Retired keys are published from their items' public JWK alone.
//!
//! The private key is never logged, printed or written in clear; the DER buffers this module
//! holds are zeroized when dropped (p256's `SigningKey` zeroizes itself). Error texts name the
//! setting, the kid and the KMS error code, never key material.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_kms::primitives::Blob;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::rand_core::OsRng;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::EncodePrivateKey;

use crate::config::ConfigError;
use crate::key_ring::KeyRing;
use crate::kms::sdk_error;
use crate::ports::{LocalSigner, Signer, SignerError, public_jwk_with_kid};
use crate::store::DynamoStore;
use crate::store::dynamodb::SigningKeyItem;

/// The environment variable of this mode: the kids, the signing key first.
pub const SETTING: &str = "SIGNING_KEY_ENVELOPE";

/// The `purpose` of every envelope key's encryption context (and of the template's condition on
/// `kms:Decrypt`).
pub const PURPOSE: &str = "ciba-signing-key";

fn encryption_context(kid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("purpose".to_owned(), PURPOSE.to_owned()),
        ("kid".to_owned(), kid.to_owned()),
    ])
}

/// Makes a new P-256 signing key, encrypts its PKCS#8 DER under the symmetric KMS key
/// `kms_key_id` and stores the ciphertext with the public JWK. Returns the new kid.
pub async fn create_key(
    kms: &aws_sdk_kms::Client,
    store: &DynamoStore,
    kms_key_id: &str,
    now: i64,
) -> Result<String, SignerError> {
    let key = SigningKey::random(&mut OsRng);
    let (kid, jwk) = public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
    let der = key
        .to_pkcs8_der()
        .map_err(|_| SignerError("cannot encode the new key as PKCS#8".into()))?;
    let out = kms
        .encrypt()
        .key_id(kms_key_id)
        .plaintext(Blob::new(der.as_bytes()))
        .set_encryption_context(Some(encryption_context(&kid)))
        .send()
        .await
        .map_err(|e| sdk_error("Encrypt", &e))?;
    let ciphertext = out
        .ciphertext_blob()
        .ok_or_else(|| SignerError("KMS Encrypt answered no ciphertext".into()))?;
    let record = SigningKeyItem {
        kid: kid.clone(),
        ciphertext: ciphertext.as_ref().to_vec(),
        public_jwk: jwk.to_string(),
        kms_key_id: out.key_id().unwrap_or(kms_key_id).to_owned(),
        created_at: now,
    };
    let created = store
        .create_signing_key(&record)
        .await
        .map_err(|e| SignerError(format!("storing key {kid}: {e}")))?;
    if !created {
        return Err(SignerError(format!(
            "key {kid} is already stored in {}; nothing was changed",
            store.table()
        )));
    }
    Ok(kid)
}

/// The kids `value` lists (`SIGNING_KEY_ENVELOPE`: comma-separated, the signing key first);
/// spaces around an entry are tolerated. A kid is an RFC 7638 thumbprint, base64url.
pub fn kids(value: &str) -> Result<Vec<&str>, ConfigError> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    for (i, entry) in entries.iter().enumerate() {
        let well_formed = !entry.is_empty()
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ConfigError(format!(
                "{SETTING}: entry {} of {} is not a kid (a comma-separated list of the kids \
                 ciba-admin signing-key printed, the signing key first)",
                i + 1,
                entries.len()
            )));
        }
    }
    Ok(entries)
}

/// The ring `SIGNING_KEY_ENVELOPE=<value>` names: the first kid's key decrypted (one KMS
/// `Decrypt`) signs, the others' public JWKs are published. The items are read concurrently and
/// the decryption starts as soon as the signing key's item is in.
pub async fn load_ring(
    kms: &aws_sdk_kms::Client,
    store: &DynamoStore,
    value: &str,
) -> Result<KeyRing, ConfigError> {
    let kids = kids(value)?;
    let Some((active, retired)) = kids.split_first() else {
        return Err(ConfigError(format!("{SETTING}: no kid")));
    };
    let retired = retired.iter().map(|kid| async move {
        let item = item(store, kid).await?;
        let jwk = published_jwk(&item)?;
        tracing::info!(kid = %kid, "envelope retired key loaded (published, not signing)");
        Ok::<_, ConfigError>(jwk)
    });
    let (signer, retired) = futures_util::future::try_join(
        async {
            let item = item(store, active).await?;
            decrypt(kms, &item).await
        },
        futures_util::future::try_join_all(retired),
    )
    .await?;
    tracing::info!(kid = %signer.kid(), "envelope signing key decrypted");
    Ok(KeyRing::new(Arc::new(signer), retired))
}

async fn item(store: &DynamoStore, kid: &str) -> Result<SigningKeyItem, ConfigError> {
    store
        .get_signing_key(kid)
        .await
        .map_err(|e| ConfigError(format!("{SETTING}: key {kid}: {e}")))?
        .ok_or_else(|| {
            ConfigError(format!(
                "{SETTING}: key {kid} is not in table {} (ciba-admin signing-key makes one)",
                store.table()
            ))
        })
}

/// The item's public JWK, refused unless it is a P-256 key whose thumbprint is the item's kid.
fn published_jwk(item: &SigningKeyItem) -> Result<serde_json::Value, ConfigError> {
    let kid = &item.kid;
    let bad = || {
        ConfigError(format!(
            "{SETTING}: key {kid}: its public_jwk is not its P-256 key"
        ))
    };
    let stored: serde_json::Value = serde_json::from_str(&item.public_jwk).map_err(|_| bad())?;
    let bare = serde_json::json!({"kty": stored["kty"], "crv": stored["crv"], "x": stored["x"], "y": stored["y"]});
    let public = p256::PublicKey::from_jwk_str(&bare.to_string()).map_err(|_| bad())?;
    let (thumbprint, jwk) = public_jwk_with_kid(&public);
    if thumbprint != *kid {
        return Err(bad());
    }
    Ok(jwk)
}

/// The item's private key: `Decrypt` pinned to the item's KMS key and the kid's encryption
/// context, then checked to be the key the kid names.
async fn decrypt(
    kms: &aws_sdk_kms::Client,
    item: &SigningKeyItem,
) -> Result<LocalSigner, ConfigError> {
    let kid = &item.kid;
    let out = kms
        .decrypt()
        .key_id(&item.kms_key_id)
        .ciphertext_blob(Blob::new(item.ciphertext.clone()))
        .set_encryption_context(Some(encryption_context(kid)))
        .send()
        .await
        .map_err(|e| {
            ConfigError(format!(
                "{SETTING}: key {kid}: {}",
                sdk_error("Decrypt", &e).0
            ))
        })?;
    let der = Zeroizing::new(out.plaintext.map(Blob::into_inner).ok_or_else(|| {
        ConfigError(format!(
            "{SETTING}: key {kid}: KMS Decrypt answered no plaintext"
        ))
    })?);
    let signer = LocalSigner::from_pkcs8_der(&der).map_err(|_| {
        ConfigError(format!(
            "{SETTING}: key {kid}: the decrypted key is not a PKCS#8 P-256 private key"
        ))
    })?;
    if signer.kid() != kid {
        return Err(ConfigError(format!(
            "{SETTING}: key {kid}: the decrypted key has another kid (a ciphertext stored under \
             the wrong item)"
        )));
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_list_is_split_on_commas_with_spaces_around_entries_tolerated() {
        assert_eq!(kids("k1").unwrap(), ["k1"]);
        assert_eq!(kids(" a-b_C , d ").unwrap(), ["a-b_C", "d"]);
    }

    #[test]
    fn a_kid_list_entry_that_is_not_a_kid_is_a_config_error_naming_the_setting() {
        for value in ["", "k1,", "k1,,k2", "k1,a b", "k1,SIGNING_KEY#x", "k/1"] {
            let ConfigError(text) = kids(value).unwrap_err();
            assert!(
                text.starts_with("SIGNING_KEY_ENVELOPE: entry "),
                "{value}: {text}"
            );
        }
    }

    #[test]
    fn a_public_jwk_that_is_not_the_kids_key_is_refused() {
        let (a, b) = (LocalSigner::generate(), LocalSigner::generate());
        let item = |public_jwk: String| SigningKeyItem {
            kid: a.kid().to_owned(),
            ciphertext: vec![],
            public_jwk,
            kms_key_id: "k".into(),
            created_at: 0,
        };
        assert_eq!(
            published_jwk(&item(a.public_jwk().to_string())).unwrap(),
            *a.public_jwk()
        );
        for wrong in [b.public_jwk().to_string(), "{}".into(), "not json".into()] {
            let ConfigError(text) = published_jwk(&item(wrong)).unwrap_err();
            assert!(text.starts_with("SIGNING_KEY_ENVELOPE: key "), "{text}");
            assert!(text.contains(a.kid()), "{text}");
        }
    }
}
