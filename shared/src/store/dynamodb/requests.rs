//! Auth request items, with their `txn` and due-expiry items: creation, the poll-rate check, the
//! one decision, redemption, the expiry sweep and the notification mark.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use futures_util::{StreamExt, stream};

use super::DynamoStore;
use super::codec::{
    Item, auth_request_from_item, auth_request_item, due_item, num, req_n, req_s, s, txn_item,
};
use super::layout::{
    SK_AUTHREQ, SK_JTI, SK_SWEEP_CURSOR, SK_TXN, SWEEP_CURSOR_PK, authreq_pk, due_minute_pk,
    due_pk, jti_pk, key, txn_pk,
};
use super::transact::{
    CONDITION_FAILED, MAX_ATTEMPTS, Transaction, backoff, build_error, sdk_error,
    update_condition_failure,
};
use crate::domain::{AuthRequest, Decision, DeliveryMode, Family, Status, TokenRecord};
use crate::protocol::SLOW_DOWN_STEP_SECS;
use crate::store::{
    CreateError, DecideError, JtiUse, PendingLimit, PollOutcome, RedeemError, Requests, StoreError,
};

#[async_trait]
impl Requests for DynamoStore {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError> {
        let new_item = |item: Item| -> Result<TransactWriteItem, StoreError> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut writes = vec![
            new_item(auth_request_item(request))?,
            new_item(txn_item(request))?,
        ];
        if let Some(jti) = jti {
            writes.push(self.jti_put(jti, request.created_at)?);
        }
        if request.delivery_mode != DeliveryMode::Poll {
            writes.push(new_item(due_item(request))?);
        }
        // Counted and filed again whenever another request of the user was filed in between.
        for attempt in 1..=MAX_ATTEMPTS {
            let counted = self
                .count_pending(&request.sub, &request.client_id, request.created_at)
                .await?;
            if let Some(crowded) = limit.crowded(counted.from_client, counted.total) {
                return Err(CreateError::TooManyPending(crowded));
            }
            let mut items = writes.clone();
            items.extend(self.file_pending(request, &counted)?);
            let head = items.len() - 1;
            match self.transact("create_auth_request", items).await? {
                Transaction::Committed => return Ok(()),
                Transaction::Cancelled(reasons) => {
                    let failed = |i: usize| reasons.get(i).is_some_and(|r| r == CONDITION_FAILED);
                    if jti.is_some() && failed(2) {
                        return Err(CreateError::JtiReplayed);
                    }
                    if !failed(head) {
                        return Err(CreateError::Store(StoreError::Fault(
                            "auth_req_id or txn collision".into(),
                        )));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Err(CreateError::Store(StoreError::Unavailable(
            "create_auth_request: kept racing concurrent requests of the user".into(),
        )))
    }

    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        let mut keys = vec![
            key(authreq_pk(&request.auth_req_id), SK_AUTHREQ),
            key(txn_pk(&request.txn), SK_TXN),
        ];
        if let Some(jti) = jti {
            keys.push(key(jti_pk(jti), SK_JTI));
        }
        if request.delivery_mode != DeliveryMode::Poll {
            keys.push(key(due_pk(request.expires_at), &request.auth_req_id));
        }
        let mut items = Vec::with_capacity(keys.len() + 1);
        items.push(self.unfile_pending(request)?);
        for k in keys {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(k))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self.transact("discard_auth_request", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons) => Err(StoreError::Fault(format!(
                "discard_auth_request: cancelled: {reasons:?}"
            ))),
        }
    }

    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError> {
        self.get("get_auth_request", authreq_pk(auth_req_id), SK_AUTHREQ)
            .await?
            .map(|item| auth_request_from_item(&item))
            .transpose()
    }

    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        let Some(item) = self
            .get("get_auth_request_by_txn", txn_pk(txn), SK_TXN)
            .await?
        else {
            return Ok(None);
        };
        self.get_auth_request(&req_s(&item, "auth_req_id")?).await
    }

    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError> {
        // Two conditional updates, each atomic: "in time" moves `next_poll_ms` on; "too soon"
        // adds exactly the `slow_down` step. Between them a concurrent poll may have changed which one applies,
        // so the pair is retried (each step only succeeds when its own condition holds).
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(outcome) = self.poll_in_time(auth_req_id, now_ms).await? {
                return Ok(outcome);
            }
            if let Some(outcome) = self.poll_too_soon(auth_req_id, now_ms).await? {
                return Ok(outcome);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "record_poll: kept racing concurrent polls".into(),
        ))
    }

