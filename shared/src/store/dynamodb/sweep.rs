//! The expiry index of ping and push requests (`DUE#<minute>#<shard>` items) and its sweep:
//! requests that expired undecided are marked `expired`, so their clients can be told.
//!
//! A cursor item records the minute up to which every due item has been handled, so a sweep
//! reads only the minutes since the last complete one. The first request filed for expiry starts
//! the cursor at its creation (every later due item falls at or after it): a table without a
//! cursor has nothing due, and its first sweep reads nothing instead of a whole lookback of empty
//! partitions.

use std::sync::atomic::Ordering;

use futures_util::{StreamExt, stream};

use super::DynamoStore;
use super::codec::{auth_request_from_item, num, req_n, req_s, s};
use super::layout::{DUE_SHARDS, SK_SWEEP_CURSOR, SWEEP_CURSOR_PK, due_minute_pk, key};
use super::transact::{sdk_error, update_condition_failure};
use crate::domain::{AuthRequest, Status};
use crate::store::StoreError;
use aws_sdk_dynamodb::types::ReturnValue;

impl DynamoStore {
    pub(super) async fn sweep_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let mut expired = Vec::new();
        let mut seen = 0;
        let oldest = (now - lookback).div_euclid(60);
        // No cursor: no request was ever filed for expiry (filing starts it), nothing is due.
        let Some(cursor) = self.sweep_cursor().await? else {
            self.advance_sweep_cursor(now.div_euclid(60)).await?;
            return Ok(expired);
        };
        let start = cursor.max(oldest);
        // The minutes' partitions are read a few dozen at once (a day's worth after an outage),
        // then handled in order. Each minute is spread over `DUE_SHARDS` partitions;
        // `DUE#<minute>` alone is where requests filed before the index was sharded are.
        let partitions: Vec<String> = (start..=now.div_euclid(60))
            .flat_map(|minute| {
                (0..DUE_SHARDS)
                    .map(move |shard| due_minute_pk(minute, shard))
                    .chain(std::iter::once(format!("DUE#{minute}")))
            })
            .collect();
        let mut minutes = stream::iter(partitions)
            .map(|pk| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(&pk))
                    .consistent_read(true)
                    .send()
            })
            .buffered(32);
        while let Some(out) = minutes.next().await {
            let out = out.map_err(|e| sdk_error("expire_due", e))?;
            for item in out.items() {
                let (pk, id) = (req_s(item, "pk")?, req_s(item, "sk")?);
                let expires_at = req_n(item, "expires_at")?;
                if expires_at > now {
                    continue;
                }
                if seen == limit {
                    return Ok(expired);
                }
                seen += 1;
                let result = self
                    .update_request(&id)
                    .update_expression("SET #status = :expired")
                    .condition_expression(
                        "auth_req_id = :id AND #status = :pending AND expires_at <= :now",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":expired", s(Status::Expired.as_str()))
                    .expression_attribute_values(":pending", s(Status::Pending.as_str()))
                    .expression_attribute_values(":now", num(now))
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await;
                match result {
                    Ok(out) => {
                        if let Some(item) = out.attributes() {
                            expired.push(auth_request_from_item(item)?);
                        }
                    }
                    // Decided or gone meanwhile: nothing to expire.
                    Err(e) if update_condition_failure(&e).is_some() => {}
                    Err(e) => return Err(sdk_error("expire_due", e)),
                }
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(pk, &id)))
                    .send()
                    .await
                    .map_err(|e| sdk_error("expire_due", e))?;
            }
        }
        // Every due item of the minutes before this one is handled: the next sweep starts here.
        self.advance_sweep_cursor(now.div_euclid(60)).await?;
        Ok(expired)
    }

    /// Starts the sweep cursor at the minute of `now` unless it exists: called before a due
    /// item is first written. Once seen, the cursor is never looked for again by this process.
    pub(super) async fn start_sweep_cursor(&self, now: i64) -> Result<(), StoreError> {
        if self.cursor_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.set_sweep_cursor(
            "create_auth_request",
            now.div_euclid(60),
            "attribute_not_exists(#minute)",
        )
        .await?;
        self.cursor_seen.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The minute the last complete expiry sweep reached, if any sweep completed.
    async fn sweep_cursor(&self) -> Result<Option<i64>, StoreError> {
        let item = self
            .get("expire_due", SWEEP_CURSOR_PK.into(), SK_SWEEP_CURSOR)
            .await?;
        item.map(|item| req_n(&item, "minute")).transpose()
    }

    /// Moves the sweep cursor forward to `minute`, never back (sweeps may overlap).
    async fn advance_sweep_cursor(&self, minute: i64) -> Result<(), StoreError> {
        self.set_sweep_cursor(
            "expire_due",
            minute,
            "attribute_not_exists(#minute) OR #minute < :minute",
        )
        .await
    }

    /// Sets the sweep cursor to `minute` where `condition` holds; a failed condition leaves it.
    async fn set_sweep_cursor(
        &self,
        op: &str,
        minute: i64,
        condition: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(SWEEP_CURSOR_PK.into(), SK_SWEEP_CURSOR)))
            .update_expression("SET #minute = :minute")
            .condition_expression(condition)
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_values(":minute", num(minute))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if update_condition_failure(&e).is_some() => Ok(()),
            Err(e) => Err(sdk_error(op, e)),
        }
    }
}
