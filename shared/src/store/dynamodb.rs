//! The DynamoDB store: every entity in one table with string keys `pk` / `sk` and a numeric TTL
//! attribute `ttl` (epoch seconds). TTL deletion is late by up to days, so expiry is always checked
//! by the code (in conditions and after reads), never left to TTL.
//!
//! # Item layout
//!
//! | entity | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | client | `CLIENT#<client_id>` | `CLIENT` | `client_id`, `data` (JSON of `Client`) |
//! | user | `USER#<sub>` | `PROFILE` | `sub`, `data` (JSON of `User`, claims included) |
//! | login hint | `HINT#<normalize_hint(hint)>` | `HINT` | `sub` |
//! | device | `DEVICE#<device_id>` | `DEVICE` | `device_id`, `sub`, `data` (JSON of `Device`) |
//! | device, per user | `USER#<sub>` | `DEVICE#<device_id>` | same as the device item |
//! | used `jti` | `JTI#<scope>#<jti>` | `JTI` | `scope`, `jti`, `ttl` = the `jti`'s `expires_at` |
//! | auth request | `AUTHREQ#<auth_req_id>` | `AUTHREQ` | see below, `ttl` = `expires_at` + 86400 |
//! | txn | `TXN#<txn>` | `TXN` | `auth_req_id`, `ttl` = the request's `expires_at` + 86400 |
//! | enrolment code | `ENROLL#<code hash>` | `ENROLL` | `sub`, `expires_at`, `ttl` = `expires_at` |
//! | pending ping/push request, by expiry minute | `DUE#<expires_at / 60>` | `<auth_req_id>` | `expires_at`, `ttl` = `expires_at` + 86400 |
//! | token | `TOKEN#<hash>` | `TOKEN` | `hash`, `kind`, `client_id`, `sub`, `scope`, `auth_req_id`, `auth_time`, `expires_at`, `ttl` = `expires_at` |
//!
//! In a `jti` key, `%` and `#` inside the scope are written `%25` and `%23`, so the first `#`
//! after `JTI#` always ends the scope (scopes are client and device ids, which normally have
//! neither).
//!
//! An auth request is stored as plain top-level attributes (no JSON blob), so conditions can use
//! them: `auth_req_id`, `txn`, `client_id`, `sub`, `scope`, `acr_values`?, `binding_message`?,
//! `client_notification_token`?, `delivery_mode` (`poll` / `ping` / `push`), `created_at`,
//! `expires_at`, `interval` (seconds), `last_poll_ms`?, `status` (`pending` / `approved` /
//! `denied` / `redeemed`), `decided_at`? (`?`: absent when `None`), plus two helpers for the
//! poll-rate check, since condition expressions cannot do arithmetic:
//! `interval_ms` (= `interval` * 1000) and `next_poll_ms` (= `last_poll_ms` + `interval_ms`,
//! absent before the first poll).
//!
//! A user's profile and hint items are written in one transaction, a device and its per-user copy
//! too. Request creation (request, txn and `jti`), decisions (request and `jti`) and redemption
//! (request and tokens) are single `TransactWriteItems` with conditions; the poll-rate check is a
//! conditional `UpdateItem`. Every read is strongly consistent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
    Update,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Accounts, Clients, CreateError, DecideError, EnrollError, JtiUse, Jtis, PollOutcome,
    RedeemError, Requests, RotateError, Store, StoreError, Tokens,
};
use crate::aws_error;
use crate::domain::{
    AuthRequest, Client, Decision, DeliveryMode, Device, EnrollmentCode, Status, TokenKind,
    TokenRecord, User, normalize_hint,
};
use crate::protocol::SLOW_DOWN_STEP_SECS;

type Item = HashMap<String, AttributeValue>;

/// How long auth request and txn items outlive the request's expiry before TTL may delete them.
const REQUEST_RETENTION_SECS: i64 = 86_400;
/// Attempts of an operation that lost a race (a transaction conflict, a poll racing a poll).
const MAX_ATTEMPTS: u32 = 8;
/// DynamoDB's limit on the items of one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

const SK_CLIENT: &str = "CLIENT";
const SK_PROFILE: &str = "PROFILE";
const SK_HINT: &str = "HINT";
const SK_DEVICE: &str = "DEVICE";
const SK_JTI: &str = "JTI";
const SK_AUTHREQ: &str = "AUTHREQ";
const SK_TXN: &str = "TXN";
const SK_TOKEN: &str = "TOKEN";
const SK_ENROLL: &str = "ENROLL";
const DEVICE_PREFIX: &str = "DEVICE#";

