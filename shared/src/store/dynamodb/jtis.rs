//! Used `jti` items: single use of a JWT id within its scope until it expires, on its own
//! (`use_jti`), or before the request whose request object carries it is written. A `jti` may
//! be written when it was never used, or when its previous use has expired (`put_marked`).

use async_trait::async_trait;

use super::DynamoStore;
use super::codec::jti_item;
use crate::store::{JtiUse, Jtis, StoreError};

#[async_trait]
impl Jtis for DynamoStore {
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        self.put_marked("use_jti", jti_item(jti), Some(now)).await
    }
}
