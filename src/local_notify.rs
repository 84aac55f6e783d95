//! The in-process stand-in for the table's stream and the scheduled expiry sweep: a decorator of
//! the store's `Requests` role that reports every decided or expired request to a worker, which
//! runs the same `Notifier` as the stream Lambda; failures are parked in a dead-letter list
//! instead of an SQS queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use ciba_shared::domain::{AuthRequest, Decision, Evidence, Family, TokenRecord};
use ciba_shared::notify::{
    DeadLetter, Disposition, Notification, NotificationQueue, Notifier, QueueError,
};
use ciba_shared::store::{
    Accounts, Clients, CreateError, DecideError, JtiUse, Jtis, PendingLimit, PollOutcome,
    RedeemError, Requests, SWEEP_BATCH, SWEEP_LOOKBACK_SECS, Store, StoreError, Tokens,
};

/// The wrapped store with its `requests()` reporting every request whose state changed the way
/// the table's stream would; the other roles are the wrapped store's own.
pub struct NotifyingStore {
    inner: Arc<dyn Store>,
    requests: NotifyingRequests,
}

impl NotifyingStore {
    pub fn new(inner: Arc<dyn Store>, changes: mpsc::UnboundedSender<String>) -> Self {
        Self {
            requests: NotifyingRequests {
                inner: inner.clone(),
                changes,
            },
            inner,
        }
    }
}

impl Store for NotifyingStore {
    fn requests(&self) -> &dyn Requests {
        &self.requests
    }

    fn tokens(&self) -> &dyn Tokens {
        self.inner.tokens()
    }

    fn clients(&self) -> &dyn Clients {
        self.inner.clients()
    }

    fn accounts(&self) -> &dyn Accounts {
        self.inner.accounts()
    }

    fn jtis(&self) -> &dyn Jtis {
        self.inner.jtis()
    }
}

/// The wrapped store's requests; a decision and an expiry are reported to the worker.
struct NotifyingRequests {
    inner: Arc<dyn Store>,
    changes: mpsc::UnboundedSender<String>,
}

impl NotifyingRequests {
    fn changed(&self, auth_req_id: &str) {
        // The receiver lives as long as the local API; after shutdown nobody is left to notify.
        let _ = self.changes.send(auth_req_id.to_owned());
    }
}

#[async_trait]
impl Requests for NotifyingRequests {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError> {
        self.inner
            .requests()
            .create_auth_request(request, jti, limit)
            .await
    }
    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        self.inner
            .requests()
            .discard_auth_request(request, jti)
            .await
    }
    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError> {
        self.inner.requests().get_auth_request(auth_req_id).await
    }
    async fn get_auth_request_for_poll(
        &self,
        auth_req_id: &str,
    ) -> Result<Option<AuthRequest>, StoreError> {
        self.inner
            .requests()
            .get_auth_request_for_poll(auth_req_id)
            .await
    }
    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        self.inner.requests().get_auth_request_by_txn(txn).await
    }
    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError> {
        self.inner.requests().record_poll(auth_req_id, now_ms).await
    }
    async fn decide_with(
        &self,
        auth_req_id: &str,
        decision: Decision,
        evidence: Option<&Evidence>,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        self.inner
            .requests()
            .decide_with(auth_req_id, decision, evidence, now, jti)
            .await?;
        self.changed(auth_req_id);
        Ok(())
    }
    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        self.inner
            .requests()
            .redeem(auth_req_id, now, family, tokens)
            .await
    }
    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let expired = self
            .inner
            .requests()
            .expire_due(now, lookback, limit)
            .await?;
        for request in &expired {
            self.changed(&request.auth_req_id);
        }
        Ok(expired)
    }
    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        self.inner.requests().mark_notified(auth_req_id, now).await
    }
}

/// Runs notifications in the background of the local API: one task per changed request, and a
/// sweep for due expiries every `sweep_every`.
pub struct LocalNotifier {
    notifier: Arc<Notifier>,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
    /// Itself, for the tasks it spawns.
    this: std::sync::Weak<LocalNotifier>,
}