const JTI_CONDITION: &str = "attribute_not_exists(pk) OR #ttl < :now";

/// The `Store` on one DynamoDB table (see the module documentation for the layout).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: DynamoClient,
    table: String,
}

impl DynamoStore {
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, op: &str, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(out.item)
    }

    fn put(&self, item: Item) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_error)
    }

    fn jti_put(&self, jti: &JtiUse, now: i64) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(jti_item(jti)))
            .condition_expression(JTI_CONDITION)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs one transaction, retrying it while it only lost races against other transactions.
    async fn transact(
        &self,
        op: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transaction, StoreError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Fault(format!(
                "{op}: {} items exceed one transaction",
                items.len()
            )));
        }
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Transaction::Committed),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(sdk_error(op, err));
            };
            let reasons: Vec<String> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect();
            if reasons.iter().any(|r| r == CONDITION_FAILED) {
                return Ok(Transaction::Cancelled(reasons));
            }
            let conflict = reasons.iter().any(|r| r == "TransactionConflict");
            if conflict && attempt + 1 < MAX_ATTEMPTS {
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
            let busy = reasons.iter().any(|r| {
                matches!(
                    r.as_str(),
                    "TransactionConflict" | "ProvisionedThroughputExceeded" | "ThrottlingError"
                )
            });
            let message = format!("{op}: transaction cancelled: {reasons:?}");
            return Err(if busy {
                StoreError::Unavailable(message)
            } else {
                StoreError::Fault(message)
            });
        }
    }

    /// Writes `tokens` in one transaction with `guard`, a conditional write on another item;
    /// `false` when the guard's condition failed (nothing was written).
    async fn guarded_token_write(
        &self,
        op: &str,
        guard: TransactWriteItem,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        let mut items = vec![guard];
        for token in tokens {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(token_item(token))?)
                    .build(),
            );
        }
        match self.transact(op, items).await? {
            Transaction::Committed => Ok(true),
            Transaction::Cancelled(reasons)
                if reasons.first().is_some_and(|r| r == CONDITION_FAILED) =>
            {
                Ok(false)
            }
            Transaction::Cancelled(reasons) => Err(StoreError::Fault(format!(
                "{op}: unexpected condition failure {reasons:?}"
            ))),
        }
    }

    /// The first step of `record_poll`: an in-time poll. `Ok(None)` when the condition failed
    /// on an existing item (too soon), `Ok(Some(Gone))` when there is no item.
    async fn poll_in_time(
        &self,
        auth_req_id: &str,
        now_ms: i64,
    ) -> Result<Option<PollOutcome>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
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
            Err(err) => match update_condition_failure(&err) {
                Some(true) => Ok(None),
                Some(false) => self.gone_unless_exists(auth_req_id).await,
                None => Err(sdk_error("record_poll", err)),
            },
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
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
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
            Err(err) => match update_condition_failure(&err) {
                Some(true) => Ok(None),
                Some(false) => self.gone_unless_exists(auth_req_id).await,
                None => Err(sdk_error("record_poll", err)),
            },
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

    /// Whether `jti` is stored and not yet expired at `now`.
    async fn jti_is_live(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        let item = self.get("decide", jti_pk(jti), SK_JTI).await?;
        match item {
            None => Ok(false),
            Some(item) => Ok(opt_n(&item, "ttl")?.is_some_and(|ttl| ttl >= now)),
        }
    }
}

