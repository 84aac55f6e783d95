//! Auth request items, with their due-expiry items (and, for ids that do not start with their
//! `txn`, a `TXN#` item pointing at them): creation, the poll-rate check, the one decision,
//! redemption, the expiry sweep and the notification mark.
//!
//! Each step of a poll-mode request's life writes as few items as it can, once each, without a
//! transaction (which DynamoDB bills twice): creation writes the request and files it among its
//! user's pending requests (`pending`), a decision and each poll update the request alone, and a
//! redemption puts the two tokens and then updates the request, which becomes their family.
//! Where one step writes two items, the order makes a crash between them harmless: the request
//! exists before it is filed, the tokens before the request says they were issued (until then
//! no one holds their values). A write whose answer was lost and that is sent again finds its
//! own mark on the item (`decided_by`, `redeemed_by`) and counts as done.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    Delete, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::DynamoStore;
use super::codec::{
    Item, auth_request_from_item, auth_request_item, due_item, evidence_value, family_item,
    jti_item, num, opt_s, req_n, req_s, s, txn_item,
};
use super::layout::{
    SK_AUTHREQ, SK_JTI, SK_TXN, authreq_pk, due_pk, jti_pk, key, request_locator, txn_pk,
};
use super::transact::{
    MAX_ATTEMPTS, Transaction, backoff, build_error, sdk_error, update_condition_failure,
    update_condition_item,
};
use super::writes::Created;
use crate::domain::{AuthRequest, Decision, DeliveryMode, Evidence, Family, Status, TokenRecord};
use crate::ports::{OsRandom, Random};
use crate::protocol::SLOW_DOWN_STEP_SECS;
use crate::store::{
    CreateError, DecideError, JtiUse, PendingLimit, PollOutcome, RedeemError, Requests, StoreError,
};

/// Random bytes of the mark a write leaves on its item (see `writes`).
pub(super) const MARK_BYTES: usize = 16;

impl DynamoStore {
    /// Puts the next item of a creation, after `done` (what is written so far). When the item
    /// already exists (a `what` collision) what is written so far is taken back; when the put
    /// answered an error it may still have gone through, so the item is taken back as well.
    async fn put_or_undo(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        item: Item,
        done: Created,
        what: &str,
    ) -> Result<(), CreateError> {
        let written = self.put_new("create_auth_request", item).await;
        if let Ok(true) = written {
            return Ok(());
        }
        let taken_back = match (&written, done) {
            (Err(_), Created::Jti) => Created::Request,
            (Err(_), _) => Created::Pointer,
            (Ok(_), done) => done,
        };
        self.undo_create(request, jti, taken_back).await;
        Err(CreateError::Store(match written {
            Err(e) => e,
            Ok(_) => StoreError::Fault(format!("{what} collision")),
        }))
    }
}

