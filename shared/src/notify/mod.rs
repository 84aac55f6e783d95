//! Ping and push delivery (CIBA Core §10.2, §10.3, §12): when a ping or push request is decided
//! or expires, its client is called at its notification endpoint.
//!
//! In AWS the table's stream drives this: its consumer (`functions/notifier`) puts one message per
//! decided or expired request on the notification queue (`queue`), and the delivery function
//! (`functions/deliverer`) takes each off and makes one attempt (`deliver`). A failed attempt is
//! retried after a back-off that doubles (the message stays hidden meanwhile); one that keeps
//! failing, or fails for good, is parked whole in the dead-letter queue. One client's dead
//! endpoint so never delays another's notification. A scheduled sweep marks due requests expired
//! (`functions/expiry-sweeper`), so expiry is noticed within a minute. Locally the local API
//! runs the same `Notifier` in-process. Success is recorded on the request with a conditional
//! write, so a repeated message never notifies twice.

pub mod callback;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::context::Ctx;
use crate::domain::{AccessTokenFormat, AuthRequest, Client, DeliveryMode, Status};
use crate::error::{TokenError, error_body};
use crate::op_secret::Keys;
use crate::ports::SignerError;
use crate::protocol::{Standing, standing};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::tokens::{self, Binding, RedeemFailure, TokenResponse, TokenValues};

pub use callback::{CallbackError, CallbackSender, HttpCallbackSender};
pub use queue::{DeadLetter, Notification, NotificationQueue, QueueError, SqsNotificationQueue};

#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// Delivery attempts before the notification is parked.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for every further one.
    pub first_retry: Duration,
    /// The key push-mode token values are derived from (see `TokenValues::derived`); every
    /// notifier of one deployment must share it.
    pub push_token_key: Secret,
}

impl NotifierSettings {
    /// `NOTIFY_ATTEMPTS` (default 4) and `NOTIFY_FIRST_RETRY_MS` (default 1000), with the
    /// push-token key of the OP secret's `keys`.
    pub fn from_env(keys: &Keys) -> Result<Self, crate::config::ConfigError> {
        let err = |m: &str| crate::config::ConfigError(m.into());
        let number = |name: &str, default: u64| -> Result<u64, crate::config::ConfigError> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| err(&format!("{name} must be a positive integer"))),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            attempts: u32::try_from(number("NOTIFY_ATTEMPTS", 4)?).unwrap_or(4),
            first_retry: Duration::from_millis(number("NOTIFY_FIRST_RETRY_MS", 1000)?),
            push_token_key: keys.push_token.clone(),
        })
    }
}

impl NotifierSettings {
    /// The wait after failed attempt number `attempt` (1, 2, ...): `first_retry`, doubled for
    /// every attempt after the first, at most an hour.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.first_retry
            .saturating_mul(1 << doublings)
            .min(Duration::from_secs(3600))
    }
}

/// What became of one attempt at a request's notification.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Nothing to send: a poll client, a pending request, already notified, or gone.
    Skipped(&'static str),
    /// The endpoint failed in a way a later attempt may not (unreachable, 5xx, 429).
    Retry(String),
    /// The endpoint refused for good, or there is none: park it.
    Failed(String),
}

/// What the delivery function does with a message after one attempt.
#[derive(Debug, PartialEq)]
pub enum Disposition {
    /// Delivered, nothing to deliver, or parked: the message is done.
    Done,
    /// Deliver again later: the message stays, hidden for the back-off.
    Again,
}

pub struct Notifier {
    pub ctx: Ctx,
    pub callback: Arc<dyn CallbackSender>,
    pub settings: NotifierSettings,
}

impl Notifier {
    /// Notifies the client of request `auth_req_id` if its state calls for it.
    pub async fn process(&self, auth_req_id: &str) -> Result<Outcome, StoreError> {
        let Some(request) = self
            .ctx
            .store
            .requests()
            .get_auth_request(auth_req_id)
            .await?
        else {
            return Ok(Outcome::Skipped("request gone"));
        };
        if request.delivery_mode == DeliveryMode::Poll {
            return Ok(Outcome::Skipped("poll client"));
        }
        if request.notified_at.is_some() {
            return Ok(Outcome::Skipped("already notified"));
        }
        if request.status == Status::Pending {
            return Ok(Outcome::Skipped("not decided"));
        }
        let Some(client) = self
            .ctx
            .store
            .clients()
            .get_client(&request.client_id)
            .await?
        else {
            return Ok(Outcome::Failed("the client no longer exists".into()));
        };
        let (Some(endpoint), Some(bearer)) = (
            client.backchannel_client_notification_endpoint.as_deref(),
            request.client_notification_token.as_deref(),
        ) else {
            return Ok(Outcome::Failed("no notification endpoint or token".into()));
        };
        let Some(payload) = self.payload(&request, &client).await? else {
            return Ok(Outcome::Skipped("nothing to deliver"));
        };
        let outcome = self.attempt(endpoint, bearer, &payload).await;
        if outcome == Outcome::Delivered {
            self.ctx
                .store
                .requests()
                .mark_notified(auth_req_id, self.ctx.clock.now())
                .await?;
            tracing::info!(client_id = %client.client_id, mode = ?request.delivery_mode, "client notified");
        }
        Ok(outcome)
    }

