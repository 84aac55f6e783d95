//! The in-memory store: the embedded default of the local API and the fast handler tests. One
//! mutex makes every operation atomic, which is what the DynamoDB adapter's conditional writes
//! give in AWS. Expired entries leave as DynamoDB's TTL deletes them, but on time, a few at each
//! write (`expiry`), so the local API's memory follows what is live, not what was ever stored.

mod expiry;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Accounts, Attempt, AttemptLimit, Clients, CreateError, DecideError, EnrollError, JtiUse, Jtis,
    PendingLimit, PollOutcome, RedeemError, Requests, RotateError, StoreError, Tokens,
};
use crate::domain::{
    AuthRequest, Client, Decision, DeliveryMode, Device, EnrollmentCode, Evidence, Family, Status,
    TokenKind, TokenRecord, User, normalize_hint,
};
use crate::protocol::SLOW_DOWN_STEP_SECS;
use expiry::{Expiring, Expiry, Pending};

/// How long an auth request and its txn outlive the request's expiry, as in the DynamoDB table:
/// meanwhile the token and decision endpoints answer that it expired rather than that it is
/// unknown.
pub const DEFAULT_REQUEST_RETENTION_SECS: i64 = 86_400;

#[derive(Default)]
struct Tables {
    clients: HashMap<String, Client>,
    users: HashMap<String, User>,
    hints: HashMap<String, String>,
    devices: HashMap<String, Device>,
    enrollment_codes: HashMap<String, EnrollmentCode>,
    jtis: HashMap<(String, String), i64>,
    /// Boxed: the table's slots stay small, and it grows (doubling) by pointers, not requests.
    requests: HashMap<String, Box<AuthRequest>>,
    /// The (scope, jti) of the decision each decided request took.
    decision_jtis: HashMap<String, (String, String)>,
    txns: HashMap<String, String>,
    /// Pending ping and push requests, for the expiry sweep.
    due: std::collections::BTreeSet<(i64, String)>,
    tokens: HashMap<String, TokenRecord>,
    families: HashMap<String, Family>,
    /// Each user's pending requests.
    pending: HashMap<String, Pending>,
    /// Each client's counted `user_code` attempts for a user (`attempts_key`) and the end of
    /// their window.
    attempts: HashMap<String, (u32, i64)>,
    expiry: Expiry,
    request_retention: i64,
}

impl Tables {
    /// The user's pending requests: `(from client_id, in total)`.
    fn count_pending(&mut self, sub: &str, client_id: &str, now: i64) -> (usize, usize) {
        self.pending
            .get_mut(sub)
            .map_or((0, 0), |pending| pending.count(client_id, now))
    }

    /// The request stopped being pending.
    fn not_pending(&mut self, request: &AuthRequest) {
        if let Some(pending) = self.pending.get_mut(&request.sub) {
            pending.remove(request.expires_at, &request.auth_req_id);
            if pending.is_empty() {
                self.pending.remove(&request.sub);
            }
        }
    }
}

pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_request_retention(DEFAULT_REQUEST_RETENTION_SECS)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose auth requests leave `seconds` after they expire (the other entries leave
    /// when they expire, as in DynamoDB).
    pub fn with_request_retention(seconds: i64) -> Self {
        let tables = Tables {
            request_retention: seconds,
            ..Tables::default()
        };
        Self {
            tables: Mutex::new(tables),
        }
    }

    /// How many entries the store holds, of every kind, and their expiry times: what the tests
    /// read to see expired entries leave.
    pub fn len(&self) -> usize {
        self.lock().map_or(0, |t| {
            t.clients.len()
                + t.users.len()
                + t.hints.len()
                + t.devices.len()
                + t.enrollment_codes.len()
                + t.jtis.len()
                + t.requests.len()
                + t.decision_jtis.len()
                + t.txns.len()
                + t.due.len()
                + t.tokens.len()
                + t.families.len()
                + t.pending.len()
                + t.attempts.len()
                + t.expiry.len()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tables once the entries expired at `now` are forgotten: every write goes through here.
    fn lock_at(&self, now: i64) -> Result<MutexGuard<'_, Tables>, StoreError> {
        let mut tables = self.lock()?;
        tables.forget_expired(now);
        Ok(tables)
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

crate::store::plays_every_role!(MemoryStore);

#[async_trait]
impl Requests for MemoryStore {
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError> {
        let mut t = self.lock_at(request.created_at)?;
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
            t.insert_jti(jti);
        }
        t.txns
            .insert(request.txn.clone(), request.auth_req_id.clone());
        if request.delivery_mode != DeliveryMode::Poll {
            t.due
                .insert((request.expires_at, request.auth_req_id.clone()));
        }
        t.pending.entry(request.sub.clone()).or_default().add(
            request.expires_at,
            &request.auth_req_id,
            &request.client_id,
        );
        let leaves = request.expires_at + t.request_retention;
        t.expiry
            .at(leaves, Expiring::Request(request.auth_req_id.clone()));
        t.requests
            .insert(request.auth_req_id.clone(), Box::new(request.clone()));
        Ok(())
    }

    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if let Some(stored) = t.requests.remove(&request.auth_req_id) {
            t.not_pending(&stored);
        }
        t.decision_jtis.remove(&request.auth_req_id);
        t.txns.remove(&request.txn);
        t.due
            .remove(&(request.expires_at, request.auth_req_id.clone()));
        if let Some(jti) = jti {
            t.jtis.remove(&(jti.scope.clone(), jti.jti.clone()));
        }
        Ok(())
    }

    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError> {
        Ok(self
            .lock()?
            .requests
            .get(auth_req_id)
            .map(|r| (**r).clone()))
    }

    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError> {
        let t = self.lock()?;
        Ok(t.txns
            .get(txn)
            .and_then(|id| t.requests.get(id))
            .map(|r| (**r).clone()))
    }

    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError> {
        let mut t = self.lock_at(now_ms.div_euclid(1000))?;
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

    async fn decide_with(
        &self,
        auth_req_id: &str,
        decision: Decision,
        evidence: Option<&Evidence>,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        let mut t = self.lock_at(now)?;
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
        request.evidence = evidence.cloned();
        let decided = request.clone();
        t.not_pending(&decided);
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
        let mut t = self.lock_at(now)?;
        let Some(request) = t.requests.get_mut(auth_req_id) else {
            return Err(RedeemError::NotRedeemable);
        };
        if request.status != Status::Approved || request.is_expired(now) {
            return Err(RedeemError::NotRedeemable);
        }
        request.status = Status::Redeemed;
        t.insert_family(family);
        for token in tokens {
            t.insert_token(token);
        }
        Ok(())
    }

    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError> {
        let mut t = self.lock_at(now)?;
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
                let request = (**request).clone();
                t.not_pending(&request);
                expired.push(request);
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
        let mut t = self.lock_at(now)?;
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
        if !t.families.contains_key(&family.id) {
            t.insert_family(family);
        }
        if let Some(spent) = t.tokens.get_mut(hash) {
            spent.rotated_at = Some(now);
        }
        for token in successors {
            t.insert_token(token);
        }
        Ok(())
    }

    async fn revoke_family(&self, family: &Family, now: i64) -> Result<(), StoreError> {
        let mut t = self.lock_at(now)?;
        if !t.families.contains_key(&family.id) {
            t.insert_family(family);
        }
        if let Some(stored) = t.families.get_mut(&family.id) {
            stored.revoked_at.get_or_insert(now);
        }
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
        let mut t = self.lock()?;
        t.enrollment_codes
            .insert(code.code_hash.clone(), code.clone());
        t.expiry.at(
            code.expires_at,
            Expiring::EnrollmentCode(code.code_hash.clone()),
        );
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
        let mut t = self.lock_at(now)?;
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
        client_id: &str,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<Attempt, StoreError> {
        let mut t = self.lock_at(now)?;
        let t = &mut *t;
        let counted = attempts_key(client_id, sub);
        let (count, until) = t.attempts.entry(counted.clone()).or_insert((0, now));
        if *until <= now {
            (*count, *until) = (0, now + limit.window);
            t.expiry.at(*until, Expiring::Attempts(counted));
        }
        if *count >= limit.max {
            return Ok(Attempt::Locked { until: *until });
        }
        *count += 1;
        Ok(Attempt::Granted)
    }

    async fn clear_user_code_attempts(&self, client_id: &str, sub: &str) -> Result<(), StoreError> {
        self.lock()?.attempts.remove(&attempts_key(client_id, sub));
        Ok(())
    }
}

#[async_trait]
impl Jtis for MemoryStore {
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError> {
        let mut t = self.lock_at(now)?;
        if jti_is_live(&t, jti, now) {
            return Ok(false);
        }
        t.insert_jti(jti);
        Ok(true)
    }
}

/// Where one client's `user_code` attempts for one user are counted (NUL never occurs in ids).
fn attempts_key(client_id: &str, sub: &str) -> String {
    format!("{sub}\u{0}{client_id}")
}
