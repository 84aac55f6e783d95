//! Calls that may have to be tried more than once: transactions (retried while they only lose
//! races), the backoff between attempts, and what a failed call means to the store's callers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::DynamoStore;
use super::codec::Item;
use crate::aws_error;
use crate::store::StoreError;

/// Attempts of an operation that lost a race (a transaction conflict, a poll racing a poll).
pub(super) const MAX_ATTEMPTS: u32 = 8;
/// DynamoDB's limit on the items of one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// The cancellation reason of a transaction item whose condition failed.
pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// How a transaction ended, unless it failed outright.
pub(super) enum Transaction {
    Committed,
    /// At least one condition failed: the cancellation reason code of each item, in order.
    Cancelled(Vec<String>),
}

impl DynamoStore {
    /// An unconditional `Put` of `item`, for a transaction.
    pub(super) fn put(&self, item: Item) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_error)
    }

    /// Runs one transaction, retrying it while it only lost races against other transactions.
    pub(super) async fn transact(
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
}

/// For a failed `UpdateItem`: `Some(true)` when its condition failed on an existing item,
/// `Some(false)` when the condition failed and no old item came back (missing, or an endpoint
/// that ignores `ReturnValuesOnConditionCheckFailure`), `None` for any other error.
pub(super) fn update_condition_failure(err: &SdkError<UpdateItemError>) -> Option<bool> {
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
pub(super) fn sdk_error<E>(op: &str, err: SdkError<E>) -> StoreError
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

pub(super) fn build_error(err: BuildError) -> StoreError {
    StoreError::Fault(format!("invalid DynamoDB request: {err}"))
}

/// Exponential backoff with jitter: about 10, 20, 40 ... ms, at most 500 ms.
pub(super) async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(6)).min(500);
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or_default()
        % cap.max(1);
    tokio::time::sleep(Duration::from_millis(cap / 2 + jitter / 2)).await;
}
