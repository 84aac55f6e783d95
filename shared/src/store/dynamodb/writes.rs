//! The plain writes the request steps are made of (see `requests`): puts that must be new and
//! recognise their own lost answers, batches, and what a step cut short takes back.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    DeleteRequest, PutRequest, ReturnValuesOnConditionCheckFailure, WriteRequest,
};

use super::DynamoStore;
use super::codec::{Item, num, opt_s, req_s, s, token_item};
use super::layout::{
    SK_AUTHREQ, SK_JTI, SK_TOKEN, SK_TXN, authreq_pk, jti_pk, key, token_pk, txn_pk,
};
use super::requests::{MARK_BYTES, stored_under_txn};
use super::transact::{MAX_ATTEMPTS, backoff, build_error, sdk_error};
use crate::domain::{AuthRequest, TokenRecord};
use crate::ports::{OsRandom, Random};
use crate::store::{JtiUse, StoreError};

impl DynamoStore {
    /// Whether the request carries `mark` in `attribute`: the write that leaves it went through.
    pub(super) async fn marked(
        &self,
        auth_req_id: &str,
        attribute: &str,
        mark: &str,
    ) -> Result<bool, StoreError> {
        let item = self
            .get("marked", authreq_pk(auth_req_id), SK_AUTHREQ)
            .await?;
        Ok(match item {
            Some(item) => opt_s(&item, attribute)?.as_deref() == Some(mark),
            None => false,
        })
    }

    /// Puts an item that must be new: `false` when its key is taken.
    pub(super) async fn put_new(&self, op: &str, item: Item) -> Result<bool, StoreError> {
        self.put_marked(op, item, None).await
    }

    /// Puts an item whose key must be free, or (with `lapsed_before`) whose holder's TTL lapsed
    /// before then: `false` when it is taken. The item carries a mark of this call, so a put
    /// whose answer was lost, and that the SDK sent again or that fails outright, learns from
    /// the item whether it was its own.
    pub(super) async fn put_marked(
        &self,
        op: &str,
        mut item: Item,
        lapsed_before: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mark = OsRandom.token(MARK_BYTES);
        item.insert("put_by".into(), s(&mark));
        let key = key(req_s(&item, "pk")?, &req_s(&item, "sk")?);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match lapsed_before {
            Some(now) => put
                .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", num(now)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        let ours = |item: Option<&Item>| {
            item.and_then(|i| i.get("put_by"))
                .and_then(|v| v.as_s().ok())
                == Some(&mark)
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => Ok(ours(e.item())),
                _ => {
                    let read = self
                        .client
                        .get_item()
                        .table_name(&self.table)
                        .set_key(Some(key))
                        .consistent_read(true)
                        .send()
                        .await;
                    match read {
                        Ok(out) if ours(out.item()) => Ok(true),
                        _ => Err(sdk_error(op, err)),
                    }
                }
            },
        }
    }

    /// Takes back what a refused or failed creation wrote (`written`: how far it got), as far as
    /// it can: what is left stays unreachable (no client was given the id) until its TTL.
    pub(super) async fn undo_create(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        written: Created,
    ) {
        let mut keys = Vec::new();
        if written >= Created::Request {
            keys.push(key(authreq_pk(&request.auth_req_id), SK_AUTHREQ));
        }
        if written >= Created::Pointer && !stored_under_txn(request) {
            keys.push(key(txn_pk(&request.txn), SK_TXN));
        }
        if let Some(jti) = jti {
            keys.push(key(jti_pk(jti), SK_JTI));
        }
        if let Err(e) = self.delete_keys("create_auth_request", keys).await {
            tracing::warn!(error = %e, "create_auth_request: a refused request's items are left to their TTL");
        }
    }

    /// Puts `tokens` (new, random keys: no condition needed), in one batch.
    pub(super) async fn put_tokens(
        &self,
        op: &str,
        tokens: &[TokenRecord],
    ) -> Result<(), StoreError> {
        let writes = tokens
            .iter()
            .map(|t| {
                PutRequest::builder()
                    .set_item(Some(token_item(t)))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(op, writes).await
    }

    pub(super) async fn delete_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        let keys = tokens
            .iter()
            .map(|t| key(token_pk(&t.hash), SK_TOKEN))
            .collect();
        self.delete_keys("redeem", keys).await
    }

    pub(super) async fn delete_keys(&self, op: &str, keys: Vec<Item>) -> Result<(), StoreError> {
        let writes = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(op, writes).await
    }

    /// One `BatchWriteItem` (at most 25 writes), sent again with what it left unprocessed.
    pub(super) async fn batch_write(
        &self,
        op: &str,
        mut writes: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            if writes.is_empty() {
                return Ok(());
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut writes))
                .send()
                .await
                .map_err(|e| sdk_error(op, e))?;
            writes = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if !writes.is_empty() {
                backoff(attempt).await;
            }
        }
        Err(StoreError::Unavailable(format!(
            "{op}: writes kept coming back unprocessed"
        )))
    }
}

/// How far a creation got before it was refused or failed: each step includes the ones before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Created {
    /// Only the request object's `jti`, if any.
    Jti,
    /// And the request item.
    Request,
    /// And the `TXN#` item of an id that does not start with its txn.
    Pointer,
}