    /// The body of the callback: `{"auth_req_id"}` for ping; for push the token response or the
    /// error, with `auth_req_id`.
    async fn payload(
        &self,
        request: &AuthRequest,
        client: &Client,
    ) -> Result<Option<Value>, StoreError> {
        let id = request.auth_req_id.as_str();
        if request.delivery_mode == DeliveryMode::Ping {
            return Ok(Some(json!({"auth_req_id": id})));
        }
        let now = self.ctx.clock.now();
        let answer = match standing(request, now) {
            Standing::Pending => return Ok(None),
            Standing::Refused(e) => Err(e),
            Standing::Approved | Standing::Redeemed => {
                self.push_tokens(request, client.access_token_format, now)
                    .await?
            }
        };
        let mut body = match answer {
            Ok(tokens) => serde_json::to_value(&tokens).unwrap_or_default(),
            Err(e) => error_body(&e),
        };
        body["auth_req_id"] = id.into();
        Ok(Some(body))
    }

    /// The push-mode token response. The values are derived from the request id, so the first
    /// attempt redeems the request with them and every later attempt sends the very same tokens.
    async fn push_tokens(
        &self,
        request: &AuthRequest,
        format: AccessTokenFormat,
        now: i64,
    ) -> Result<Result<TokenResponse, TokenError>, StoreError> {
        let values = || TokenValues::derived(&self.settings.push_token_key, &request.auth_req_id);
        let not_issued = |e: SignerError| {
            tracing::error!(error = %e, "push tokens could not be signed");
            TokenError::TransactionFailed("the tokens could not be issued".into())
        };
        let expired = || TokenError::ExpiredToken("the authentication request has expired".into());
        if request.status == Status::Approved {
            match tokens::redeem(
                &self.ctx,
                request,
                format,
                Binding::default(),
                values(),
                now,
            )
            .await
            {
                Ok(response) => return Ok(Ok(response)),
                Err(RedeemFailure::Store(e)) => return Err(e),
                Err(RedeemFailure::Signer(e)) => return Ok(Err(not_issued(e))),
                Err(RedeemFailure::NotRedeemable) => {
                    // Redeemed by an earlier attempt whose delivery failed: send the same tokens.
                    let current = self
                        .ctx
                        .store
                        .requests()
                        .get_auth_request(&request.auth_req_id)
                        .await?;
                    if !current.is_some_and(|r| r.status == Status::Redeemed) {
                        return Ok(Err(expired()));
                    }
                }
            }
        }
        Ok(tokens::mint_for_request(
            &self.ctx,
            request,
            format,
            Binding::default(),
            values(),
            now,
        )
        .await
        .map(|minted| minted.response)
        .map_err(not_issued))
    }

    async fn attempt(&self, endpoint: &str, bearer: &str, payload: &Value) -> Outcome {
        match self.callback.post(endpoint, bearer, payload).await {
            Ok(status) if (200..300).contains(&status) => Outcome::Delivered,
            Ok(status) if (300..400).contains(&status) => {
                Outcome::Failed(format!("answered {status}: redirects are not followed"))
            }
            Ok(status @ (408 | 425 | 429)) => Outcome::Retry(format!("answered {status}")),
            Ok(status) if (400..500).contains(&status) => {
                Outcome::Failed(format!("answered {status}"))
            }
            Ok(status) => Outcome::Retry(format!("answered {status}")),
            Err(CallbackError::Transport(e)) => Outcome::Retry(e),
            // Parked at once, its reason in the dead letter: DNS answers that fall outside the
            // policy rarely change within the minutes the retries span, and a redrive retries it
            // once they have.
            Err(CallbackError::Refused(e)) => Outcome::Failed(format!("not called: {e}")),
        }
    }

    /// One delivery attempt of a queued notification, received for the `attempt`th time (SQS's
    /// `ApproximateReceiveCount`): a failure is retried after the back-off until the attempts are
    /// spent, then parked with its reason, as is a failure for good.
    pub async fn deliver(
        &self,
        queue: &dyn NotificationQueue,
        notification: &Notification,
        receipt: &str,
        attempt: u32,
    ) -> Result<Disposition, QueueError> {
        let reason = match self.process(&notification.auth_req_id).await {
            Ok(Outcome::Delivered | Outcome::Skipped(_)) => return Ok(Disposition::Done),
            Ok(Outcome::Retry(reason)) if attempt < self.settings.attempts => {
                tracing::warn!(attempt, %reason, "notification attempt failed");
                queue
                    .retry_later(receipt, self.settings.backoff(attempt))
                    .await?;
                return Ok(Disposition::Again);
            }
            Ok(Outcome::Retry(reason)) => {
                format!("{attempt} attempts failed, the last {reason}")
            }
            Ok(Outcome::Failed(reason)) => reason,
            // The store itself failed: not the client's fault, try again like a 5xx.
            Err(e) if attempt < self.settings.attempts => {
                tracing::warn!(attempt, error = %e, "notification could not be prepared");
                queue
                    .retry_later(receipt, self.settings.backoff(attempt))
                    .await?;
                return Ok(Disposition::Again);
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(%reason, "notification parked in the dead-letter queue");
        queue.park(notification, &reason).await?;
        Ok(Disposition::Done)
    }
}
