//! The reference model: what the documentation of the store's role traits says each call does,
//! on plain maps, one call at a time. Calls carry their arguments fully resolved (times, `jti`s,
//! token records), so the model and the store under test get exactly the same input.

use std::collections::{BTreeMap, BTreeSet};

use ciba_shared::domain::{
    AuthRequest, Decision, DeliveryMode, Family, Status, TokenKind, TokenRecord,
};
use ciba_shared::protocol::SLOW_DOWN_STEP_SECS;
use ciba_shared::store::{JtiUse, PollOutcome, SWEEP_BATCH};

/// One store call with all its arguments.
#[derive(Clone, Debug)]
pub enum Call {
    Create {
        request: AuthRequest,
        jti: Option<JtiUse>,
    },
    Discard {
        request: AuthRequest,
        jti: Option<JtiUse>,
    },
    Poll {
        id: String,
        now_ms: i64,
    },
    Decide {
        id: String,
        decision: Decision,
        now: i64,
        jti: JtiUse,
    },
    Redeem {
        id: String,
        now: i64,
        family: Family,
        tokens: Vec<TokenRecord>,
    },
    /// An expiry sweep of at most `SWEEP_BATCH` requests (more than a case creates).
    Sweep {
        now: i64,
        lookback: i64,
    },
    Rotate {
        hash: String,
        client_id: String,
        now: i64,
        family: Family,
        successors: Vec<TokenRecord>,
    },
    /// Discarding a request that was never created: there is nothing to pass the store.
    Nothing,
}

/// Why a decision was refused (`DecideError` without its store failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    JtiReplayed,
    AlreadyDecided,
    Expired,
}

/// What a call answered, in a form both the model and the store give.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Created,
    CreateReplayed,
    /// The id or `txn` was taken (a store fault: ids are random in production).
    CreateCollided,
    Discarded,
    Nothing,
    Polled(PollOutcome),
    Decided,
    DecideRefused(Refusal),
    Redeemed,
    NotRedeemable,
    /// The requests the sweep expired, by id.
    Swept(Vec<AuthRequest>),
    Rotated,
    RotateInvalid,
    RotateReused,
}

/// The store as its documentation describes it, and the history a case draws on.
#[derive(Clone, Debug, Default)]
pub struct Model {
    requests: BTreeMap<String, AuthRequest>,
    /// Pending-or-not ping and push requests not yet swept: (expires_at, id).
    due: BTreeSet<(i64, String)>,
    /// Used `jti`s by (scope, jti): until when.
    jtis: BTreeMap<(String, String), i64>,
    /// The (scope, jti) of the decision each decided request took.
    decision_jtis: BTreeMap<String, (String, String)>,
    tokens: BTreeMap<String, TokenRecord>,
    families: BTreeMap<String, Family>,
    /// The last successful creation of each id, with its request object `jti`.
    created: BTreeMap<String, (AuthRequest, Option<JtiUse>)>,
    /// Every refresh token ever stored, in order.
    refresh_tokens: Vec<TokenRecord>,
}

impl Model {
    pub fn request(&self, id: &str) -> Option<&AuthRequest> {
        self.requests.get(id)
    }

    pub fn request_by_txn(&self, txn: &str) -> Option<&AuthRequest> {
        self.requests.values().find(|r| r.txn == txn)
    }

    pub fn token(&self, hash: &str) -> Option<&TokenRecord> {
        self.tokens.get(hash)
    }

    pub fn family(&self, id: &str) -> Option<&Family> {
        self.families.get(id)
    }

    pub fn last_created(&self, id: &str) -> Option<&(AuthRequest, Option<JtiUse>)> {
        self.created.get(id)
    }

    /// The refresh tokens ever stored for request `id` (or any request), spent ones included,
    /// in order.
    pub fn refresh_tokens_of(&self, id: Option<&str>) -> Vec<&TokenRecord> {
        self.refresh_tokens
            .iter()
            .filter(|t| id.is_none_or(|id| t.auth_req_id == id))
            .collect()
    }

    /// Every token hash ever stored.
    pub fn token_hashes(&self) -> BTreeSet<String> {
        let mut hashes: BTreeSet<String> = self.tokens.keys().cloned().collect();
        hashes.extend(self.refresh_tokens.iter().map(|t| t.hash.clone()));
        hashes
    }

    pub fn apply(&mut self, call: &Call) -> Outcome {
        match call {
            Call::Create { request, jti } => self.create(request, jti.as_ref()),
            Call::Discard { request, jti } => {
                self.requests.remove(&request.auth_req_id);
                self.decision_jtis.remove(&request.auth_req_id);
                self.due
                    .remove(&(request.expires_at, request.auth_req_id.clone()));
                if let Some(jti) = jti {
                    self.jtis.remove(&(jti.scope.clone(), jti.jti.clone()));
                }
                Outcome::Discarded
            }
            Call::Poll { id, now_ms } => Outcome::Polled(self.poll(id, *now_ms)),
            Call::Decide {
                id,
                decision,
                now,
                jti,
            } => match self.decide(id, *decision, *now, jti) {
                Ok(()) => Outcome::Decided,
                Err(refusal) => Outcome::DecideRefused(refusal),
            },
            Call::Redeem {
                id,
                now,
                family,
                tokens,
            } => self.redeem(id, *now, family, tokens),
            Call::Sweep { now, lookback } => Outcome::Swept(self.sweep(*now, *lookback)),
            Call::Rotate {
                hash,
                client_id,
                now,
                family,
                successors,
            } => self.rotate(hash, client_id, *now, family, successors),
            Call::Nothing => Outcome::Nothing,
        }
    }