enum Transaction {
    Committed,
    /// At least one condition failed: the cancellation reason code of each item, in order.
    Cancelled(Vec<String>),
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Why [`create_table`] failed. A failed call keeps the SDK's error whole, so a command-line
/// caller can tell an unreachable endpoint or missing credentials from a refusal and say so in
/// one line instead of printing the error's debug dump.
#[derive(Debug)]
pub enum TableSetupError {
    /// The named DynamoDB call failed (boxed: an SDK error holds the whole HTTP response).
    Call(
        &'static str,
        Box<SdkError<aws_sdk_dynamodb::Error, aws_sdk_dynamodb::config::http::HttpResponse>>,
    ),
    /// A request could not be built, or the table did not become active in time.
    Store(StoreError),
}

impl TableSetupError {
    fn call<E: Into<aws_sdk_dynamodb::Error>>(
        op: &'static str,
        err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self {
        Self::Call(op, Box::new(err.map_service_error(Into::into)))
    }
}

impl std::fmt::Display for TableSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call(op, err) => write!(f, "{op}: {}", DisplayErrorContext(err.as_ref())),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TableSetupError {}

impl From<StoreError> for TableSetupError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Creates the table (`pk` HASH S, `sk` RANGE S, on demand, stream `NEW_AND_OLD_IMAGES`), waits
/// until it is active and enables TTL on `ttl`. An existing table is fine.
pub async fn create_table(client: &DynamoClient, table: &str) -> Result<(), TableSetupError> {
    let key_attribute = |name: &str, key_type: KeyType| -> Result<_, StoreError> {
        Ok((
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)?,
        ))
    };
    let (pk_def, pk_key) = key_attribute("pk", KeyType::Hash)?;
    let (sk_def, sk_key) = key_attribute("sk", KeyType::Range)?;
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(pk_def)
        .attribute_definitions(sk_def)
        .key_schema(pk_key)
        .key_schema(sk_key)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(stream)
        .send()
        .await;
    if let Err(err) = created
        && err.code() != Some("ResourceInUseException")
    {
        return Err(TableSetupError::call("create_table", err));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| TableSetupError::call("describe_table", e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table} not active after 300 s ({status:?})"
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    enable_ttl(client, table).await
}

async fn enable_ttl(client: &DynamoClient, table: &str) -> Result<(), TableSetupError> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("ttl")
        .build()
        .map_err(build_error)?;
    let Err(err) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    else {
        return Ok(());
    };
    // Enabling TTL twice is an error ("TimeToLive is already enabled"): fine if it is on `ttl`.
    if let Ok(described) = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
    {
        let ttl = described.time_to_live_description();
        let on = ttl.is_some_and(|d| {
            d.attribute_name() == Some("ttl")
                && matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if on {
            return Ok(());
        }
    }
    // DynamoDB Local never deletes expired items and some versions reject the call: the code
    // checks expiry itself, so a table without TTL only keeps garbage longer.
    if is_dynamodb_local(&err) {
        tracing::warn!(
            table,
            error = %DisplayErrorContext(&err),
            "UpdateTimeToLive failed on DynamoDB Local; continuing without TTL"
        );
        return Ok(());
    }
    Err(TableSetupError::call("update_time_to_live", err))
}

/// DynamoDB Local is a Jetty server (`Server: Jetty(...)`); AWS answers `Server: Server`.
fn is_dynamodb_local<E>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::ServiceError(e) => e
            .raw()
            .headers()
            .get("server")
            .is_some_and(|server| server.starts_with("Jetty")),
        _ => false,
    }
}

/// A DynamoDB client for DynamoDB Local (or any emulator) at `endpoint`, with region `us-east-1`
/// and static dummy credentials.
pub async fn local_client(endpoint: &str) -> DynamoClient {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "static",
        ))
        .load()
        .await;
    DynamoClient::new(&config)
}