impl LocalNotifier {
    /// Starts the worker reading `changes` (fed by a `NotifyingStore`) and the sweep ticker.
    pub fn spawn(
        notifier: Notifier,
        mut changes: mpsc::UnboundedReceiver<String>,
        sweep_every: Duration,
    ) -> Arc<Self> {
        let this = Arc::new_cyclic(|this| Self {
            notifier: Arc::new(notifier),
            dead_letters: Arc::default(),
            this: this.clone(),
        });
        let worker = this.clone();
        tokio::spawn(async move {
            while let Some(auth_req_id) = changes.recv().await {
                worker.deliver_later(auth_req_id);
            }
        });
        let sweeper = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(sweep_every);
            loop {
                ticker.tick().await;
                let Some(sweeper) = sweeper.upgrade() else {
                    break;
                };
                sweeper.sweep().await;
            }
        });
        this
    }

    /// Delivers `auth_req_id`'s notification in a task of its own, so no delivery waits on
    /// another.
    fn deliver_later(&self, auth_req_id: String) {
        if let Some(worker) = self.this.upgrade() {
            tokio::spawn(async move { worker.notify(&auth_req_id).await });
        }
    }

    /// Marks due requests expired now; the store reports them to the worker.
    pub async fn sweep(&self) {
        let ctx = &self.notifier.ctx;
        if let Err(e) = ctx
            .store
            .requests()
            .expire_due(ctx.clock.now(), SWEEP_LOOKBACK_SECS, SWEEP_BATCH)
            .await
        {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
    }

    /// Delivers with the deployed delivery function's rules (`Notifier::deliver`), the waits
    /// between attempts slept here instead of kept by a queue.
    async fn notify(&self, auth_req_id: &str) {
        let notification = Notification {
            auth_req_id: auth_req_id.to_owned(),
        };
        for attempt in 1.. {
            match self
                .notifier
                .deliver(self, &notification, "", attempt)
                .await
            {
                Ok(Disposition::Done) => return,
                Ok(Disposition::Again) => {
                    tokio::time::sleep(self.notifier.settings.backoff(attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notification could not be parked");
                    return;
                }
            }
        }
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

/// The in-process stand-in for the queue: a retry is the worker's own sleep, a parked
/// notification goes to the dead-letter list, a redriven one is delivered again now.
#[async_trait]
impl NotificationQueue for LocalNotifier {
    async fn enqueue(&self, notifications: &[Notification]) -> Result<usize, QueueError> {
        for n in notifications {
            self.deliver_later(n.auth_req_id.clone());
        }
        Ok(notifications.len())
    }

    async fn retry_later(&self, _receipt: &str, _after: Duration) -> Result<(), QueueError> {
        Ok(())
    }

    async fn park(&self, notification: &Notification, reason: &str) -> Result<(), QueueError> {
        if let Ok(mut dead) = self.dead_letters.lock() {
            dead.push(DeadLetter {
                auth_req_id: notification.auth_req_id.clone(),
                reason: reason.to_owned(),
                receipt: notification.auth_req_id.clone(),
            });
        }
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.dead_letters().into_iter().take(limit).collect())
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        if let Ok(mut dead) = self.dead_letters.lock() {
            dead.retain(|d| d.receipt != letter.receipt);
        }
        self.enqueue(&[Notification {
            auth_req_id: letter.auth_req_id.clone(),
        }])
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_shared::domain::DeliveryMode;
    use ciba_shared::store::MemoryStore;
    use ciba_testkit::store_suite::{client, request};

    fn notifying() -> (
        Arc<dyn Store>,
        NotifyingStore,
        mpsc::UnboundedReceiver<String>,
    ) {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (changes, changed) = mpsc::unbounded_channel();
        let store = NotifyingStore::new(inner.clone(), changes);
        (inner, store, changed)
    }

    #[tokio::test]
    async fn a_decision_is_reported_and_a_creation_is_not() {
        let (_, store, mut changed) = notifying();
        let r = request("r1");
        store
            .requests()
            .create_auth_request(&r, None, PendingLimit::NONE)
            .await
            .unwrap();
        assert!(changed.try_recv().is_err());
        let jti = JtiUse {
            scope: "dev".into(),
            jti: "d1".into(),
            expires_at: r.expires_at,
        };
        store
            .requests()
            .decide("r1", Decision::Deny, r.created_at + 1, &jti)
            .await
            .unwrap();
        assert_eq!(changed.try_recv().unwrap(), "r1");
    }

    #[tokio::test]
    async fn requests_the_sweep_expires_are_reported() {
        let (_, store, mut changed) = notifying();
        let r = AuthRequest {
            delivery_mode: DeliveryMode::Ping,
            ..request("p1")
        };
        store
            .requests()
            .create_auth_request(&r, None, PendingLimit::NONE)
            .await
            .unwrap();
        store
            .requests()
            .expire_due(r.expires_at, SWEEP_LOOKBACK_SECS, SWEEP_BATCH)
            .await
            .unwrap();
        assert_eq!(changed.try_recv().unwrap(), "p1");
    }

    #[tokio::test]
    async fn the_other_roles_are_the_wrapped_stores() {
        let (inner, store, _) = notifying();
        store.clients().put_client(&client("c1")).await.unwrap();
        assert_eq!(
            inner.clients().get_client("c1").await.unwrap(),
            Some(client("c1"))
        );
    }
}
