//! The in-memory store: the embedded default of the local API and the fast handler tests. One
//! mutex makes every operation atomic, which is what the DynamoDB adapter's conditional writes
//! give in AWS.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Accounts, Attempt, AttemptLimit, Clients, CreateError, DecideError, EnrollError, JtiUse, Jtis,
    PendingLimit, PollOutcome, RedeemError, Requests, RotateError, StoreError, Tokens,
};
use crate::domain::{
    AuthRequest, Client, Decision, DeliveryMode, Device, EnrollmentCode, Family, Status, TokenKind,
    TokenRecord, User, normalize_hint,
};
use crate::protocol::SLOW_DOWN_STEP_SECS;

#[derive(Default)]
struct Tables {
    clients: HashMap<String, Client>,
    users: HashMap<String, User>,
    hints: HashMap<String, String>,
    devices: HashMap<String, Device>,
    enrollment_codes: HashMap<String, EnrollmentCode>,
    jtis: HashMap<(String, String), i64>,
    requests: HashMap<String, AuthRequest>,
    /// The (scope, jti) of the decision each decided request took.
    decision_jtis: HashMap<String, (String, String)>,
    txns: HashMap<String, String>,
    /// Pending ping and push requests, for the expiry sweep.
    due: std::collections::BTreeSet<(i64, String)>,
    tokens: HashMap<String, TokenRecord>,
    families: HashMap<String, Family>,
    /// The ids of each user's requests that were pending when last counted.
    pending: HashMap<String, Vec<String>>,
    /// Each user's counted `user_code` attempts and the end of their window.
    attempts: HashMap<String, (u32, i64)>,
}

impl Tables {
    /// The user's pending requests: `(from client_id, in total)`, forgetting the others.
    fn count_pending(&mut self, sub: &str, client_id: &str, now: i64) -> (usize, usize) {
        let Some(ids) = self.pending.get_mut(sub) else {
            return (0, 0);
        };
        let requests = &self.requests;
        ids.retain(|id| {
            requests
                .get(id)
                .is_some_and(|r| r.status == Status::Pending && !r.is_expired(now))
        });
        let from_client = ids
            .iter()
            .filter(|id| requests.get(*id).is_some_and(|r| r.client_id == client_id))
            .count();
        (from_client, ids.len())
    }
}

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::Fault("memory store lock poisoned".into()))
    }
}

fn jti_is_live(t: &Tables, jti: &JtiUse, now: i64) -> bool {
    t.jtis
        .get(&(jti.scope.clone(), jti.jti.clone()))
        .is_some_and(|&expires_at| expires_at >= now)
}

fn insert_jti(t: &mut Tables, jti: &JtiUse) {
    t.jtis
        .insert((jti.scope.clone(), jti.jti.clone()), jti.expires_at);
}

crate::store::plays_every_role!(MemoryStore);

