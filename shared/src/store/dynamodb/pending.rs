//! Each user's pending requests, for `PendingLimit`: one entry item per pending request under
//! the user's partition, sorted by expiry so a count reads only the live ones, and a head item
//! whose version every creation moves on. A creation reads the version, counts, and commits only
//! if the version is still the one it read: concurrent creations for one user cannot all count
//! the same entries and slip past the limit together.
//!
//! An entry goes in the transaction that creates its request and out in the one that decides or
//! discards it; expiry needs no write (the count starts after `now`), and TTL deletes the entry.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::DynamoStore;
use super::codec::{Item, num, opt_n, req_s, s};
use super::layout::{REQUEST_RETENTION_SECS, key};
use super::transact::{build_error, sdk_error};
use crate::domain::AuthRequest;
use crate::store::StoreError;

const SK_HEAD: &str = "HEAD";
const ENTRY_PREFIX: &str = "REQ#";
/// Above every entry's sort key: ids are base64url, which sorts below `~`.
const ENTRY_END: &str = "REQ#~";

fn pending_pk(sub: &str) -> String {
    format!("PENDING#{sub}")
}

/// Sorted by expiry: twelve digits hold every epoch second until the year 33658.
fn entry_sk(expires_at: i64, auth_req_id: &str) -> String {
    format!("{ENTRY_PREFIX}{expires_at:012}#{auth_req_id}")
}

/// The user's pending requests at one moment, and the version of the head they were read under.
pub(super) struct PendingCount {
    pub from_client: usize,
    pub total: usize,
    version: Option<i64>,
}

impl DynamoStore {
    /// Counts the user's requests still pending after `now`: from `client_id`, and in total.
    pub(super) async fn count_pending(
        &self,
        sub: &str,
        client_id: &str,
        now: i64,
    ) -> Result<PendingCount, StoreError> {
        let head = self.get("count_pending", pending_pk(sub), SK_HEAD).await?;
        let version = head.map(|h| opt_n(&h, "v")).transpose()?.flatten();
        let (mut from_client, mut total) = (0, 0);
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(&pending_pk(sub)))
                .expression_attribute_values(":from", s(&entry_sk(now + 1, "")))
                .expression_attribute_values(":to", s(ENTRY_END))
                .projection_expression("client_id")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("count_pending", e))?;
            for item in out.items() {
                total += 1;
                if req_s(item, "client_id")? == client_id {
                    from_client += 1;
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        Ok(PendingCount {
            from_client,
            total,
            version,
        })
    }

    /// The writes that file `request` as pending, for its creation's transaction: the entry, and
    /// the head moved on from the version `counted` read. The head's write is the last item.
    pub(super) fn file_pending(
        &self,
        request: &AuthRequest,
        counted: &PendingCount,
    ) -> Result<[TransactWriteItem; 2], StoreError> {
        let pk = pending_pk(&request.sub);
        let mut entry = key(
            pk.clone(),
            &entry_sk(request.expires_at, &request.auth_req_id),
        );
        entry.insert("client_id".into(), s(&request.client_id));
        entry.insert("ttl".into(), num(request.expires_at));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(entry))
            .build()
            .map_err(build_error)?;
        let head = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, SK_HEAD)))
            .update_expression("SET v = :next, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":next", num(counted.version.unwrap_or(0) + 1))
            .expression_attribute_values(":ttl", num(request.expires_at + REQUEST_RETENTION_SECS));
        let head = match counted.version {
            Some(v) => head
                .condition_expression("v = :read")
                .expression_attribute_values(":read", num(v)),
            None => head.condition_expression("attribute_not_exists(pk)"),
        };
        Ok([
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder()
                .update(head.build().map_err(build_error)?)
                .build(),
        ])
    }

    /// The write that takes `request` out of its user's pending requests (decided or discarded).
    pub(super) fn unfile_pending(
        &self,
        request: &AuthRequest,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                pending_pk(&request.sub),
                &entry_sk(request.expires_at, &request.auth_req_id),
            )))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}