/// For tests: a store on a fresh, uniquely named table in the DynamoDB Local at
/// `CIBA_DYNAMODB_ENDPOINT`. Without that variable: `None` (the test skips), or a panic when
/// `CIBA_REQUIRE_DYNAMODB=1`.
#[doc(hidden)]
pub async fn test_store_from_env() -> Option<Arc<DynamoStore>> {
    let endpoint = match std::env::var("CIBA_DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint,
        _ => {
            if std::env::var("CIBA_REQUIRE_DYNAMODB").is_ok_and(|v| v == "1") {
                panic!(
                    "CIBA_REQUIRE_DYNAMODB=1 but CIBA_DYNAMODB_ENDPOINT is not set: start \
                     DynamoDB Local (tests/run does) and set it, e.g. http://127.0.0.1:8000"
                );
            }
            eprintln!("skipping: CIBA_DYNAMODB_ENDPOINT not set");
            return None;
        }
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let table = format!(
        "ciba-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let client = local_client(endpoint.trim()).await;
    if let Err(e) = create_table(&client, &table).await {
        panic!("cannot create table {table} at {endpoint}: {e}");
    }
    Some(Arc::new(DynamoStore::new(client, table)))
}

impl Store for DynamoStore {
    fn requests(&self) -> &dyn Requests {
        self
    }

    fn tokens(&self) -> &dyn Tokens {
        self
    }

    fn clients(&self) -> &dyn Clients {
        self
    }

    fn accounts(&self) -> &dyn Accounts {
        self
    }

    fn jtis(&self) -> &dyn Jtis {
        self
    }
}

#[async_trait]
impl Requests for DynamoStore {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), CreateError> {
        let retain_until = request.expires_at + REQUEST_RETENTION_SECS;
        let new_item = |item: Item| -> Result<TransactWriteItem, StoreError> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut txn = key(txn_pk(&request.txn), SK_TXN);
        txn.insert("auth_req_id".into(), s(&request.auth_req_id));
        txn.insert("ttl".into(), num(retain_until));
        let mut items = vec![new_item(auth_request_item(request))?, new_item(txn)?];
        if let Some(jti) = jti {
            items.push(self.jti_put(jti, request.created_at)?);
        }
        if request.delivery_mode != DeliveryMode::Poll {
            items.push(new_item(due_item(request))?);
        }
        match self.transact("create_auth_request", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons) => {
                if jti.is_some() && reasons.get(2).is_some_and(|r| r == CONDITION_FAILED) {
                    Err(CreateError::JtiReplayed)
                } else {
                    Err(CreateError::Store(StoreError::Fault(
                        "auth_req_id or txn collision".into(),
                    )))
                }
            }
        }
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
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
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
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
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
        let guard = TransactWriteItem::builder().update(update).build();
        if self.guarded_token_write("redeem", guard, tokens).await? {
            Ok(())
        } else {
            Err(RedeemError::NotRedeemable)
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
        for minute in (now - lookback).div_euclid(60)..=now.div_euclid(60) {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&format!("DUE#{minute}")))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error("expire_due", e))?;
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
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(authreq_pk(&id), SK_AUTHREQ)))
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
        Ok(expired)
    }

    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(authreq_pk(auth_req_id), SK_AUTHREQ)))
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

#[async_trait]
impl Tokens for DynamoStore {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get("get_token", token_pk(hash), SK_TOKEN)
            .await?
            .map(|item| token_from_item(&item))
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError> {
        let spend = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(hash), SK_TOKEN)))
            .condition_expression(
                "attribute_exists(pk) AND kind = :refresh AND client_id = :client AND expires_at > :now",
            )
            .expression_attribute_values(":refresh", s(TokenKind::Refresh.as_str()))
            .expression_attribute_values(":client", s(client_id))
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        let guard = TransactWriteItem::builder().delete(spend).build();
        if self
            .guarded_token_write("rotate_refresh_token", guard, successors)
            .await?
        {
            Ok(())
        } else {
            Err(RotateError::Invalid)
        }
    }
}

#[async_trait]
impl Clients for DynamoStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut item = key(client_pk(&client.client_id), SK_CLIENT);
        item.insert("client_id".into(), s(&client.client_id));
        item.insert("data".into(), json(client)?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("put_client", e))?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.get("get_client", client_pk(client_id), SK_CLIENT)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }
}