#[async_trait]
impl Requests for MemoryStore {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError> {
        let mut t = self.lock()?;
        if let Some(jti) = jti
            && jti_is_live(&t, jti, request.created_at)
        {
            return Err(CreateError::JtiReplayed);
        }
        let (from_client, total) =
            t.count_pending(&request.sub, &request.client_id, request.created_at);
        if let Some(crowded) = limit.crowded(from_client, total) {
            return Err(CreateError::TooManyPending(crowded));
        }
        if t.requests.contains_key(&request.auth_req_id) || t.txns.contains_key(&request.txn) {
            return Err(CreateError::Store(StoreError::Fault(
                "auth_req_id or txn collision".into(),
            )));
        }
        if let Some(jti) = jti {
            insert_jti(&mut t, jti);
        }
        t.txns
            .insert(request.txn.clone(), request.auth_req_id.clone());
        if request.delivery_mode != DeliveryMode::Poll {
            t.due
                .insert((request.expires_at, request.auth_req_id.clone()));
        }
        t.pending
            .entry(request.sub.clone())
            .or_default()
            .push(request.auth_req_id.clone());
        t.requests
            .insert(request.auth_req_id.clone(), request.clone());
        Ok(())
    }

    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        t.requests.remove(&request.auth_req_id);
        t.txns.remove(&request.txn);
        t.due
            .remove(&(request.expires_at, request.auth_req_id.clone()));
        if let Some(jti) = jti {
            t.jtis.remove(&(jti.scope.clone(), jti.jti.clone()));
        }
        Ok(())
    }

    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError> {
        Ok(self.lock()?.requests.get(auth_req_id).cloned())
    }

    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        let t = self.lock()?;
        Ok(t.txns.get(txn).and_then(|id| t.requests.get(id)).cloned())
    }

    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError> {
        let mut t = self.lock()?;
        let Some(request) = t.requests.get_mut(auth_req_id) else {
            return Ok(PollOutcome::Gone);
        };
        let too_soon = request
            .last_poll_ms
            .is_some_and(|last| now_ms < last + request.interval * 1000);
        request.last_poll_ms = Some(now_ms);
        if too_soon {
            request.interval += SLOW_DOWN_STEP_SECS;
            return Ok(PollOutcome::TooSoon {
                interval: request.interval,
            });
        }
        Ok(PollOutcome::InTime)
    }

    async fn decide(
        &self,
        auth_req_id: &str,
        decision: Decision,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        let mut t = self.lock()?;
        let used = (jti.scope.clone(), jti.jti.clone());
        let replayed = t.decision_jtis.get(auth_req_id) == Some(&used);
        let Some(request) = t.requests.get_mut(auth_req_id) else {
            return Err(DecideError::NotFound);
        };
        if replayed {
            return Err(DecideError::JtiReplayed);
        }
        if request.is_expired(now) && matches!(request.status, Status::Pending | Status::Expired) {
            return Err(DecideError::Expired);
        }
        if request.status != Status::Pending {
            return Err(DecideError::AlreadyDecided);
        }
        request.status = match decision {
            Decision::Approve => Status::Approved,
            Decision::Deny => Status::Denied,
        };
        request.decided_at = Some(now);
        t.decision_jtis.insert(auth_req_id.to_owned(), used);
        Ok(())
    }

    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError> {
        let mut t = self.lock()?;
        let Some(request) = t.requests.get_mut(auth_req_id) else {
            return Err(RedeemError::NotRedeemable);
        };
        if request.status != Status::Approved || request.is_expired(now) {
            return Err(RedeemError::NotRedeemable);
        }
        request.status = Status::Redeemed;
        t.families.insert(family.id.clone(), family.clone());
        for token in tokens {
            t.tokens.insert(token.hash.clone(), token.clone());
        }
        Ok(())
    }

    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let mut t = self.lock()?;
        let due: Vec<(i64, String)> = t
            .due
            .range((now - lookback, String::new())..)
            .take_while(|(expires_at, _)| *expires_at <= now)
            .take(limit)
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for entry in due {
            t.due.remove(&entry);
            if let Some(request) = t.requests.get_mut(&entry.1)
                && request.status == Status::Pending
            {
                request.status = Status::Expired;
                expired.push(request.clone());
            }
        }
        Ok(expired)
    }

    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        match t.requests.get_mut(auth_req_id) {
            Some(request) if request.notified_at.is_none() => {
                request.notified_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl Tokens for MemoryStore {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock()?.tokens.get(hash).cloned())
    }

    async fn get_family(&self, id: &str) -> Result<Option<Family>, StoreError> {
        Ok(self.lock()?.families.get(id).cloned())
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        family: &Family,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError> {
        let mut t = self.lock()?;
        let Some(spent) = t.tokens.get(hash).filter(|r| {
            r.kind == TokenKind::Refresh && r.client_id == client_id && r.expires_at > now
        }) else {
            return Err(RotateError::Invalid);
        };
        if spent.rotated_at.is_some() {
            return Err(RotateError::Reused);
        }
        if t.families.get(&family.id).is_some_and(|f| !f.is_live(now)) || !family.is_live(now) {
            return Err(RotateError::Invalid);
        }
        t.families
            .entry(family.id.clone())
            .or_insert_with(|| family.clone());
        if let Some(spent) = t.tokens.get_mut(hash) {
            spent.rotated_at = Some(now);
        }
        for token in successors {
            t.tokens.insert(token.hash.clone(), token.clone());
        }
        Ok(())
    }

    async fn revoke_family(&self, family: &Family, now: i64) -> Result<(), StoreError> {
        self.lock()?
            .families
            .entry(family.id.clone())
            .or_insert_with(|| family.clone())
            .revoked_at
            .get_or_insert(now);
        Ok(())
    }

    async fn revoke_access_token(&self, hash: &str) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if t.tokens
            .get(hash)
            .is_some_and(|r| r.kind == TokenKind::Access)
        {
            t.tokens.remove(hash);
        }
        Ok(())
    }
}

