//! Each user's pending requests, for `PendingLimit`: one item per user, `PENDING#<sub>` /
//! `SLOTS`, holding a map of the requests filed since it was last pruned (the request's locator
//! → its client and expiry) and a version every filing moves on. A filing reads the item, counts,
//! and writes the new map only if the version is still the one it read: concurrent requests for
//! one user cannot all count the same entries and slip past the limit together.
//!
//! A request is filed after its item is written and leaves the map lazily: an entry past its
//! expiry is dropped without a read, and only when the entries would reach a bound (or the map
//! reaches `PRUNE_AT` entries) are the requests behind them read and those no longer pending
//! (decided, discarded, gone) dropped. Deciding a request therefore writes nothing here: a
//! decision is one write of the request item alone. A user far from the limits costs a filing
//! one read and one write; each decided entry is read about once, by the prune that drops it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::DynamoStore;
use super::codec::{Item, num, req_n, req_s, s};
use super::layout::{REQUEST_RETENTION_SECS, SK_AUTHREQ, authreq_pk, key, request_locator};
use super::transact::{MAX_ATTEMPTS, backoff, sdk_error, update_condition_failure};
use crate::domain::{AuthRequest, Status};
use crate::store::{Crowded, PendingLimit, StoreError};

const SK_SLOTS: &str = "SLOTS";
/// Entries the map may hold before the requests behind them are read to prune it, whatever the
/// limit: keeps the item under 1 KB, so that every filing's write stays one write unit (an entry
/// is a 22-character locator, a client id and an expiry: under 80 bytes with the map's overhead
/// for client ids up to 40 characters).
/// Below it, and below the limits, a filing reads no request.
const PRUNE_AT: usize = 12;
/// Keys one `BatchGetItem` may ask for.
const BATCH_GET_MAX: usize = 100;

fn pending_pk(sub: &str) -> String {
    format!("PENDING#{sub}")
}

/// One filed request: its client and expiry, under its locator.
#[derive(Clone, Debug)]
struct Entry {
    client_id: String,
    expires_at: i64,
}

impl DynamoStore {
    /// Files `request` among its user's pending requests unless that would cross `limit`;
    /// `Ok(Some(_))`, nothing filed, when it would. The request's item must already exist.
    pub(super) async fn file_pending(
        &self,
        request: &AuthRequest,
        limit: PendingLimit,
    ) -> Result<Option<Crowded>, StoreError> {
        let now = request.created_at;
        for attempt in 1..=MAX_ATTEMPTS {
            let (version, mut entries) = self.read_slots(&request.sub).await?;
            entries.retain(|_, e| e.expires_at > now);
            let crowded = |entries: &HashMap<String, Entry>| {
                let from_client = entries
                    .values()
                    .filter(|e| e.client_id == request.client_id)
                    .count();
                limit.crowded(from_client, entries.len())
            };
            // Decided entries still count here: reading them is only worth it when the count
            // would refuse the request, or the item grows.
            if entries.len() >= PRUNE_AT || crowded(&entries).is_some() {
                self.keep_pending(&mut entries).await?;
            }
            if let Some(crowded) = crowded(&entries) {
                return Ok(Some(crowded));
            }
            entries.insert(
                request_locator(&request.auth_req_id).to_owned(),
                Entry {
                    client_id: request.client_id.clone(),
                    expires_at: request.expires_at,
                },
            );
            if self.write_slots(&request.sub, version, &entries).await? {
                return Ok(None);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "file_pending: kept racing concurrent requests of the user".into(),
        ))
    }

    /// The user's map and the version it was read under (`None`: no item yet).
    async fn read_slots(
        &self,
        sub: &str,
    ) -> Result<(Option<i64>, HashMap<String, Entry>), StoreError> {
        let Some(item) = self.get("file_pending", pending_pk(sub), SK_SLOTS).await? else {
            return Ok((None, HashMap::new()));
        };
        let mut entries = HashMap::new();
        if let Some(AttributeValue::M(map)) = item.get("e") {
            for (locator, value) in map {
                let AttributeValue::M(entry) = value else {
                    return Err(StoreError::Fault(format!(
                        "pending entry {locator} is no map"
                    )));
                };
                entries.insert(
                    locator.clone(),
                    Entry {
                        client_id: req_s(entry, "c")?,
                        expires_at: req_n(entry, "x")?,
                    },
                );
            }
        }
        Ok((Some(req_n(&item, "v")?), entries))
    }

    /// Writes the map as the next version after `read`; `false` when another filing came first.
    async fn write_slots(
        &self,
        sub: &str,
        read: Option<i64>,
        entries: &HashMap<String, Entry>,
    ) -> Result<bool, StoreError> {
        let map: HashMap<String, AttributeValue> = entries
            .iter()
            .map(|(locator, e)| {
                let entry = HashMap::from([
                    ("c".to_owned(), s(&e.client_id)),
                    ("x".to_owned(), num(e.expires_at)),
                ]);
                (locator.clone(), AttributeValue::M(entry))
            })
            .collect();
        let last = entries.values().map(|e| e.expires_at).max().unwrap_or(0);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pending_pk(sub), SK_SLOTS)))
            .update_expression("SET v = :next, e = :e, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":next", num(read.unwrap_or(0) + 1))
            .expression_attribute_values(":e", AttributeValue::M(map))
            .expression_attribute_values(":ttl", num(last + REQUEST_RETENTION_SECS));
        let update = match read {
            Some(v) => update
                .condition_expression("v = :read")
                .expression_attribute_values(":read", num(v)),
            None => update.condition_expression("attribute_not_exists(pk)"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if update_condition_failure(&e).is_some() => Ok(false),
            Err(e) => Err(sdk_error("file_pending", e)),
        }
    }

    /// Keeps only the entries whose request is still pending, read strongly consistently.
    async fn keep_pending(&self, entries: &mut HashMap<String, Entry>) -> Result<(), StoreError> {
        let locators: Vec<String> = entries.keys().cloned().collect();
        let mut pending = std::collections::HashSet::new();
        for chunk in locators.chunks(BATCH_GET_MAX) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|l| key(authreq_pk(l), SK_AUTHREQ))
                .collect();
            while !keys.is_empty() {
                let wanted = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .projection_expression("pk, #status")
                    .expression_attribute_names("#status", "status")
                    .build()
                    .map_err(super::transact::build_error)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, wanted)
                    .send()
                    .await
                    .map_err(|e| sdk_error("file_pending", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if req_s(item, "status")? == Status::Pending.as_str() {
                        let pk = req_s(item, "pk")?;
                        pending.insert(pk);
                    }
                }
                if let Some(rest) = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .filter(|k| !k.is_empty())
                {
                    keys = rest;
                    backoff(1).await;
                }
            }
        }
        entries.retain(|locator, _| pending.contains(&authreq_pk(locator)));
        Ok(())
    }
}