#[async_trait]
impl Requests for DynamoStore {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError> {
        if let Some(jti) = jti
            && !self
                .put_marked(
                    "create_auth_request",
                    jti_item(jti),
                    Some(request.created_at),
                )
                .await?
        {
            return Err(CreateError::JtiReplayed);
        }
        self.put_or_undo(
            request,
            jti,
            auth_request_item(request),
            Created::Jti,
            "auth_req_id",
        )
        .await?;
        if !stored_under_txn(request) {
            self.put_or_undo(request, jti, txn_item(request), Created::Request, "txn")
                .await?;
        }
        let filed = async {
            if let Some(crowded) = self.file_pending(request, limit).await? {
                return Ok(Some(crowded));
            }
            if request.delivery_mode != DeliveryMode::Poll {
                self.start_sweep_cursor(request.created_at).await?;
                self.put_new("create_auth_request", due_item(request))
                    .await?;
            }
            Ok(None)
        };
        match filed.await {
            Ok(None) => Ok(()),
            Ok(Some(crowded)) => {
                self.undo_create(request, jti, Created::Pointer).await;
                Err(CreateError::TooManyPending(crowded))
            }
            Err(e) => {
                self.undo_create(request, jti, Created::Pointer).await;
                Err(CreateError::Store(e))
            }
        }
    }

    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        // The pending entry goes when the next filing finds the request gone.
        let mut keys = vec![key(authreq_pk(&request.auth_req_id), SK_AUTHREQ)];
        if !stored_under_txn(request) {
            keys.push(key(txn_pk(&request.txn), SK_TXN));
        }
        if let Some(jti) = jti {
            keys.push(key(jti_pk(jti), SK_JTI));
        }
        if request.delivery_mode != DeliveryMode::Poll {
            keys.push(key(
                due_pk(request.expires_at, &request.auth_req_id),
                &request.auth_req_id,
            ));
        }
        let mut items = Vec::with_capacity(keys.len());
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
        let Some(item) = self
            .get("get_auth_request", authreq_pk(auth_req_id), SK_AUTHREQ)
            .await?
        else {
            return Ok(None);
        };
        // Any id starting with the txn finds the item: only the whole id names the request.
        if !same_id(&req_s(&item, "auth_req_id")?, auth_req_id) {
            return Ok(None);
        }
        auth_request_from_item(&item).map(Some)
    }

    async fn get_auth_request_for_poll(
        &self,
        auth_req_id: &str,
    ) -> Result<Option<AuthRequest>, StoreError> {
        let item = self
            .get_eventually("get_auth_request", authreq_pk(auth_req_id), SK_AUTHREQ)
            .await?;
        match item {
            Some(item) if same_id(&req_s(&item, "auth_req_id")?, auth_req_id) => {
                auth_request_from_item(&item).map(Some)
            }
            // Not there yet, or really unknown: only a strong read may say so.
            _ => self.get_auth_request(auth_req_id).await,
        }
    }

    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        if let Some(item) = self
            .get("get_auth_request_by_txn", authreq_pk(txn), SK_AUTHREQ)
            .await?
            && req_s(&item, "txn")? == txn
        {
            return auth_request_from_item(&item).map(Some);
        }
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

    async fn decide_with(
        &self,
        auth_req_id: &str,
        decision: Decision,
        evidence: Option<&Evidence>,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        let status = match decision {
            Decision::Approve => Status::Approved,
            Decision::Deny => Status::Denied,
        };
        // The decision's jti is kept on the request it decided: a decision names its txn, so a
        // replay can only ever be of a decision on this same request.
        let used = jti_pk(jti);
        let mark = OsRandom.token(MARK_BYTES);
        let mut update =
            "SET #status = :new, decided_at = :now, decision_jti = :jti, decided_by = :mark"
                .to_owned();
        if evidence.is_some() {
            update.push_str(", evidence = :evidence");
        }
        let mut call = self
            .update_request(auth_req_id)
            .update_expression(update)
            .condition_expression("auth_req_id = :id AND #status = :pending AND expires_at > :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":new", s(status.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":jti", s(&used))
            .expression_attribute_values(":mark", s(&mark))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(evidence) = evidence {
            call = call.expression_attribute_values(":evidence", evidence_value(evidence));
        }
        let result = call.send().await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let Some(old) = update_condition_item(&err) else {
            if self.marked(auth_req_id, "decided_by", &mark).await? {
                return Ok(());
            }
            return Err(sdk_error("decide", err).into());
        };
        let Some(old) =
            old.filter(|item| req_s(item, "auth_req_id").is_ok_and(|id| same_id(&id, auth_req_id)))
        else {
            return Err(DecideError::NotFound);
        };
        // This very write, sent again after its answer was lost.
        if opt_s(old, "decided_by")?.as_deref() == Some(mark.as_str()) {
            return Ok(());
        }
        if opt_s(old, "decision_jti")?.as_deref() == Some(used.as_str()) {
            return Err(DecideError::JtiReplayed);
        }
        let request = auth_request_from_item(old)?;
        if request.is_expired(now) && matches!(request.status, Status::Pending | Status::Expired) {
            return Err(DecideError::Expired);
        }
        Err(DecideError::AlreadyDecided)
    }

    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        // The tokens first: until the request says it was redeemed, no one holds their values.
        self.put_tokens("redeem", tokens).await?;
        let mark = tokens.first().map_or("", |t| t.hash.as_str());
        // The request item becomes the family of its grant; a family of another id (never, from
        // the token code) gets an item of its own.
        let own_family = family.id == auth_req_id;
        if !own_family {
            self.put_new("redeem", family_item(family)).await?;
        }
        let mut update = self
            .update_request(auth_req_id)
            .update_expression(if own_family {
                "SET #status = :redeemed, family_expires_at = :family_end, redeemed_by = :mark, \
                 #ttl = :ttl"
            } else {
                "SET #status = :redeemed, redeemed_by = :mark, #ttl = :ttl"
            })
            .condition_expression("auth_req_id = :id AND #status = :approved AND expires_at > :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":redeemed", s(Status::Redeemed.as_str()))
            .expression_attribute_values(":approved", s(Status::Approved.as_str()))
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":mark", s(mark))
            // The request item is the family's now, and lives as long as the family.
            .expression_attribute_values(":ttl", num(family.expires_at))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if own_family {
            update = update.expression_attribute_values(":family_end", num(family.expires_at));
        }
        let result = update.send().await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let Some(Some(old)) = update_condition_item(&err)
            && opt_s(old, "redeemed_by")?.as_deref() == Some(mark)
        {
            return Ok(());
        }
        let refused = update_condition_item(&err).is_some();
        // Whether an update whose answer never came went through, its mark tells.
        if !refused && self.marked(auth_req_id, "redeemed_by", mark).await? {
            return Ok(());
        }
        // Tokens no one will ever be given.
        if let Err(e) = self.delete_tokens(tokens).await {
            tracing::warn!(error = %e, "redeem: unissued tokens left to their TTL");
        }
        if refused {
            Err(RedeemError::NotRedeemable)
        } else {
            Err(sdk_error("redeem", err).into())
        }
    }

    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        self.sweep_due(now, lookback, limit).await
    }

    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        let result = self
            .update_request(auth_req_id)
            .update_expression("SET notified_at = :now")
            .condition_expression("auth_req_id = :id AND attribute_not_exists(notified_at)")
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
                "auth_req_id = :id AND \
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
            .condition_expression("auth_req_id = :id AND next_poll_ms > :now")
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

    /// An `UpdateItem` of the request `auth_req_id`; its condition must name `:id` (the whole id:
    /// the key holds only its locator).
    pub(super) fn update_request(&self, auth_req_id: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
            .expression_attribute_values(":id", s(auth_req_id))
    }

    /// A poll update that failed: `None` (try again) when its condition failed on the request,
    /// `Gone` when there is no such request.
    async fn poll_refused(
        &self,
        auth_req_id: &str,
        err: SdkError<UpdateItemError>,
    ) -> Result<Option<PollOutcome>, StoreError> {
        match update_condition_item(&err) {
            Some(Some(old)) if same_id(&req_s(old, "auth_req_id")?, auth_req_id) => Ok(None),
            Some(_) => Ok(Some(PollOutcome::Gone)),
            None => Err(sdk_error("record_poll", err)),
        }
    }
}

/// Whether the request's item is found by its `txn` directly (its id starts with it).
pub(super) fn stored_under_txn(request: &AuthRequest) -> bool {
    request_locator(&request.auth_req_id) == request.txn
}

/// Compares a stored id with a presented one in time independent of where they differ: the id
/// is what a client polls with.
fn same_id(stored: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    stored.len() == presented.len() && bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
}
