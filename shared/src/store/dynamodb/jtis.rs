//! Used `jti` items: single use of a JWT id within its scope until it expires, on its own
//! (`use_jti`) or as one write of a request's transaction (`jti_put`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::DynamoStore;
use super::codec::{jti_item, num, opt_n};
use super::layout::{SK_JTI, jti_pk};
use super::transact::{build_error, conditional_put};
use crate::store::{JtiUse, Jtis, StoreError};

/// A `jti` may be written when it was never used, or when its previous use has expired.
const JTI_CONDITION: &str = "attribute_not_exists(pk) OR #ttl < :now";

#[async_trait]
impl Jtis for DynamoStore {
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(jti_item(jti)))
            .condition_expression(JTI_CONDITION)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", num(now))
            .send()
            .await;
        conditional_put("use_jti", result)
    }
}

impl DynamoStore {
    /// The conditional write of `jti` in a transaction; it fails while `jti` is live at `now`.
    pub(super) fn jti_put(&self, jti: &JtiUse, now: i64) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(jti_item(jti)))
            .condition_expression(JTI_CONDITION)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Whether `jti` is stored and not yet expired at `now`.
    pub(super) async fn jti_is_live(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        let item = self.get("decide", jti_pk(jti), SK_JTI).await?;
        match item {
            None => Ok(false),
            Some(item) => Ok(opt_n(&item, "ttl")?.is_some_and(|ttl| ttl >= now)),
        }
    }
}
