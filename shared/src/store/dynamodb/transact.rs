//! Calls that may have to be tried more than once: transactions (retried while they only lose
//! races, and sent again under the same `ClientRequestToken` while their outcome is unknown), the
//! backoff between attempts, and what a failed call means to the store's callers.
//!
//! # Idempotent transactions
//!
//! Each transaction goes under a `ClientRequestToken` of its own, and a transaction whose answer
//! never came (lost, timed out, unreadable, or the service failed while running it) is sent
//! again under the same token: DynamoDB answers a repeat of a committed transaction with success
//! for 10 minutes instead of running it again, so a commit whose answer was lost is learnt as a
//! commit, never mistaken for a failed condition (a redeemed request's `invalid_grant`, a
//! decision's replayed `jti`). The SDK's own retries resend the same bytes, token included.
//!
//! The token is one per call, not a hash of what the transaction writes: two calls that write
//! the same (a decision JWT posted twice within a second) must stay two calls, the second
//! refused as a replay, not answered with the first one's success.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::DynamoStore;
use super::codec::Item;
use crate::aws_error;
use crate::ports::{OsRandom, Random};
use crate::store::StoreError;

/// Attempts of an operation that lost a race (a transaction conflict, a poll racing a poll).
pub(super) const MAX_ATTEMPTS: u32 = 8;
/// DynamoDB's limit on the items of one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Sends of a transaction whose outcome is unknown, after the first (each with the SDK's own
/// attempts): enough to learn the outcome of a call whose every answer was lost, few enough to
/// answer within the function's timeout.
const RESENDS_WHILE_UNKNOWN: u32 = 1;
/// Random bytes of a `ClientRequestToken`: 24 make 32 characters (DynamoDB allows 36).
const REQUEST_TOKEN_BYTES: usize = 24;

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
            let err = match self.send_transaction(op, &items).await {
                Ok(()) => return Ok(Transaction::Committed),
                Err(err) => err,
            };
            let cancelled = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled,
                Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                    // Only ever the same items go under one token: DynamoDB compared them
                    // differently (an emulator comparing the JSON's member order does). Whether
                    // the first send committed is unknown, and trying again cannot tell.
                    return Err(StoreError::Fault(format!(
                        "{op}: the transaction's ClientRequestToken was taken for another \
                         transaction's: {}",
                        DisplayErrorContext(&err)
                    )));
                }
                _ => return Err(sdk_error(op, err)),
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

    /// Sends `items` as one transaction under a new `ClientRequestToken`, and again under the
    /// same token while its outcome is unknown (see the module documentation).
    async fn send_transaction(
        &self,
        op: &str,
        items: &[TransactWriteItem],
    ) -> Result<(), SdkError<TransactWriteItemsError>> {
        let token = OsRandom.token(REQUEST_TOKEN_BYTES);
        let mut resends = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.to_vec()))
                .client_request_token(&token)
                .send()
                .await;
            match result {
                Err(err) if resends < RESENDS_WHILE_UNKNOWN && outcome_unknown(&err) => {
                    resends += 1;
                    tracing::warn!(
                        op,
                        error = %DisplayErrorContext(&err),
                        "transaction outcome unknown: sending it again under the same token"
                    );
                    backoff(resends).await;
                }
                result => return result.map(|_| ()),
            }
        }
    }
}

/// Whether a transaction that failed may have committed all the same: no answer came back (it
/// was lost or unreadable, or the call timed out), the service failed while running it, or a
/// transaction under the same token is still running.
fn outcome_unknown(err: &SdkError<TransactWriteItemsError>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error()
                || matches!(
                    e.err(),
                    TransactWriteItemsError::InternalServerError(_)
                        | TransactWriteItemsError::TransactionInProgressException(_)
                )
        }
        _ => false,
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

/// The item an `UpdateItem` asked for `ReturnValuesOnConditionCheckFailure::AllOld` failed its
/// condition on: `Some(None)` when there was no item, `None` when the call failed otherwise.
pub(super) fn update_condition_item(err: &SdkError<UpdateItemError>) -> Option<Option<&Item>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
            Some(e.item().filter(|item| !item.is_empty()))
        }
        _ => None,
    }
}

/// The outcome of a conditional `PutItem`: `true` when it wrote, `false` when its condition
/// failed.
pub(super) fn conditional_put(
    op: &str,
    result: Result<PutItemOutput, SdkError<PutItemError>>,
) -> Result<bool, StoreError> {
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
        Err(err) => Err(sdk_error(op, err)),
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

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::error::{
        InternalServerError, ProvisionedThroughputExceededException, TransactionInProgressException,
    };
    use aws_smithy_runtime_api::client::result::ConnectorError;

    use super::*;

    type Error = SdkError<TransactWriteItemsError>;

    fn service_error(status: u16, err: TransactWriteItemsError) -> Error {
        let raw = lambda_http::http::Response::builder()
            .status(status)
            .body(String::new().into())
            .unwrap();
        SdkError::service_error(err, HttpResponse::try_from(raw).unwrap())
    }

    #[test]
    fn lost_answers_timeouts_and_server_failures_leave_the_outcome_unknown() {
        let lost: Error = SdkError::dispatch_failure(ConnectorError::other(
            "connection closed before message completed".into(),
            None,
        ));
        let timeout: Error = SdkError::timeout_error("too slow");
        let internal = service_error(
            500,
            TransactWriteItemsError::InternalServerError(InternalServerError::builder().build()),
        );
        let in_progress = service_error(
            400,
            TransactWriteItemsError::TransactionInProgressException(
                TransactionInProgressException::builder().build(),
            ),
        );
        for err in [lost, timeout, internal, in_progress] {
            assert!(outcome_unknown(&err), "{err:?}");
        }
    }

    #[test]
    fn throttling_and_refusals_are_known_not_to_have_committed() {
        let throttled = service_error(
            400,
            TransactWriteItemsError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder().build(),
            ),
        );
        let refused = service_error(
            400,
            TransactWriteItemsError::generic(
                ErrorMetadata::builder().code("ValidationException").build(),
            ),
        );
        let unbuilt: Error = SdkError::construction_failure("no region");
        for err in [throttled, refused, unbuilt] {
            assert!(!outcome_unknown(&err), "{err:?}");
        }
    }
}
