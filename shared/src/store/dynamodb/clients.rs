//! Client items: registered clients, their metadata as JSON; and the process's cache of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        self.forget_client(&client.client_id);
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
        self.forget_client(&client.client_id);
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
        if let Some(client) = self.clients.as_ref().and_then(|c| c.get(client_id)) {
            return Ok(Some(client));
        }
        let client: Option<Client> = self
            .get("get_client", client_pk(client_id), SK_CLIENT)
            .await?
            .map(|item| from_json(&item))
            .transpose()?;
        // Only clients that exist are kept: one registered a moment ago is found at once.
        if let (Some(cache), Some(client)) = (&self.clients, &client) {
            cache.put(client);
        }
        Ok(client)
    }
}

impl DynamoStore {
    fn forget_client(&self, client_id: &str) {
        if let Some(cache) = &self.clients {
            cache.forget(client_id);
        }
    }
}

/// Clients by id with the instant each was read; past `ttl` an entry is read again.
#[derive(Debug)]
pub(super) struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Client)>>,
}

/// Clients the cache holds at most: past it, it starts over (a deployment has few clients; a
/// flood of made-up ids is never cached, since only clients that exist are).
const MAX_CACHED_CLIENTS: usize = 10_000;

impl ClientCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, client_id: &str) -> Option<Client> {
        let entries = self.entries.lock().ok()?;
        let (read_at, client) = entries.get(client_id)?;
        (read_at.elapsed() < self.ttl).then(|| client.clone())
    }

    fn put(&self, client: &Client) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CACHED_CLIENTS {
                entries.clear();
            }
            entries.insert(client.client_id.clone(), (Instant::now(), client.clone()));
        }
    }

    fn forget(&self, client_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(client_id);
        }
    }
}