    async fn decide(
        &self,
        auth_req_id: &str,
        decision: Decision,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        let status = match decision {
            Decision::Approve => Status::Approved,
            Decision::Deny => Status::Denied,
        };
        // Its user and expiry never change: they name the pending entry the decision takes out.
        let Some(request) = self.get_auth_request(auth_req_id).await? else {
            return Err(DecideError::NotFound);
        };
        let update = self
            .request_update(auth_req_id)
            .update_expression("SET #status = :new, decided_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND #status = :pending AND expires_at > :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":new", s(status.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.jti_put(jti, now)?,
            self.unfile_pending(&request)?,
        ];
        for attempt in 1..=MAX_ATTEMPTS {
            match self.transact("decide", items.clone()).await? {
                Transaction::Committed => return Ok(()),
                Transaction::Cancelled(reasons) => {
                    if let Some(err) = self.decide_failure(auth_req_id, jti, now, &reasons).await? {
                        return Err(err);
                    }
                    backoff(attempt).await;
                }
            }
        }
        Err(DecideError::Store(StoreError::Unavailable(
            "decide: kept racing concurrent writes".into(),
        )))
    }

    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        let update = self
            .request_update(auth_req_id)
            .update_expression("SET #status = :redeemed")
            .condition_expression(
                "attribute_exists(pk) AND #status = :approved AND expires_at > :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":redeemed", s(Status::Redeemed.as_str()))
            .expression_attribute_values(":approved", s(Status::Approved.as_str()))
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        let guards = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(self.new_family(family)?)
                .build(),
        ];
        match self.guarded_token_write("redeem", guards, tokens).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(RedeemError::NotRedeemable),
        }
    }

    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let mut expired = Vec::new();
        let mut seen = 0;
        let oldest = (now - lookback).div_euclid(60);
        let start = self.sweep_cursor().await?.map_or(oldest, |c| c.max(oldest));
        // The minutes' partitions are read a few dozen at once (a day's worth after an outage),
        // then handled in order.
        let mut minutes = stream::iter(start..=now.div_euclid(60))
            .map(|minute| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(&due_minute_pk(minute)))
                    .consistent_read(true)
                    .send()
            })
            .buffered(32);
        while let Some(out) = minutes.next().await {
            let out = out.map_err(|e| sdk_error("expire_due", e))?;
            for item in out.items() {
                let (id, expires_at) = (req_s(item, "sk")?, req_n(item, "expires_at")?);
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
                        "attribute_exists(pk) AND #status = :pending AND expires_at <= :now",
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
                    .set_key(Some(key(due_pk(expires_at), &id)))
                    .send()
                    .await
                    .map_err(|e| sdk_error("expire_due", e))?;
            }
        }
        // Every due item of the minutes before this one is handled: the next sweep starts here.
        self.advance_sweep_cursor(now.div_euclid(60)).await?;
        Ok(expired)
    }

    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        let result = self
            .update_request(auth_req_id)
            .update_expression("SET notified_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(notified_at)")
            .expression_attribute_values(":now", num(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if update_condition_failure(&e).is_some() => Ok(false),
            Err(e) => Err(sdk_error("mark_notified", e)),
        }
    }
}

impl DynamoStore {
    /// The first step of `record_poll`: an in-time poll. `Ok(None)` when the condition failed
    /// on an existing item (too soon), `Ok(Some(Gone))` when there is no item.
    async fn poll_in_time(
        &self,
        auth_req_id: &str,
        now_ms: i64,
    ) -> Result<Option<PollOutcome>, StoreError> {
        let result = self
            .update_request(auth_req_id)
            .update_expression("SET last_poll_ms = :now, next_poll_ms = interval_ms + :now")
            .condition_expression(
                "attribute_exists(pk) AND \
                 (attribute_not_exists(next_poll_ms) OR next_poll_ms <= :now)",
            )
            .expression_attribute_values(":now", num(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(PollOutcome::InTime)),
            Err(err) => self.poll_refused(auth_req_id, err).await,
        }
    }

