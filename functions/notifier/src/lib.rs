//! The table's stream consumer: every auth request that turns approved, denied or expired is
//! handed to the `Notifier`, which calls ping and push clients (CIBA Core §10.2, §10.3, §12).
//!
//! Records are processed in order. The first one whose delivery fails (after the notifier's own
//! retries with back-off) is reported as a batch item failure: Lambda retries from it, and once
//! the event source mapping's retries are spent the record goes to its on-failure destination,
//! the dead-letter queue an operator inspects. Delivered requests are marked, so a retried batch
//! never notifies anyone twice.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use ciba_shared::notify::{Notifier, Outcome};
use ciba_shared::store::dynamodb::stream;

/// Handles one stream batch; answers the partial batch response (`ReportBatchItemFailures`).
pub async fn handle(notifier: &Notifier, event: &Event) -> DynamoDbEventResponse {
    for change in stream::changes(event) {
        let failure = match notifier.process(&change.auth_req_id).await {
            Ok(Outcome::Delivered | Outcome::Skipped(_)) => None,
            Ok(Outcome::Failed(reason)) => Some(reason),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = failure {
            tracing::warn!(auth_req_id = %change.auth_req_id, %reason, "notification failed");
            return failed_from(change.sequence_number);
        }
    }
    DynamoDbEventResponse::default()
}

/// The answer that makes Lambda retry the batch from the record at `sequence_number`.
fn failed_from(sequence_number: String) -> DynamoDbEventResponse {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(sequence_number);
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures.push(failure);
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_failure_names_the_record_to_retry_from() {
        let body = serde_json::to_value(failed_from("111".into())).unwrap();
        assert_eq!(
            body,
            json!({"batchItemFailures": [{"itemIdentifier": "111"}]})
        );
    }

    #[test]
    fn a_batch_without_failures_answers_an_empty_list() {
        let body = serde_json::to_value(DynamoDbEventResponse::default()).unwrap();
        assert_eq!(body, json!({"batchItemFailures": []}));
    }
}