#[async_trait]
impl Accounts for DynamoStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let mut profile = key(user_pk(&user.sub), SK_PROFILE);
        profile.insert("sub".into(), s(&user.sub));
        profile.insert("data".into(), json(user)?);
        let mut items = vec![TransactWriteItem::builder().put(self.put(profile)?).build()];
        let mut hints: Vec<String> = user.login_hints.iter().map(|h| normalize_hint(h)).collect();
        hints.sort();
        hints.dedup();
        for hint in hints {
            let mut item = key(format!("HINT#{hint}"), SK_HINT);
            item.insert("sub".into(), s(&user.sub));
            items.push(TransactWriteItem::builder().put(self.put(item)?).build());
        }
        match self.transact("put_user", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons) => Err(StoreError::Fault(format!(
                "put_user: unexpected condition failure {reasons:?}"
            ))),
        }
    }

    async fn get_user(&self, sub: &str) -> Result<Option<User>, StoreError> {
        self.get("get_user", user_pk(sub), SK_PROFILE)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }

    async fn find_user_by_hint(&self, hint: &str) -> Result<Option<User>, StoreError> {
        let pk = format!("HINT#{}", normalize_hint(hint));
        let Some(item) = self.get("find_user_by_hint", pk, SK_HINT).await? else {
            return Ok(None);
        };
        self.get_user(&req_s(&item, "sub")?).await
    }

    async fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        let data = json(device)?;
        let device_item = |pk: String, sk: String| {
            let mut item = key(pk, &sk);
            item.insert("device_id".into(), s(&device.device_id));
            item.insert("sub".into(), s(&device.sub));
            item.insert("data".into(), data.clone());
            item
        };
        for attempt in 1..=MAX_ATTEMPTS {
            // A device that moves to another user leaves that user's list: the previous owner
            // is read, and the write is conditional on it being unchanged.
            let previous = self
                .get("put_device", device_pk(&device.device_id), SK_DEVICE)
                .await?
                .map(|item| req_s(&item, "sub"))
                .transpose()?;
            let main = Put::builder()
                .table_name(&self.table)
                .set_item(Some(device_item(
                    device_pk(&device.device_id),
                    SK_DEVICE.into(),
                )));
            let main = match &previous {
                Some(sub) => main
                    .condition_expression("#sub = :previous")
                    .expression_attribute_names("#sub", "sub")
                    .expression_attribute_values(":previous", s(sub)),
                None => main.condition_expression("attribute_not_exists(pk)"),
            };
            let copy = device_item(
                user_pk(&device.sub),
                format!("{DEVICE_PREFIX}{}", device.device_id),
            );
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(main.build().map_err(build_error)?)
                    .build(),
                TransactWriteItem::builder().put(self.put(copy)?).build(),
            ];
            if let Some(old_sub) = previous.filter(|old| *old != device.sub) {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        user_pk(&old_sub),
                        &format!("{DEVICE_PREFIX}{}", device.device_id),
                    )))
                    .build()
                    .map_err(build_error)?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
            match self.transact("put_device", items).await? {
                Transaction::Committed => return Ok(()),
                Transaction::Cancelled(_) => backoff(attempt).await,
            }
        }
        Err(StoreError::Unavailable(
            "put_device: device kept changing owner".into(),
        ))
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get("get_device", device_pk(device_id), SK_DEVICE)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }

    async fn put_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        let mut item = key(enroll_pk(&code.code_hash), SK_ENROLL);
        item.insert("sub".into(), s(&code.sub));
        item.insert("expires_at".into(), num(code.expires_at));
        item.insert("ttl".into(), num(code.expires_at));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("put_enrollment_code", e))?;
        Ok(())
    }

    async fn get_enrollment_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentCode>, StoreError> {
        let Some(item) = self
            .get("get_enrollment_code", enroll_pk(code_hash), SK_ENROLL)
            .await?
        else {
            return Ok(None);
        };
        let code = EnrollmentCode {
            code_hash: code_hash.to_owned(),
            sub: req_s(&item, "sub")?,
            expires_at: req_n(&item, "expires_at")?,
        };
        Ok((code.expires_at > now).then_some(code))
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<(), EnrollError> {
        let data = json(device)?;
        let device_item = |pk: String, sk: String| {
            let mut item = key(pk, &sk);
            item.insert("device_id".into(), s(&device.device_id));
            item.insert("sub".into(), s(&device.sub));
            item.insert("data".into(), data.clone());
            item
        };
        let consume = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(enroll_pk(code_hash), SK_ENROLL)))
            .condition_expression("attribute_exists(pk) AND expires_at > :now AND #sub = :sub")
            .expression_attribute_names("#sub", "sub")
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":sub", s(&device.sub))
            .build()
            .map_err(build_error)?;
        // A re-enrolled device keeps its owner: its id only ever names a device of `device.sub`.
        let main = Put::builder()
            .table_name(&self.table)
            .set_item(Some(device_item(
                device_pk(&device.device_id),
                SK_DEVICE.into(),
            )))
            .condition_expression("attribute_not_exists(pk) OR #sub = :sub")
            .expression_attribute_names("#sub", "sub")
            .expression_attribute_values(":sub", s(&device.sub))
            .build()
            .map_err(build_error)?;
        let copy = device_item(
            user_pk(&device.sub),
            format!("{DEVICE_PREFIX}{}", device.device_id),
        );
        let items = vec![
            TransactWriteItem::builder().delete(consume).build(),
            TransactWriteItem::builder().put(main).build(),
            TransactWriteItem::builder().put(self.put(copy)?).build(),
        ];
        match self.transact("enroll_device", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons)
                if reasons.first().is_some_and(|r| r == CONDITION_FAILED) =>
            {
                Err(EnrollError::InvalidCode)
            }
            Transaction::Cancelled(reasons) => Err(EnrollError::Store(StoreError::Fault(format!(
                "enroll_device: device id owned by another user: {reasons:?}"
            )))),
        }
    }

    async fn list_devices(&self, sub: &str) -> Result<Vec<Device>, StoreError> {
        let mut devices = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&user_pk(sub)))
                .expression_attribute_values(":prefix", s(DEVICE_PREFIX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("list_devices", e))?;
            for item in out.items() {
                let device: Device = from_json(item)?;
                if device.sub == sub {
                    devices.push(device);
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(devices)
    }
}

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
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_error("use_jti", err)),
        }
    }
}

