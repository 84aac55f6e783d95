//! Push senders for the local API and the tests: one that records every push instead of sending
//! it, and one that sends through another adapter and records what it delivered.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use ciba_shared::domain::Device;
use ciba_shared::push::{Platform, PushError, PushMessage, PushSender};
use serde::{Deserialize, Serialize};

/// A push as delivered to one device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordedPush {
    pub sub: String,
    pub device_id: String,
    pub message: PushMessage,
}

/// Keeps every push in memory; the local API lists them at `GET /_local/pushes`.
#[derive(Default)]
pub struct RecordingPushSender {
    sent: Mutex<VecDeque<RecordedPush>>,
}

impl RecordingPushSender {
    /// Forgets the oldest pushes whose request expired before `cutoff` (epoch seconds), up to the
    /// first one still live: amortised O(1) per push. Requests expire roughly in the order they
    /// were made, so what stays behind a live one is bounded by the longest request lifetime.
    pub fn forget_expired_before(&self, cutoff: i64) {
        if let Ok(mut sent) = self.sent.lock() {
            while sent.front().is_some_and(|p| p.message.expires_at < cutoff) {
                sent.pop_front();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sent.lock().map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sent_to(&self, sub: &str) -> Vec<RecordedPush> {
        self.sent
            .lock()
            .map(|v| v.iter().filter(|p| p.sub == sub).cloned().collect())
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<RecordedPush> {
        self.sent
            .lock()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest `limit` pushes (to `sub`, and carrying `binding_message`, when given), oldest
    /// first, without copying the rest.
    pub fn recent(
        &self,
        sub: Option<&str>,
        binding_message: Option<&str>,
        limit: usize,
    ) -> Vec<RecordedPush> {
        self.recent_to(sub, None, binding_message, limit)
    }

    /// `recent`, also only those to the device `device_id` when it is given.
    pub fn recent_to(
        &self,
        sub: Option<&str>,
        device_id: Option<&str>,
        binding_message: Option<&str>,
        limit: usize,
    ) -> Vec<RecordedPush> {
        let Ok(sent) = self.sent.lock() else {
            return Vec::new();
        };
        let mut newest: Vec<RecordedPush> = sent
            .iter()
            .rev()
            .filter(|p| sub.is_none_or(|s| p.sub == s))
            .filter(|p| device_id.is_none_or(|d| p.device_id == d))
            .filter(|p| {
                binding_message.is_none_or(|b| p.message.binding_message.as_deref() == Some(b))
            })
            .take(limit)
            .cloned()
            .collect();
        newest.reverse();
        newest
    }
}

#[async_trait]
impl PushSender for RecordingPushSender {
    async fn register(&self, platform: Platform, push_token: &str) -> Result<String, PushError> {
        let id = ciba_shared::secret::hash(push_token);
        Ok(format!(
            "arn:aws:sns:local:000000000000:endpoint/{}/local/{id}",
            platform.as_str()
        ))
    }

    async fn send(&self, device: &Device, message: &PushMessage) -> Result<(), PushError> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push_back(RecordedPush {
                sub: device.sub.clone(),
                device_id: device.device_id.clone(),
                message: message.clone(),
            });
        }
        Ok(())
    }
}

/// Sends through another adapter (SNS in the local API's `--push sns`) and keeps a record of
/// every push it delivered, so `GET /_local/pushes` still lists them.
pub struct TeePushSender {
    pub inner: std::sync::Arc<dyn PushSender>,
    pub record: std::sync::Arc<RecordingPushSender>,
}

#[async_trait]
impl PushSender for TeePushSender {
    async fn register(&self, platform: Platform, push_token: &str) -> Result<String, PushError> {
        self.inner.register(platform, push_token).await
    }

    async fn send(&self, device: &Device, message: &PushMessage) -> Result<(), PushError> {
        self.inner.send(device, message).await?;
        self.record.send(device, message).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    struct Refusing;

    #[async_trait]
    impl PushSender for Refusing {
        async fn register(&self, _: Platform, _: &str) -> Result<String, PushError> {
            Err(PushError::Unavailable("down".into()))
        }

        async fn send(&self, _: &Device, _: &PushMessage) -> Result<(), PushError> {
            Err(PushError::EndpointDisabled)
        }
    }

    fn device() -> Device {
        Device {
            device_id: "d1".into(),
            sub: "user-1".into(),
            public_key: serde_json::json!({}),
            platform: Some("GCM".into()),
            push_token: None,
            endpoint_arn: Some("arn:aws:sns:us-east-1:1:endpoint/GCM/app/1".into()),
            enabled: true,
        }
    }

    fn message() -> PushMessage {
        PushMessage {
            summary: None,
            txn: "txn-1".into(),
            binding_message: None,
            client_name: "Demo".into(),
            scope: "openid".into(),
            acr_values: None,
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn recent_keeps_the_newest_matching_pushes_oldest_first() {
        let record = RecordingPushSender::default();
        for (sub, binding) in [
            ("user-1", "A"),
            ("user-2", "B"),
            ("user-1", "B"),
            ("user-1", "C"),
        ] {
            let mut d = device();
            d.sub = sub.into();
            let mut m = message();
            m.binding_message = Some(binding.into());
            m.txn = format!("{sub}-{binding}");
            record.send(&d, &m).await.unwrap();
        }
        let txns = |pushes: Vec<RecordedPush>| -> Vec<String> {
            pushes.into_iter().map(|p| p.message.txn).collect()
        };
        assert_eq!(
            txns(record.recent(Some("user-1"), None, 10)),
            ["user-1-A", "user-1-B", "user-1-C"]
        );
        assert_eq!(
            txns(record.recent(Some("user-1"), None, 2)),
            ["user-1-B", "user-1-C"]
        );
        assert_eq!(
            txns(record.recent(None, Some("B"), 10)),
            ["user-2-B", "user-1-B"]
        );
        assert_eq!(
            txns(record.recent(Some("user-1"), Some("B"), 10)),
            ["user-1-B"]
        );
        assert!(record.recent(Some("user-3"), None, 10).is_empty());
        let to_device = record.recent_to(None, Some(&record.all()[0].device_id), None, 10);
        assert!(!to_device.is_empty());
        assert!(
            to_device
                .iter()
                .all(|p| p.device_id == record.all()[0].device_id)
        );
    }

    #[tokio::test]
    async fn pushes_of_expired_requests_are_forgotten_oldest_first() {
        let record = RecordingPushSender::default();
        for (txn, expires_at) in [("a", 10), ("b", 20), ("c", 15), ("d", 30)] {
            let mut m = message();
            m.txn = txn.into();
            m.expires_at = expires_at;
            record.send(&device(), &m).await.unwrap();
        }
        record.forget_expired_before(10);
        assert_eq!(record.len(), 4);
        record.forget_expired_before(16);
        let left: Vec<String> = record.all().into_iter().map(|p| p.message.txn).collect();
        assert_eq!(left, ["b", "c", "d"], "c stays behind b, still live");
        record.forget_expired_before(31);
        assert!(record.is_empty());
    }

    #[tokio::test]
    async fn tee_records_only_what_the_inner_sender_delivered() {
        let record = Arc::new(RecordingPushSender::default());
        let delivered = TeePushSender {
            inner: Arc::new(RecordingPushSender::default()),
            record: record.clone(),
        };
        delivered.send(&device(), &message()).await.unwrap();
        assert_eq!(record.sent_to("user-1").len(), 1);

        let refused = TeePushSender {
            inner: Arc::new(Refusing),
            record: record.clone(),
        };
        assert_eq!(
            refused.send(&device(), &message()).await,
            Err(PushError::EndpointDisabled)
        );
        assert_eq!(
            refused.register(Platform::Gcm, "token").await,
            Err(PushError::Unavailable("down".into()))
        );
        assert_eq!(record.all().len(), 1);
    }
}
