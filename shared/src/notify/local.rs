//! The in-process stand-in for the table's stream and the scheduled expiry sweep: a store
//! decorator that reports every decided request to a worker, which runs the same `Notifier` as
//! the stream Lambda; failures are parked in a dead-letter list instead of an SQS queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Notifier, Outcome};
use crate::domain::{AuthRequest, Client, Decision, Device, EnrollmentCode, TokenRecord, User};
use crate::store::{
    CreateError, DecideError, EnrollError, JtiUse, PollOutcome, RedeemError, RotateError, Store,
    StoreError,
};

/// How far back the sweep looks for requests that expired unnoticed.
pub const SWEEP_LOOKBACK_SECS: i64 = 3600;
/// Requests the sweep expires in one pass.
pub const SWEEP_BATCH: usize = 100;

/// A notification that could not be delivered, for an operator to inspect.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeadLetter {
    pub auth_req_id: String,
    pub reason: String,
}

/// Forwards every call to the wrapped store and reports requests whose state changed the way
/// the table's stream would.
pub struct NotifyingStore {
    inner: Arc<dyn Store>,
    changes: mpsc::UnboundedSender<String>,
}

impl NotifyingStore {
    pub fn new(inner: Arc<dyn Store>, changes: mpsc::UnboundedSender<String>) -> Self {
        Self { inner, changes }
    }

    fn changed(&self, auth_req_id: &str) {
        // The receiver lives as long as the local API; after shutdown nobody is left to notify.
        let _ = self.changes.send(auth_req_id.to_owned());
    }
}

#[async_trait]
impl Store for NotifyingStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        self.inner.put_client(client).await
    }
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.inner.get_client(client_id).await
    }
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.inner.put_user(user).await
    }
    async fn get_user(&self, sub: &str) -> Result<Option<User>, StoreError> {
        self.inner.get_user(sub).await
    }
    async fn find_user_by_hint(&self, hint: &str) -> Result<Option<User>, StoreError> {
        self.inner.find_user_by_hint(hint).await
    }
    async fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.inner.put_device(device).await
    }
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.inner.get_device(device_id).await
    }
    async fn put_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        self.inner.put_enrollment_code(code).await
    }
    async fn get_enrollment_code(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentCode>, StoreError> {
        self.inner.get_enrollment_code(hash, now).await
    }
    async fn enroll_device(
        &self,
        hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<(), EnrollError> {
        self.inner.enroll_device(hash, device, now).await
    }
    async fn list_devices(&self, sub: &str) -> Result<Vec<Device>, StoreError> {
        self.inner.list_devices(sub).await
    }
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        self.inner.use_jti(jti, now).await
    }
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), CreateError> {
        self.inner.create_auth_request(request, jti).await
    }
    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        self.inner.discard_auth_request(request, jti).await
    }
    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError> {
        self.inner.get_auth_request(auth_req_id).await
    }
    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        self.inner.get_auth_request_by_txn(txn).await
    }
    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError> {
        self.inner.record_poll(auth_req_id, now_ms).await
    }
    async fn decide(
        &self,
        auth_req_id: &str,
        decision: Decision,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        self.inner.decide(auth_req_id, decision, now, jti).await?;
        self.changed(auth_req_id);
        Ok(())
    }
    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        self.inner.redeem(auth_req_id, now, tokens).await
    }
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.get_token(hash).await
    }
    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let expired = self.inner.expire_due(now, lookback, limit).await?;
        for request in &expired {
            self.changed(&request.auth_req_id);
        }
        Ok(expired)
    }
    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        self.inner.mark_notified(auth_req_id, now).await
    }
    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError> {
        self.inner
            .rotate_refresh_token(hash, client_id, now, successors)
            .await
    }
}

/// Runs notifications in the background of the local API: one task per changed request, and a
/// sweep for due expiries every `sweep_every`.
pub struct LocalNotifier {
    notifier: Arc<Notifier>,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl LocalNotifier {
    /// Starts the worker reading `changes` (fed by a `NotifyingStore`) and the sweep ticker.
    pub fn spawn(
        notifier: Notifier,
        mut changes: mpsc::UnboundedReceiver<String>,
        sweep_every: Duration,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            notifier: Arc::new(notifier),
            dead_letters: Arc::default(),
        });
        let worker = this.clone();
        tokio::spawn(async move {
            while let Some(auth_req_id) = changes.recv().await {
                let worker = worker.clone();
                tokio::spawn(async move { worker.notify(&auth_req_id).await });
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

    /// Marks due requests expired now; the store reports them to the worker.
    pub async fn sweep(&self) {
        let ctx = &self.notifier.ctx;
        if let Err(e) = ctx
            .store
            .expire_due(ctx.clock.now(), SWEEP_LOOKBACK_SECS, SWEEP_BATCH)
            .await
        {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
    }

    async fn notify(&self, auth_req_id: &str) {
        let reason = match self.notifier.process(auth_req_id).await {
            Ok(Outcome::Delivered | Outcome::Skipped(_)) => return,
            Ok(Outcome::Failed(reason)) => reason,
            Err(e) => e.to_string(),
        };
        tracing::warn!(%reason, "notification parked in the dead-letter list");
        if let Ok(mut dead) = self.dead_letters.lock() {
            dead.push(DeadLetter {
                auth_req_id: auth_req_id.to_owned(),
                reason,
            });
        }
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}