    /// The second step of `record_poll`: a poll too soon grows the interval by exactly
    /// `SLOW_DOWN_STEP_SECS`.
    /// `Ok(None)` when the poll turned out in time after all (a concurrent poll moved it).
    async fn poll_too_soon(
        &self,
        auth_req_id: &str,
        now_ms: i64,
    ) -> Result<Option<PollOutcome>, StoreError> {
        // SET operands read the item as it was before the update, so the new `next_poll_ms`
        // (now + the new interval) is the old `interval_ms` + (now + the step).
        let result = self
            .update_request(auth_req_id)
            .update_expression(
                "SET #interval = #interval + :step, interval_ms = interval_ms + :step_ms, \
                 last_poll_ms = :now, next_poll_ms = interval_ms + :next",
            )
            .condition_expression("attribute_exists(pk) AND next_poll_ms > :now")
            .expression_attribute_names("#interval", "interval")
            .expression_attribute_values(":step", num(SLOW_DOWN_STEP_SECS))
            .expression_attribute_values(":step_ms", num(SLOW_DOWN_STEP_SECS * 1000))
            .expression_attribute_values(":now", num(now_ms))
            .expression_attribute_values(":next", num(now_ms + SLOW_DOWN_STEP_SECS * 1000))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                let interval = req_n(&attributes, "interval")?;
                Ok(Some(PollOutcome::TooSoon { interval }))
            }
            Err(err) => self.poll_refused(auth_req_id, err).await,
        }
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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(SWEEP_CURSOR_PK.into(), SK_SWEEP_CURSOR)))
            .update_expression("SET #minute = :minute")
            .condition_expression("attribute_not_exists(#minute) OR #minute < :minute")
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_values(":minute", num(minute))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if update_condition_failure(&e).is_some() => Ok(()),
            Err(e) => Err(sdk_error("expire_due", e)),
        }
    }

    /// A transaction's update of the request `auth_req_id`.
    fn request_update(&self, auth_req_id: &str) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
    }

    /// An `UpdateItem` of the request `auth_req_id`.
    fn update_request(&self, auth_req_id: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
    }

    /// A poll update that failed: `None` (try again) when its condition failed on the existing
    /// request, `Gone` when the request is missing.
    async fn poll_refused(
        &self,
        auth_req_id: &str,
        err: SdkError<UpdateItemError>,
    ) -> Result<Option<PollOutcome>, StoreError> {
        match update_condition_failure(&err) {
            Some(true) => Ok(None),
            Some(false) => self.gone_unless_exists(auth_req_id).await,
            None => Err(sdk_error("record_poll", err)),
        }
    }

    /// After a failed condition that returned no old item: `Gone` when the request really is
    /// missing, `None` (try again) when it exists.
    async fn gone_unless_exists(
        &self,
        auth_req_id: &str,
    ) -> Result<Option<PollOutcome>, StoreError> {
        let item = self
            .get("record_poll", authreq_pk(auth_req_id), SK_AUTHREQ)
            .await?;
        Ok(item.is_none().then_some(PollOutcome::Gone))
    }

    /// Why a decision's transaction was cancelled, in the order of precedence of `DecideError`
    /// (`NotFound`, `JtiReplayed`, `AlreadyDecided`, `Expired`); `None` when nothing explains it
    /// any more (try again).
    async fn decide_failure(
        &self,
        auth_req_id: &str,
        jti: &JtiUse,
        now: i64,
        reasons: &[String],
    ) -> Result<Option<DecideError>, StoreError> {
        let Some(request) = self.get_auth_request(auth_req_id).await? else {
            return Ok(Some(DecideError::NotFound));
        };
        // The jti's own reason, when the transaction reports it; otherwise (its write lost a race
        // or was not evaluated) the jti item itself.
        let replayed = match reasons.get(1) {
            Some(reason) if reason == CONDITION_FAILED => true,
            _ => self.jti_is_live(jti, now).await?,
        };
        if replayed {
            return Ok(Some(DecideError::JtiReplayed));
        }
        if request.is_expired(now) && matches!(request.status, Status::Pending | Status::Expired) {
            return Ok(Some(DecideError::Expired));
        }
        if request.status != Status::Pending {
            return Ok(Some(DecideError::AlreadyDecided));
        }
        Ok(None)
    }
}
