//! The table's stream consumer: every auth request that turns approved, denied or expired becomes
//! one message on the notification queue, which the delivery function (`functions/deliverer`)
//! works through, one message and one client at a time (CIBA Core §10.2, §10.3, §12).
//!
//! Queuing only, so a batch takes milliseconds whatever the clients' endpoints do. Records are
//! queued in stream order; when the queue refuses one, it is reported as the batch item failure
//! and Lambda retries from it. A record queued twice is harmless: delivery is recorded on the
//! request, so the client is told once.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use ciba_shared::notify::{Notification, NotificationQueue};
use ciba_shared::store::dynamodb::stream;

/// Handles one stream batch; answers the partial batch response (`ReportBatchItemFailures`).
pub async fn handle(queue: &dyn NotificationQueue, event: &Event) -> DynamoDbEventResponse {
    let changes = stream::changes(event);
    let notifications: Vec<Notification> = changes
        .iter()
        .map(|c| Notification {
            auth_req_id: c.auth_req_id.clone(),
        })
        .collect();
    let queued = match queue.enqueue(&notifications).await {
        Ok(queued) => queued,
        Err(e) => {
            tracing::warn!(error = %e, "notifications could not be queued");
            0
        }
    };
    match changes.into_iter().nth(queued) {
        Some(first_unqueued) => failed_from(first_unqueued.sequence_number),
        None => DynamoDbEventResponse::default(),
    }
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

    fn approval(seq: &str, id: &str) -> serde_json::Value {
        let image = |status: &str| json!({"pk": {"S": format!("AUTHREQ#{id}")}, "auth_req_id": {"S": id}, "status": {"S": status}});
        json!({
            "awsRegion": "eu-west-1", "eventID": seq, "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": {"S": format!("AUTHREQ#{id}")}, "sk": {"S": "AUTHREQ"}},
                "OldImage": image("pending"), "NewImage": image("approved"),
                "SequenceNumber": seq, "SizeBytes": 64, "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        })
    }

    #[tokio::test]
    async fn every_decided_request_is_queued_in_stream_order() {
        let event =
            serde_json::from_value(json!({"Records": [approval("1", "a"), approval("2", "b")]}))
                .unwrap();
        let queue = ciba_testkit::RecordingQueue::default();
        let response = handle(&queue, &event).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(queue.queued_ids(), ["a", "b"]);
    }

    #[tokio::test]
    async fn the_first_record_the_queue_refused_is_retried_from() {
        let event =
            serde_json::from_value(json!({"Records": [approval("1", "a"), approval("2", "b")]}))
                .unwrap();
        let queue = ciba_testkit::RecordingQueue {
            accept_only: Some(1),
            ..Default::default()
        };
        let response = serde_json::to_value(handle(&queue, &event).await).unwrap();
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "2"}]})
        );
    }

    #[test]
    fn a_batch_without_failures_answers_an_empty_list() {
        let body = serde_json::to_value(DynamoDbEventResponse::default()).unwrap();
        assert_eq!(body, json!({"batchItemFailures": []}));
    }
}
