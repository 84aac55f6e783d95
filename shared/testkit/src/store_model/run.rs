//! One case on a store: each step's operations become calls with concrete arguments, run alone
//! or at once, their answers checked by the rules, and the model advanced by an order of the
//! calls that explains both the answers and what the store then holds.

use std::sync::Arc;

use ciba_shared::domain::{AuthRequest, Decision, DeliveryMode, Family, TokenKind, TokenRecord};
use ciba_shared::store::{
    CreateError, DecideError, JtiUse, PendingLimit, RedeemError, RotateError, SWEEP_BATCH, Store,
    StoreError,
};
use tokio::sync::Barrier;

use super::holdings::{Holdings, Keys};
use super::model::{Call, Model, Outcome, Refusal};
use super::ops::{JTIS, JtiDraw, Op, REQUEST_IDS, Step};
use super::rules::Rules;
use crate::store_suite::request;

/// Where a case's clock starts, in epoch milliseconds.
const START_MS: i64 = 1_800_000_000_000;
/// How much further back than the start of the case a sweep looks. The DynamoDB adapter looks
/// at whole minutes, the in-memory one to the second: with a minute to spare both look at every
/// request the case made, and a sweep costs the DynamoDB adapter at most one query per minute
/// the case has run, not one per minute of `SWEEP_LOOKBACK_SECS`.
const SWEEP_MARGIN_SECS: i64 = 60;
/// How long issued access tokens last.
const ACCESS_TTL: i64 = 60;
/// Longer than any case runs: families stay live (their end is the token code's business).
const FAMILY_LIFETIME: i64 = 86_400;

/// The family a grant of request `id` at `now` starts.
fn family(id: &str, now: i64) -> Family {
    Family {
        id: id.into(),
        client_id: "c1".into(),
        sub: "alice".into(),
        expires_at: now + FAMILY_LIFETIME,
        revoked_at: None,
    }
}

/// A case under way: the store, the model of it, the rules' memory and the clock.
pub struct Case {
    store: Arc<dyn Store>,
    model: Model,
    rules: Rules,
    now_ms: i64,
    /// Numbers the tokens a case issues, so every hash is new.
    issued: u32,
}