// ---- keys -------------------------------------------------------------------------------------

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))])
}

fn client_pk(client_id: &str) -> String {
    format!("CLIENT#{client_id}")
}

fn user_pk(sub: &str) -> String {
    format!("USER#{sub}")
}

fn device_pk(device_id: &str) -> String {
    format!("DEVICE#{device_id}")
}

fn authreq_pk(auth_req_id: &str) -> String {
    format!("AUTHREQ#{auth_req_id}")
}

fn txn_pk(txn: &str) -> String {
    format!("TXN#{txn}")
}

fn enroll_pk(code_hash: &str) -> String {
    format!("ENROLL#{code_hash}")
}

fn due_pk(expires_at: i64) -> String {
    format!("DUE#{}", expires_at.div_euclid(60))
}

fn due_item(r: &AuthRequest) -> Item {
    let mut item = key(due_pk(r.expires_at), &r.auth_req_id);
    item.insert("expires_at".into(), num(r.expires_at));
    item.insert("ttl".into(), num(r.expires_at + REQUEST_RETENTION_SECS));
    item
}

fn token_pk(hash: &str) -> String {
    format!("TOKEN#{hash}")
}

fn jti_pk(jti: &JtiUse) -> String {
    let scope = jti.scope.replace('%', "%25").replace('#', "%23");
    format!("JTI#{scope}#{}", jti.jti)
}

// ---- items ------------------------------------------------------------------------------------

fn jti_item(jti: &JtiUse) -> Item {
    let mut item = key(jti_pk(jti), SK_JTI);
    item.insert("scope".into(), s(&jti.scope));
    item.insert("jti".into(), s(&jti.jti));
    item.insert("ttl".into(), num(jti.expires_at));
    item
}

fn auth_request_item(r: &AuthRequest) -> Item {
    let mut item = key(authreq_pk(&r.auth_req_id), SK_AUTHREQ);
    let mut set = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    set("auth_req_id", s(&r.auth_req_id));
    set("txn", s(&r.txn));
    set("client_id", s(&r.client_id));
    set("sub", s(&r.sub));
    set("scope", s(&r.scope));
    if let Some(v) = &r.acr_values {
        set("acr_values", s(v));
    }
    if let Some(v) = &r.binding_message {
        set("binding_message", s(v));
    }
    if let Some(v) = &r.client_notification_token {
        set("client_notification_token", s(v));
    }
    set("delivery_mode", s(r.delivery_mode.as_str()));
    set("created_at", num(r.created_at));
    set("expires_at", num(r.expires_at));
    set("interval", num(r.interval));
    set("interval_ms", num(r.interval * 1000));
    if let Some(last) = r.last_poll_ms {
        set("last_poll_ms", num(last));
        set("next_poll_ms", num(last + r.interval * 1000));
    }
    set("status", s(r.status.as_str()));
    if let Some(at) = r.decided_at {
        set("decided_at", num(at));
    }
    if let Some(at) = r.notified_at {
        set("notified_at", num(at));
    }
    set("ttl", num(r.expires_at + REQUEST_RETENTION_SECS));
    item
}

