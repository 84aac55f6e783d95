//! Client items: registered clients, their metadata as JSON.

use async_trait::async_trait;

use super::DynamoStore;
use super::codec::{client_item, from_json};
use super::layout::{SK_CLIENT, client_pk};
use super::transact::{conditional_put, sdk_error};
use crate::domain::Client;
use crate::store::{Clients, StoreError};

#[async_trait]
impl Clients for DynamoStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(client_item(client)?))
            .send()
            .await
            .map_err(|e| sdk_error("put_client", e))?;
        Ok(())
    }

    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(client_item(client)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional_put("create_client", result)
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.get("get_client", client_pk(client_id), SK_CLIENT)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }
}