impl Case {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            model: Model::default(),
            rules: Rules::default(),
            now_ms: START_MS,
            issued: 0,
        }
    }

    /// Runs one step; `Err` says which rule or expectation it broke.
    pub async fn step(&mut self, step: &Step) -> Result<(), String> {
        let calls: Vec<Call> = match step {
            Step::Advance { ms } => {
                self.now_ms += ms;
                return Ok(());
            }
            Step::Run(ops) => ops.iter().map(|op| self.call(op)).collect(),
        };
        let outcomes = self.perform(&calls).await?;
        self.rules.check(&calls, &outcomes)?;
        let mut keys = Keys::default();
        for call in &calls {
            keys.add(call);
        }
        let held = Holdings::read(&self.store, &keys).await?;
        let now = self.now_ms.div_euclid(1000);
        self.model = explain(&self.model, &calls, &outcomes, &keys, &held, now)?;
        Ok(())
    }

    /// Nothing lost, at the end of a case: every request id and every token ever issued is as
    /// the model has it.
    pub async fn finish(&self) -> Result<(), String> {
        let keys = Keys {
            requests: REQUEST_IDS.iter().map(|id| id.to_string()).collect(),
            tokens: self.model.token_hashes(),
        };
        let held = Holdings::read(&self.store, &keys).await?;
        Holdings::expected(&self.model, &keys).compare(&held, self.now_ms.div_euclid(1000))
    }

    /// The call `op` makes now, its arguments drawn from the model as it stands.
    fn call(&mut self, op: &Op) -> Call {
        let now = self.now_ms.div_euclid(1000);
        let id = |req: &usize| REQUEST_IDS[*req].to_string();
        let jti = |scope: &str, draw: &JtiDraw| JtiUse {
            scope: scope.into(),
            jti: JTIS[draw.index].into(),
            expires_at: now + draw.ttl,
        };
        match op {
            Op::Create {
                req,
                mode,
                ttl,
                interval,
                jti: draw,
            } => Call::Create {
                request: AuthRequest {
                    delivery_mode: *mode,
                    client_notification_token: (*mode != DeliveryMode::Poll).then(|| "cnt".into()),
                    created_at: now,
                    expires_at: now + ttl,
                    interval: *interval,
                    ..request(&id(req))
                },
                jti: draw.as_ref().map(|draw| jti("c1", draw)),
            },
            Op::Discard { req } => match self.model.last_created(&id(req)) {
                Some((request, jti)) => Call::Discard {
                    request: request.clone(),
                    jti: jti.clone(),
                },
                None => Call::Nothing,
            },
            Op::Poll { req } => Call::Poll {
                id: id(req),
                now_ms: self.now_ms,
            },
            Op::Decide {
                req,
                approve,
                jti: draw,
            } => Call::Decide {
                id: id(req),
                decision: if *approve {
                    Decision::Approve
                } else {
                    Decision::Deny
                },
                now,
                jti: jti("dev", draw),
            },
            Op::Redeem { req, refresh_ttl } => Call::Redeem {
                id: id(req),
                now,
                family: family(&id(req), now),
                tokens: self.tokens(&id(req), now, *refresh_ttl),
            },
            Op::Sweep => Call::Sweep {
                now,
                lookback: now - START_MS / 1000 + SWEEP_MARGIN_SECS,
            },
            Op::Rotate {
                req,
                pick,
                other_client,
                refresh_ttl,
            } => {
                let mut ours = self.model.refresh_tokens_of(Some(&id(req)));
                if ours.is_empty() {
                    ours = self.model.refresh_tokens_of(None);
                }
                // A refresh token belongs to the family of its own grant, whichever request the
                // step is about: the token code never rotates it under another.
                let (hash, grant) = match ours.len() {
                    0 => (format!("rt-none-of-{}", id(req)), id(req)),
                    n => (
                        ours[pick % n].hash.clone(),
                        ours[pick % n].auth_req_id.clone(),
                    ),
                };
                let family = self
                    .model
                    .family(&grant)
                    .cloned()
                    .unwrap_or_else(|| family(&grant, now));
                Call::Rotate {
                    hash,
                    client_id: if *other_client { "c2" } else { "c1" }.into(),
                    now,
                    family,
                    successors: self.tokens(&grant, now, *refresh_ttl),
                }
            }
        }
    }

    /// A new access token and a new refresh token (lasting `refresh_ttl`) for request `id`.
    fn tokens(&mut self, id: &str, now: i64, refresh_ttl: i64) -> Vec<TokenRecord> {
        self.issued += 1;
        let token = |prefix: &str, kind, ttl| TokenRecord {
            approval: None,
            hash: format!("{prefix}-{}", self.issued),
            kind,
            client_id: "c1".into(),
            sub: "alice".into(),
            scope: "openid".into(),
            auth_req_id: id.into(),
            auth_time: now,
            acr: None,
            issued_at: now,
            expires_at: now + ttl,
            rotated_at: None,
            jkt: None,
            x5t: None,
            authorization_details: None,
        };
        vec![
            token("at", TokenKind::Access, ACCESS_TTL),
            token("rt", TokenKind::Refresh, refresh_ttl),
        ]
    }

    /// Runs the calls, each on its own task, all released at once; answers in call order.
    async fn perform(&self, calls: &[Call]) -> Result<Vec<Outcome>, String> {
        let start = Arc::new(Barrier::new(calls.len()));
        let tasks: Vec<_> = calls
            .iter()
            .map(|call| {
                let (store, start, call) = (self.store.clone(), start.clone(), call.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    perform(store.as_ref(), &call).await
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for (task, call) in tasks.into_iter().zip(calls) {
            let outcome = task.await.map_err(|e| format!("{call:?} panicked: {e}"))?;
            outcomes.push(outcome.map_err(|e| format!("{call:?} failed: {e}"))?);
        }
        Ok(outcomes)
    }
}

/// The store's answer to `call`, or the failure of the store itself.
async fn perform(store: &dyn Store, call: &Call) -> Result<Outcome, StoreError> {
    let requests = store.requests();
    Ok(match call {
        Call::Create { request, jti } => {
            match requests
                .create_auth_request(request, jti.as_ref(), PendingLimit::NONE)
                .await
            {
                Ok(()) => Outcome::Created,
                Err(CreateError::JtiReplayed) => Outcome::CreateReplayed,
                Err(CreateError::Store(StoreError::Fault(_))) => Outcome::CreateCollided,
                Err(CreateError::Store(e)) => return Err(e),
                Err(CreateError::TooManyPending(crowded)) => {
                    return Err(StoreError::Fault(format!(
                        "refused without a limit: {crowded:?}"
                    )));
                }
            }
        }
        Call::Discard { request, jti } => {
            requests.discard_auth_request(request, jti.as_ref()).await?;
            Outcome::Discarded
        }
        Call::Poll { id, now_ms } => Outcome::Polled(requests.record_poll(id, *now_ms).await?),
        Call::Decide {
            id,
            decision,
            now,
            jti,
        } => match requests.decide(id, *decision, *now, jti).await {
            Ok(()) => Outcome::Decided,
            Err(DecideError::NotFound) => Outcome::DecideRefused(Refusal::NotFound),
            Err(DecideError::JtiReplayed) => Outcome::DecideRefused(Refusal::JtiReplayed),
            Err(DecideError::AlreadyDecided) => Outcome::DecideRefused(Refusal::AlreadyDecided),
            Err(DecideError::Expired) => Outcome::DecideRefused(Refusal::Expired),
            Err(DecideError::Store(e)) => return Err(e),
        },
        Call::Redeem {
            id,
            now,
            family,
            tokens,
        } => match requests.redeem(id, *now, family, tokens).await {
            Ok(()) => Outcome::Redeemed,
            Err(RedeemError::NotRedeemable) => Outcome::NotRedeemable,
            Err(RedeemError::Store(e)) => return Err(e),
        },
        Call::Sweep { now, lookback } => {
            let mut expired = requests.expire_due(*now, *lookback, SWEEP_BATCH).await?;
            expired.sort_by(|a, b| a.auth_req_id.cmp(&b.auth_req_id));
            Outcome::Swept(expired)
        }
        Call::Rotate {
            hash,
            client_id,
            now,
            family,
            successors,
        } => match store
            .tokens()
            .rotate_refresh_token(hash, client_id, *now, family, successors)
            .await
        {
            Ok(()) => Outcome::Rotated,
            Err(RotateError::Invalid) => Outcome::RotateInvalid,
            Err(RotateError::Reused) => Outcome::RotateReused,
            Err(RotateError::Store(e)) => return Err(e),
        },
        Call::Nothing => Outcome::Nothing,
    })
}

/// The model after `calls`, in the first order of them whose answers are `outcomes` and that
/// leaves under `keys` what the store holds; an error when no order does.
fn explain(
    model: &Model,
    calls: &[Call],
    outcomes: &[Outcome],
    keys: &Keys,
    held: &Holdings,
    now: i64,
) -> Result<Model, String> {
    let mut first_mismatch = None;
    for order in orders(calls.len()) {
        let mut next = model.clone();
        let mut answers: Vec<Option<Outcome>> = calls.iter().map(|_| None).collect();
        for &i in &order {
            answers[i] = Some(next.apply(&calls[i]));
        }
        let answers: Vec<Outcome> = answers.into_iter().flatten().collect();
        if answers != outcomes {
            continue;
        }
        match Holdings::expected(&next, keys).compare(held, now) {
            Ok(()) => return Ok(next),
            Err(mismatch) => {
                first_mismatch.get_or_insert(mismatch);
            }
        }
    }
    if let Some(mismatch) = first_mismatch {
        return Err(mismatch);
    }
    let mut next = model.clone();
    let predicted: Vec<Outcome> = calls.iter().map(|call| next.apply(call)).collect();
    Err(format!(
        "the store answered {outcomes:?}\nbut the model, in {}, answers {predicted:?}",
        if calls.len() == 1 {
            "the same state".to_string()
        } else {
            format!(
                "any of the {} orders of these calls, e.g. as listed,",
                orders(calls.len()).len()
            )
        }
    ))
}

/// Every order of `n` calls.
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in orders(n - 1) {
        for at in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}
