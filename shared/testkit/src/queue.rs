//! A notification queue that keeps what it is told in memory, for tests of the stream consumer
//! and the delivery function.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ciba_shared::notify::{DeadLetter, Notification, NotificationQueue, QueueError};

#[derive(Default)]
pub struct RecordingQueue {
    /// Queued, in order.
    pub queued: Mutex<Vec<Notification>>,
    /// Receipts of messages to deliver again, with the back-off asked for.
    pub retried: Mutex<Vec<(String, Duration)>>,
    /// Parked, with the reason.
    pub parked: Mutex<Vec<(Notification, String)>>,
    /// When set, `enqueue` takes only this many notifications.
    pub accept_only: Option<usize>,
}

impl RecordingQueue {
    pub fn queued_ids(&self) -> Vec<String> {
        self.queued
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.auth_req_id.clone())
            .collect()
    }
}

#[async_trait]
impl NotificationQueue for RecordingQueue {
    async fn enqueue(&self, notifications: &[Notification]) -> Result<usize, QueueError> {
        let taken = self
            .accept_only
            .unwrap_or(notifications.len())
            .min(notifications.len());
        self.queued
            .lock()
            .unwrap()
            .extend_from_slice(&notifications[..taken]);
        Ok(taken)
    }

    async fn retry_later(&self, receipt: &str, after: Duration) -> Result<(), QueueError> {
        self.retried
            .lock()
            .unwrap()
            .push((receipt.to_owned(), after));
        Ok(())
    }

    async fn park(&self, notification: &Notification, reason: &str) -> Result<(), QueueError> {
        self.parked
            .lock()
            .unwrap()
            .push((notification.clone(), reason.to_owned()));
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self
            .parked
            .lock()
            .unwrap()
            .iter()
            .take(limit)
            .map(|(n, reason)| DeadLetter {
                auth_req_id: n.auth_req_id.clone(),
                reason: reason.clone(),
                receipt: n.auth_req_id.clone(),
            })
            .collect())
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        self.parked
            .lock()
            .unwrap()
            .retain(|(n, _)| n.auth_req_id != letter.receipt);
        self.queued.lock().unwrap().push(Notification {
            auth_req_id: letter.auth_req_id.clone(),
        });
        Ok(())
    }
}