#[async_trait]
impl Clients for MemoryStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        self.lock()?
            .clients
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self.lock()?.clients.get(client_id).cloned())
    }

    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        use std::collections::hash_map::Entry;
        match self.lock()?.clients.entry(client.client_id.clone()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(client.clone());
                Ok(true)
            }
        }
    }
}

#[async_trait]
impl Accounts for MemoryStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        for hint in &user.login_hints {
            t.hints.insert(normalize_hint(hint), user.sub.clone());
        }
        t.users.insert(user.sub.clone(), user.clone());
        Ok(())
    }

    async fn get_user(&self, sub: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock()?.users.get(sub).cloned())
    }

    async fn find_user_by_hint(&self, hint: &str) -> Result<Option<User>, StoreError> {
        let t = self.lock()?;
        Ok(t.hints
            .get(&normalize_hint(hint))
            .and_then(|sub| t.users.get(sub))
            .cloned())
    }

    async fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.lock()?
            .devices
            .insert(device.device_id.clone(), device.clone());
        Ok(())
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        Ok(self.lock()?.devices.get(device_id).cloned())
    }

    async fn disable_device(&self, read: &Device) -> Result<bool, StoreError> {
        match self.lock()?.devices.get_mut(&read.device_id) {
            Some(device) if device == read => {
                device.enabled = false;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn put_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        self.lock()?
            .enrollment_codes
            .insert(code.code_hash.clone(), code.clone());
        Ok(())
    }

    async fn get_enrollment_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentCode>, StoreError> {
        Ok(self
            .lock()?
            .enrollment_codes
            .get(code_hash)
            .filter(|c| c.expires_at > now)
            .cloned())
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<(), EnrollError> {
        let mut t = self.lock()?;
        let valid = t
            .enrollment_codes
            .get(code_hash)
            .is_some_and(|c| c.expires_at > now && c.sub == device.sub);
        if !valid {
            return Err(EnrollError::InvalidCode);
        }
        t.enrollment_codes.remove(code_hash);
        t.devices.insert(device.device_id.clone(), device.clone());
        Ok(())
    }

    async fn list_devices(&self, sub: &str) -> Result<Vec<Device>, StoreError> {
        let mut devices: Vec<Device> = self
            .lock()?
            .devices
            .values()
            .filter(|d| d.sub == sub)
            .cloned()
            .collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(devices)
    }

    async fn begin_user_code_attempt(
        &self,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<Attempt, StoreError> {
        let mut t = self.lock()?;
        let (count, until) = t.attempts.entry(sub.to_owned()).or_insert((0, now));
        if *until <= now {
            (*count, *until) = (0, now + limit.window);
        }
        if *count >= limit.max {
            return Ok(Attempt::Locked { until: *until });
        }
        *count += 1;
        Ok(Attempt::Granted)
    }

    async fn clear_user_code_attempts(&self, sub: &str) -> Result<(), StoreError> {
        self.lock()?.attempts.remove(sub);
        Ok(())
    }
}

#[async_trait]
impl Jtis for MemoryStore {
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        if jti_is_live(&t, jti, now) {
            return Ok(false);
        }
        insert_jti(&mut t, jti);
        Ok(true)
    }
}
