//! The notification queue's consumer: each message names a request whose ping or push client is
//! to be told; each gets one delivery attempt (`Notifier::deliver`), all of a batch at once, so
//! a dead endpoint delays no other client's notification. A failed attempt leaves its message on
//! the queue, hidden for a back-off that doubles; a notification that keeps failing, or fails for
//! good, is parked in the dead-letter queue with its reason (`ciba-admin dead-letters`).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use ciba_shared::notify::{Disposition, Notification, NotificationQueue, Notifier};
use futures_util::future::join_all;

/// Handles one batch of messages; answers the partial batch response (`ReportBatchItemFailures`):
/// the messages to deliver again.
pub async fn handle(
    notifier: &Notifier,
    queue: &dyn NotificationQueue,
    event: &SqsEvent,
) -> SqsBatchResponse {
    let attempts = event
        .records
        .iter()
        .map(|message| async move { (message, deliver(notifier, queue, message).await) });
    let mut response = SqsBatchResponse::default();
    for (message, again) in join_all(attempts).await {
        if again {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Whether `message` must be delivered again.
async fn deliver(notifier: &Notifier, queue: &dyn NotificationQueue, message: &SqsMessage) -> bool {
    let Some(notification) = message.body.as_deref().and_then(Notification::parse) else {
        // Nothing any attempt could deliver: no retries, but not dropped silently either.
        tracing::error!(message_id = ?message.message_id, "unreadable notification message");
        let unreadable = Notification {
            auth_req_id: format!(
                "(unreadable message {})",
                message.message_id.as_deref().unwrap_or("?")
            ),
        };
        return queue
            .park(&unreadable, "the message is not a notification")
            .await
            .is_err();
    };
    let attempt = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let receipt = message.receipt_handle.as_deref().unwrap_or_default();
    match notifier
        .deliver(queue, &notification, receipt, attempt)
        .await
    {
        Ok(Disposition::Done) => false,
        Ok(Disposition::Again) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the notification queue failed: the message is retried");
            true
        }
    }
}
