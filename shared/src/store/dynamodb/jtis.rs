//! Used `jti` items: single use of a JWT id within its scope until it expires, on its own
//! (`use_jti`), or before the request whose request object carries it is written.

use async_trait::async_trait;

use super::DynamoStore;
use super::codec::{jti_item, num};
use super::transact::conditional_put;
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
    /// Marks `jti` used at `now`; `false` when it is live.
    pub(super) async fn put_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        self.use_jti(jti, now).await
    }
}
