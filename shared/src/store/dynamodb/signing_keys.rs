//! Envelope signing keys (`crate::envelope`): each ES256 private key only as KMS ciphertext, with
//! its public JWK beside it so that a retired key is published without a `Decrypt`.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::codec::{Item, num, req_n, req_s, s};
use super::layout::{SK_SIGNING_KEY, key, signing_key_pk};
use super::transact::conditional_put;
use crate::store::StoreError;

/// One envelope signing key as stored: never the private key in clear.
#[derive(Clone, Debug, PartialEq)]
pub struct SigningKeyItem {
    /// The RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The PKCS#8 DER of the private key, encrypted by KMS `Encrypt` under `kms_key_id` with the
    /// encryption context `{"purpose": "ciba-signing-key", "kid": kid}`.
    pub ciphertext: Vec<u8>,
    /// The public JWK (with `kid`, `use`, `alg`) as JSON text.
    pub public_jwk: String,
    /// The symmetric KMS key the ciphertext is under, as `Encrypt` named it (a key ARN).
    pub kms_key_id: String,
    /// Epoch seconds.
    pub created_at: i64,
}

fn signing_key_item(record: &SigningKeyItem) -> Item {
    let mut item = key(signing_key_pk(&record.kid), SK_SIGNING_KEY);
    item.insert("kid".into(), s(&record.kid));
    item.insert(
        "ciphertext".into(),
        AttributeValue::B(Blob::new(record.ciphertext.clone())),
    );
    item.insert("public_jwk".into(), s(&record.public_jwk));
    item.insert("kms_key_id".into(), s(&record.kms_key_id));
    item.insert("created_at".into(), num(record.created_at));
    item
}

fn signing_key_from_item(item: &Item) -> Result<SigningKeyItem, StoreError> {
    let ciphertext = match item.get("ciphertext") {
        Some(AttributeValue::B(blob)) => blob.as_ref().to_vec(),
        Some(_) => {
            return Err(StoreError::Fault(
                "attribute ciphertext is not binary".into(),
            ));
        }
        None => return Err(StoreError::Fault("attribute ciphertext is missing".into())),
    };
    Ok(SigningKeyItem {
        kid: req_s(item, "kid")?,
        ciphertext,
        public_jwk: req_s(item, "public_jwk")?,
        kms_key_id: req_s(item, "kms_key_id")?,
        created_at: req_n(item, "created_at")?,
    })
}

impl DynamoStore {
    /// Stores a new envelope signing key; `false` (nothing written) when its kid is already
    /// stored: a key is never overwritten.
    pub async fn create_signing_key(&self, record: &SigningKeyItem) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(signing_key_item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_put("create_signing_key", result)
    }

    pub async fn get_signing_key(&self, kid: &str) -> Result<Option<SigningKeyItem>, StoreError> {
        self.get("get_signing_key", signing_key_pk(kid), SK_SIGNING_KEY)
            .await?
            .map(|item| signing_key_from_item(&item))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_item_round_trips() {
        let record = SigningKeyItem {
            kid: "k1".into(),
            ciphertext: vec![0, 1, 2, 255],
            public_jwk: r#"{"kid":"k1"}"#.into(),
            kms_key_id: "arn:aws:kms:us-east-1:1:key/x".into(),
            created_at: 1_700_000_000,
        };
        let item = signing_key_item(&record);
        assert_eq!(item["pk"], s("SIGNING_KEY#k1"));
        assert_eq!(item["sk"], s("SIGNING_KEY"));
        assert_eq!(signing_key_from_item(&item).unwrap(), record);
    }
}
