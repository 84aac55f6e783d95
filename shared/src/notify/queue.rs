//! The notification queue: the table's stream consumer puts one message per decided or expired
//! request on it, the delivery function takes them off one by one. A delivery that fails is
//! retried later (the message stays hidden for the back-off); one that keeps failing, or fails
//! for good, is parked whole in the dead-letter queue, with its reason, for an operator to
//! inspect and redrive (`ciba-admin dead-letters`).
//!
//! In AWS this is SQS (`SqsNotificationQueue`); the local API runs deliveries in-process instead.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use serde::{Deserialize, Serialize};

use crate::aws_error::{chain, is_transient};

/// The body of a notification message: which request's client is to be told.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    pub auth_req_id: String,
}

impl Notification {
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }

    pub fn body(&self) -> String {
        serde_json::json!({"auth_req_id": self.auth_req_id}).to_string()
    }
}

/// A notification parked in the dead-letter queue.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeadLetter {
    pub auth_req_id: String,
    pub reason: String,
    /// The queue's handle for the message, to remove it once redriven.
    #[serde(skip)]
    pub receipt: String,
}

/// A failed queue call; `transient` when trying again may help.
#[derive(Debug)]
pub struct QueueError {
    pub message: String,
    pub transient: bool,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "notification queue: {}", self.message)
    }
}

impl std::error::Error for QueueError {}

#[async_trait]
pub trait NotificationQueue: Send + Sync {
    /// Queues `notifications` in order; answers how many were queued before the first that
    /// could not be (all of them on success).
    async fn enqueue(&self, notifications: &[Notification]) -> Result<usize, QueueError>;
    /// Keeps the received message `receipt` hidden for `after` before it is delivered again.
    async fn retry_later(&self, receipt: &str, after: Duration) -> Result<(), QueueError>;
    /// Parks `notification` in the dead-letter queue with the reason it could not be delivered.
    async fn park(&self, notification: &Notification, reason: &str) -> Result<(), QueueError>;
    /// Up to `limit` parked notifications, hidden from other readers for a minute.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Queues a parked notification for delivery again and removes it from the dead letters.
    async fn redrive(&self, letter: &DeadLetter) -> Result<(), QueueError>;
}

/// The SQS queues: `queue_url` for deliveries, `dead_letter_url` for parked notifications.
pub struct SqsNotificationQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: String,
}

/// SQS's own retryable codes, besides those every AWS service shares.
const TRANSIENT_CODES: &[&str] = &[
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
];
/// SendMessageBatch takes at most ten messages.
const MAX_BATCH: usize = 10;
/// SQS keeps a message hidden at most 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const REASON: &str = "reason";

fn queue_error<E, R>(op: &str, err: aws_sdk_sqs::error::SdkError<E, R>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: crate::aws_error::RawResponse + std::fmt::Debug,
{
    QueueError {
        transient: is_transient(&err, TRANSIENT_CODES),
        message: format!("{op}: {}", chain(&err)),
    }
}

impl SqsNotificationQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    /// `NOTIFICATION_QUEUE_URL` and `NOTIFICATION_DEAD_LETTER_URL`, both required.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, crate::config::ConfigError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| crate::config::ConfigError(format!("{name} is not set")))
        };
        Ok(Self::new(
            aws_sdk_sqs::Client::new(aws),
            var("NOTIFICATION_QUEUE_URL")?,
            var("NOTIFICATION_DEAD_LETTER_URL")?,
        ))
    }

    async fn send(
        &self,
        queue_url: &str,
        body: String,
        reason: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(body);
        if let Some(reason) = reason {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .map_err(|e| QueueError {
                    message: e.to_string(),
                    transient: false,
                })?;
            send = send.message_attributes(REASON, value);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|e| queue_error("SendMessage", e))
    }
}

#[async_trait]
impl NotificationQueue for SqsNotificationQueue {
    async fn enqueue(&self, notifications: &[Notification]) -> Result<usize, QueueError> {
        let mut queued = 0;
        for chunk in notifications.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(n.body())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueueError {
                    message: e.to_string(),
                    transient: false,
                })?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| queue_error("SendMessageBatch", e))?;
            // The order matters to the stream consumer: count up to the first failed entry.
            let failed: Vec<usize> = out
                .failed()
                .iter()
                .filter_map(|f| f.id().parse().ok())
                .collect();
            match failed.iter().min() {
                Some(first) => {
                    let reason = out
                        .failed()
                        .iter()
                        .map(|f| f.code().to_owned())
                        .collect::<Vec<_>>()
                        .join(", ");
                    tracing::warn!(%reason, "some notifications were not queued");
                    return Ok(queued + first);
                }
                None => queued += chunk.len(),
            }
        }
        Ok(queued)
    }

    async fn retry_later(&self, receipt: &str, after: Duration) -> Result<(), QueueError> {
        let seconds = after.min(MAX_VISIBILITY).as_secs();
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| queue_error("ChangeMessageVisibility", e))
    }

    async fn park(&self, notification: &Notification, reason: &str) -> Result<(), QueueError> {
        self.send(&self.dead_letter_url, notification.body(), Some(reason))
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut letters = Vec::new();
        while letters.len() < limit {
            let wanted = (limit - letters.len()).min(MAX_BATCH);
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(i32::try_from(wanted).unwrap_or(10))
                .visibility_timeout(60)
                .message_attribute_names(REASON)
                .send()
                .await
                .map_err(|e| queue_error("ReceiveMessage", e))?;
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let notification = message.body().and_then(Notification::parse);
                let reason = message
                    .message_attributes()
                    .and_then(|a| a.get(REASON))
                    .and_then(|v| v.string_value())
                    // Moved here by the queue's redrive policy: the deliveries kept failing
                    // without an answer (timeouts, crashes).
                    .unwrap_or("the queue's receive limit was reached");
                letters.push(DeadLetter {
                    auth_req_id: notification
                        .map(|n| n.auth_req_id)
                        .unwrap_or_else(|| "(unreadable message)".into()),
                    reason: reason.to_owned(),
                    receipt: message.receipt_handle().unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(letters)
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        let notification = Notification {
            auth_req_id: letter.auth_req_id.clone(),
        };
        self.send(&self.queue_url, notification.body(), None)
            .await?;
        self.client
            .delete_message()
            .queue_url(&self.dead_letter_url)
            .receipt_handle(&letter.receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| queue_error("DeleteMessage", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_body_round_trips() {
        let n = Notification {
            auth_req_id: "r1".into(),
        };
        assert_eq!(n.body(), r#"{"auth_req_id":"r1"}"#);
        assert_eq!(Notification::parse(&n.body()), Some(n));
        assert_eq!(Notification::parse("not json"), None);
    }
}