fn auth_request_from_item(item: &Item) -> Result<AuthRequest, StoreError> {
    let status = req_s(item, "status")?;
    let delivery_mode = req_s(item, "delivery_mode")?;
    Ok(AuthRequest {
        auth_req_id: req_s(item, "auth_req_id")?,
        txn: req_s(item, "txn")?,
        client_id: req_s(item, "client_id")?,
        sub: req_s(item, "sub")?,
        scope: req_s(item, "scope")?,
        acr_values: opt_s(item, "acr_values")?,
        binding_message: opt_s(item, "binding_message")?,
        client_notification_token: opt_s(item, "client_notification_token")?,
        delivery_mode: DeliveryMode::parse(&delivery_mode).ok_or_else(|| {
            StoreError::Fault(format!("auth request has delivery_mode {delivery_mode:?}"))
        })?,
        created_at: req_n(item, "created_at")?,
        expires_at: req_n(item, "expires_at")?,
        interval: req_n(item, "interval")?,
        last_poll_ms: opt_n(item, "last_poll_ms")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Fault(format!("auth request has status {status:?}")))?,
        decided_at: opt_n(item, "decided_at")?,
        notified_at: opt_n(item, "notified_at")?,
    })
}

fn token_item(t: &TokenRecord) -> Item {
    let mut item = key(token_pk(&t.hash), SK_TOKEN);
    item.insert("hash".into(), s(&t.hash));
    item.insert("kind".into(), s(t.kind.as_str()));
    item.insert("client_id".into(), s(&t.client_id));
    item.insert("sub".into(), s(&t.sub));
    item.insert("scope".into(), s(&t.scope));
    item.insert("auth_req_id".into(), s(&t.auth_req_id));
    item.insert("auth_time".into(), num(t.auth_time));
    item.insert("expires_at".into(), num(t.expires_at));
    item.insert("ttl".into(), num(t.expires_at));
    item
}

fn token_from_item(item: &Item) -> Result<TokenRecord, StoreError> {
    let kind = req_s(item, "kind")?;
    Ok(TokenRecord {
        hash: req_s(item, "hash")?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Fault(format!("token has kind {kind:?}")))?,
        client_id: req_s(item, "client_id")?,
        sub: req_s(item, "sub")?,
        scope: req_s(item, "scope")?,
        auth_req_id: req_s(item, "auth_req_id")?,
        auth_time: req_n(item, "auth_time")?,
        expires_at: req_n(item, "expires_at")?,
    })
}

// ---- attribute values -------------------------------------------------------------------------

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn num(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Fault(format!("cannot serialize item data: {e}")))
}

fn from_json<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let data = req_s(item, "data")?;
    serde_json::from_str(&data)
        .map_err(|e| StoreError::Fault(format!("corrupt data in item {:?}: {e}", item.get("pk"))))
}

fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(StoreError::Fault(format!(
            "attribute {name} is not a string"
        ))),
    }
}

fn req_s(item: &Item, name: &str) -> Result<String, StoreError> {
    opt_s(item, name)?.ok_or_else(|| StoreError::Fault(format!("attribute {name} is missing")))
}

fn opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Fault(format!("attribute {name} is not an integer"))),
        Some(_) => Err(StoreError::Fault(format!(
            "attribute {name} is not a number"
        ))),
    }
}

fn req_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    opt_n(item, name)?.ok_or_else(|| StoreError::Fault(format!("attribute {name} is missing")))
}

// ---- errors and retries -----------------------------------------------------------------------

/// For a failed `UpdateItem`: `Some(true)` when its condition failed on an existing item,
/// `Some(false)` when the condition failed and no old item came back (missing, or an endpoint
/// that ignores `ReturnValuesOnConditionCheckFailure`), `None` for any other error.
fn update_condition_failure(err: &SdkError<UpdateItemError>) -> Option<bool> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
            Some(e.item().is_some_and(|item| !item.is_empty()))
        }
        _ => None,
    }
}

/// DynamoDB's own throttling and server-side codes (besides those every AWS service shares).
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "InternalServerError",
];

/// Maps an SDK error: throttling, timeouts, connection failures and server-side errors are
/// `Unavailable` (retryable), everything else a `Fault`. The message is for the server log only.
fn sdk_error<E>(op: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = format!("{op}: {}", DisplayErrorContext(&err));
    if aws_error::is_transient(&err, TRANSIENT_CODES) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Fault(message)
    }
}

fn build_error(err: BuildError) -> StoreError {
    StoreError::Fault(format!("invalid DynamoDB request: {err}"))
}

/// Exponential backoff with jitter: about 10, 20, 40 ... ms, at most 500 ms.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(6)).min(500);
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or_default()
        % cap.max(1);
    tokio::time::sleep(Duration::from_millis(cap / 2 + jitter / 2)).await;
}

#[cfg(test)]
mod tests {
    crate::store_suite!(optional super::test_store_from_env());

    use std::collections::BTreeSet;