    fn jti_is_live(&self, jti: &JtiUse, now: i64) -> bool {
        self.jtis
            .get(&(jti.scope.clone(), jti.jti.clone()))
            .is_some_and(|&until| until >= now)
    }

    fn use_jti(&mut self, jti: &JtiUse) {
        self.jtis
            .insert((jti.scope.clone(), jti.jti.clone()), jti.expires_at);
    }

    /// `create_auth_request`: a live request object `jti` refuses first, then a taken id.
    fn create(&mut self, request: &AuthRequest, jti: Option<&JtiUse>) -> Outcome {
        if jti.is_some_and(|jti| self.jti_is_live(jti, request.created_at)) {
            return Outcome::CreateReplayed;
        }
        let id = &request.auth_req_id;
        if self.requests.contains_key(id) || self.request_by_txn(&request.txn).is_some() {
            return Outcome::CreateCollided;
        }
        if let Some(jti) = jti {
            self.use_jti(jti);
        }
        if request.delivery_mode != DeliveryMode::Poll {
            self.due.insert((request.expires_at, id.clone()));
        }
        self.requests.insert(id.clone(), request.clone());
        self.created
            .insert(id.clone(), (request.clone(), jti.cloned()));
        Outcome::Created
    }

    /// `record_poll`: sooner than `interval` after the previous poll grows the interval by
    /// `SLOW_DOWN_STEP_SECS`; every poll counts as the previous one for the next.
    fn poll(&mut self, id: &str, now_ms: i64) -> PollOutcome {
        let Some(request) = self.requests.get_mut(id) else {
            return PollOutcome::Gone;
        };
        let too_soon = request
            .last_poll_ms
            .is_some_and(|last| now_ms < last + request.interval * 1000);
        request.last_poll_ms = Some(now_ms);
        if too_soon {
            request.interval += SLOW_DOWN_STEP_SECS;
            PollOutcome::TooSoon {
                interval: request.interval,
            }
        } else {
            PollOutcome::InTime
        }
    }

    /// `decide`: refusals in the documented order `NotFound`, `JtiReplayed`, `AlreadyDecided`,
    /// `Expired`, where an expired request that was never decided is `Expired`.
    fn decide(
        &mut self,
        id: &str,
        decision: Decision,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), Refusal> {
        let used = (jti.scope.clone(), jti.jti.clone());
        let replayed = self.decision_jtis.get(id) == Some(&used);
        let request = self.requests.get_mut(id).ok_or(Refusal::NotFound)?;
        if replayed {
            return Err(Refusal::JtiReplayed);
        }
        match request.status {
            Status::Pending | Status::Expired if request.is_expired(now) => {
                return Err(Refusal::Expired);
            }
            Status::Pending => {}
            _ => return Err(Refusal::AlreadyDecided),
        }
        request.status = match decision {
            Decision::Approve => Status::Approved,
            Decision::Deny => Status::Denied,
        };
        request.decided_at = Some(now);
        self.decision_jtis.insert(id.to_owned(), used);
        Ok(())
    }

    /// `redeem`: an approved, unexpired request, once; its tokens and family are stored with it.
    fn redeem(&mut self, id: &str, now: i64, family: &Family, tokens: &[TokenRecord]) -> Outcome {
        match self.requests.get_mut(id) {
            Some(request) if request.status == Status::Approved && !request.is_expired(now) => {
                request.status = Status::Redeemed;
                self.families.insert(family.id.clone(), family.clone());
                self.store_tokens(tokens);
                Outcome::Redeemed
            }
            _ => Outcome::NotRedeemable,
        }
    }

    /// `expire_due`: every pending ping or push request that fell due in the `lookback` seconds
    /// up to `now` becomes `Expired`; each due entry is looked at once.
    fn sweep(&mut self, now: i64, lookback: i64) -> Vec<AuthRequest> {
        let due: Vec<(i64, String)> = self
            .due
            .iter()
            .filter(|(expires_at, _)| (now - lookback..=now).contains(expires_at))
            .cloned()
            .collect();
        assert!(due.len() <= SWEEP_BATCH, "a case stays within one batch");
        let mut expired = Vec::new();
        for entry in due {
            self.due.remove(&entry);
            if let Some(request) = self.requests.get_mut(&entry.1)
                && request.status == Status::Pending
            {
                request.status = Status::Expired;
                expired.push(request.clone());
            }
        }
        expired.sort_by(|a, b| a.auth_req_id.cmp(&b.auth_req_id));
        expired
    }

    /// `rotate_refresh_token`: an unexpired refresh token of this client is spent once (kept,
    /// marked rotated) while its family is live, and its successors stored beside it; a spent
    /// one presented again is reuse.
    fn rotate(
        &mut self,
        hash: &str,
        client_id: &str,
        now: i64,
        family: &Family,
        successors: &[TokenRecord],
    ) -> Outcome {
        let Some(spent) = self.tokens.get_mut(hash).filter(|t| {
            t.kind == TokenKind::Refresh && t.client_id == client_id && t.expires_at > now
        }) else {
            return Outcome::RotateInvalid;
        };
        if spent.rotated_at.is_some() {
            return Outcome::RotateReused;
        }
        let stored = self.families.get(&family.id);
        if stored.is_some_and(|f| !f.is_live(now)) || !family.is_live(now) {
            return Outcome::RotateInvalid;
        }
        spent.rotated_at = Some(now);
        self.families
            .entry(family.id.clone())
            .or_insert_with(|| family.clone());
        self.store_tokens(successors);
        Outcome::Rotated
    }

    fn store_tokens(&mut self, tokens: &[TokenRecord]) {
        for token in tokens {
            self.tokens.insert(token.hash.clone(), token.clone());
            if token.kind == TokenKind::Refresh {
                self.refresh_tokens.push(token.clone());
            }
        }
    }
}