    use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};

    use super::{
        Accounts, Clients, DynamoStore, Requests, StoreError, create_table, local_client,
        test_store_from_env,
    };
    use crate::domain::Device;
    use crate::store::PollOutcome;
    use crate::store::suite::request;

    const NOW_MS: i64 = 1_800_000_000_000;

    #[tokio::test]
    async fn table_creation_is_idempotent_and_enables_ttl() {
        let Some(store) = test_store_from_env().await else {
            return;
        };
        create_table(&store.client, store.table()).await.unwrap();
        let ttl = store
            .client
            .describe_time_to_live()
            .table_name(store.table())
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some("ttl"));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }

    #[tokio::test]
    async fn auth_request_is_stored_as_top_level_attributes() {
        let Some(store) = test_store_from_env().await else {
            return;
        };
        let r = request("r1");
        store.create_auth_request(&r, None).await.unwrap();
        store.record_poll("r1", NOW_MS).await.unwrap();
        let item = store
            .get("test", "AUTHREQ#r1".into(), "AUTHREQ")
            .await
            .unwrap()
            .unwrap();
        let n = |name: &str| item.get(name).cloned();
        let num = |v: i64| Some(AttributeValue::N(v.to_string()));
        assert_eq!(n("status"), Some(AttributeValue::S("pending".into())));
        assert_eq!(n("expires_at"), num(r.expires_at));
        assert_eq!(n("ttl"), num(r.expires_at + 86_400));
        assert_eq!(n("interval"), num(2));
        assert_eq!(n("last_poll_ms"), num(NOW_MS));
        assert_eq!(n("next_poll_ms"), num(NOW_MS + 2000));
        assert!(!item.contains_key("data"));
        let txn = store
            .get("test", "TXN#txn-r1".into(), "TXN")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            txn.get("auth_req_id"),
            Some(&AttributeValue::S("r1".into()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_concurrent_poll_too_soon_adds_exactly_five_seconds() {
        let Some(store) = test_store_from_env().await else {
            return;
        };
        store
            .create_auth_request(&request("r1"), None)
            .await
            .unwrap();
        store.record_poll("r1", NOW_MS).await.unwrap();
        let polls: Vec<_> = (1..=10)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.record_poll("r1", NOW_MS + i).await.unwrap() })
            })
            .collect();
        let mut intervals = BTreeSet::new();
        for poll in polls {
            match poll.await.unwrap() {
                PollOutcome::TooSoon { interval } => intervals.insert(interval),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(intervals, (1..=10).map(|k| 2 + 5 * k).collect());
        let stored = store.get_auth_request("r1").await.unwrap().unwrap();
        assert_eq!(stored.interval, 52);
    }

    #[tokio::test]
    async fn device_moved_to_another_user_leaves_the_old_list() {
        let Some(store) = test_store_from_env().await else {
            return;
        };
        let mut device = Device {
            device_id: "d1".into(),
            sub: "alice".into(),
            public_key: serde_json::json!({"kty": "EC"}),
            platform: None,
            push_token: None,
            endpoint_arn: None,
            enabled: true,
        };
        store.put_device(&device).await.unwrap();
        device.sub = "bob".into();
        store.put_device(&device).await.unwrap();
        assert!(store.list_devices("alice").await.unwrap().is_empty());
        assert_eq!(store.list_devices("bob").await.unwrap(), [device.clone()]);
        assert_eq!(store.get_device("d1").await.unwrap(), Some(device));
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_unavailable() {
        let store = DynamoStore::new(local_client("http://127.0.0.1:9").await, "t");
        let err = store.get_client("c1").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn missing_table_is_a_fault() {
        let Some(store) = test_store_from_env().await else {
            return;
        };
        let store = DynamoStore::new(store.client.clone(), "no-such-table");
        let err = store.get_client("c1").await.unwrap_err();
        assert!(matches!(err, StoreError::Fault(_)), "{err:?}");
    }

    #[test]
    fn jti_scope_cannot_spill_into_the_jti() {
        let pk = |scope: &str, jti: &str| {
            super::jti_pk(&super::JtiUse {
                scope: scope.into(),
                jti: jti.into(),
                expires_at: 0,
            })
        };
        assert_eq!(pk("c1", "j1"), "JTI#c1#j1");
        assert_ne!(pk("a#b", "c"), pk("a", "b#c"));
        assert_ne!(pk("a%23", "c"), pk("a#", "c"));
    }
}
