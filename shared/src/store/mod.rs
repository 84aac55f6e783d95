//! The store port: one small trait per role (`Requests`, `Tokens`, `Clients`, `Accounts`,
//! `Jtis`) and `Store`, which hands each of them out, with two adapters (DynamoDB and in-memory)
//! that pass the same test suite (`ciba_testkit::store_suite`).
//!
//! Every state change that must not race is decided by one atomic conditional write here: the
//! poll-rate check, the one decision per request, the one-time redemption, single use of a
//! `jti`, the pending-request limit. Other writes of the same step are ordered around it so that
//! a step cut short leaves nothing anyone can use.

use async_trait::async_trait;

use crate::domain::{
    AuthRequest, Client, Decision, Device, EnrollmentCode, Evidence, Family, TokenRecord, User,
};

pub mod dynamodb;
pub mod memory;

pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;

/// A failure of the storage backend itself, never of the caller's input.
#[derive(Debug)]
pub enum StoreError {
    /// Throttled or unreachable: the caller may retry (503 with `Retry-After`).
    Unavailable(String),
    /// Anything else: a bug or a corrupt item (500).
    Fault(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Fault(m) => write!(f, "store fault: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A `jti` to be used exactly once within its scope (a client's request objects and
/// assertions, a device's decisions) until `expires_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct JtiUse {
    pub scope: String,
    pub jti: String,
    /// Epoch seconds after which the `jti` could not be accepted anyway (the JWT's `exp`).
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum CreateError {
    JtiReplayed,
    /// The user already has as many pending requests as `PendingLimit` allows.
    TooManyPending(Crowded),
    Store(StoreError),
}

/// The most pending requests (neither decided nor expired) one user may have from one client
/// and from all clients together: what bounds the prompts a flood of requests can put on a
/// user's phone ("MFA fatigue").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimit {
    pub per_client: u32,
    pub per_user: u32,
}

/// Which bound of `PendingLimit` a new request would cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crowded {
    /// The user has `per_client` pending requests from this client.
    ByClient,
    /// The user has `per_user` pending requests from all clients together.
    ByUser,
}

impl PendingLimit {
    /// No limit: for tests of everything else.
    pub const NONE: PendingLimit = PendingLimit {
        per_client: u32::MAX,
        per_user: u32::MAX,
    };

    /// Whether a request from a client with `from_client` of the user's `total` pending requests
    /// would cross a bound.
    pub fn crowded(&self, from_client: usize, total: usize) -> Option<Crowded> {
        let reached = |count: usize, max: u32| u32::try_from(count).map_or(true, |c| c >= max);
        if reached(from_client, self.per_client) {
            Some(Crowded::ByClient)
        } else if reached(total, self.per_user) {
            Some(Crowded::ByUser)
        } else {
            None
        }
    }
}

/// How many `user_code` attempts one user may make: `max` within `window` seconds of the first;
/// after those, every attempt is refused until the window ends. A correct code clears the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptLimit {
    pub max: u32,
    pub window: i64,
}

/// The answer to asking for a `user_code` attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Counted: the code may be checked.
    Granted,
    /// The user's attempts are used up until `until` (epoch seconds).
    Locked { until: i64 },
}

/// The outcome of recording a poll against the request's interval.
#[derive(Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// Polled no sooner than `interval` after the previous poll.
    InTime,
    /// Polled too soon: the request's interval is now `interval` seconds (one
    /// `protocol::SLOW_DOWN_STEP_SECS` more than before).
    TooSoon { interval: i64 },
    /// The request no longer exists.
    Gone,
}

#[derive(Debug)]
pub enum DecideError {
    NotFound,
    /// Decided before: the first decision stands.
    AlreadyDecided,
    Expired,
    JtiReplayed,
    Store(StoreError),
}

#[derive(Debug)]
pub enum EnrollError {
    /// Unknown, used, expired, or issued for another user.
    InvalidCode,
    Store(StoreError),
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        EnrollError::Store(e)
    }
}

#[derive(Debug)]
pub enum RotateError {
    /// Unknown, expired, or another client's refresh token, or its family is revoked or over.
    Invalid,
    /// The refresh token was rotated before: whoever presents it again holds a copy that
    /// should no longer exist (RFC 9700 §4.14.2).
    Reused,
    Store(StoreError),
}

impl From<StoreError> for RotateError {
    fn from(e: StoreError) -> Self {
        RotateError::Store(e)
    }
}

#[derive(Debug)]
pub enum RedeemError {
    /// Unknown, not approved, expired, or already redeemed.
    NotRedeemable,
    Store(StoreError),
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        CreateError::Store(e)
    }
}

impl From<StoreError> for DecideError {
    fn from(e: StoreError) -> Self {
        DecideError::Store(e)
    }
}

impl From<StoreError> for RedeemError {
    fn from(e: StoreError) -> Self {
        RedeemError::Store(e)
    }
}

/// How far back an expiry sweep looks for requests that expired unnoticed (the `lookback` of
/// `Requests::expire_due`), in the deployed sweeper and the local API alike: a day, as long as
/// an expired request is kept, so a sweeper that was down for hours still tells every client.
/// The DynamoDB adapter keeps where its last complete sweep ended, so a sweep reads only the
/// minutes since.
pub const SWEEP_LOOKBACK_SECS: i64 = 86_400;
/// Requests one expiry sweep pass expires at most (the `limit` of `Requests::expire_due`).
pub const SWEEP_BATCH: usize = 100;

/// Authentication requests: creation, the poll-rate check, the one decision, redemption, the
/// expiry sweep and the notification mark.
#[async_trait]
pub trait Requests: Send + Sync {
    /// Stores a new request, consuming the request object's `jti` first. A ping or push request
    /// is also filed under its expiry, for `expire_due`.
    ///
    /// The request is refused (`TooManyPending`) when its user already has as many pending
    /// requests as `limit` allows, counted atomically: concurrent requests cannot all slip under
    /// the limit. A refused or failed creation takes back what it wrote (the `jti` included).
    /// A request stops being pending when it is decided, discarded or expired.
    async fn create_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
        limit: PendingLimit,
    ) -> Result<(), CreateError>;

    /// Removes a request that could not be delivered to any device, with its `txn` and the
    /// request object's `jti`, so the client may send the same request again.
    async fn discard_auth_request(
        &self,
        request: &AuthRequest,
        jti: Option<&JtiUse>,
    ) -> Result<(), StoreError>;

    async fn get_auth_request(&self, auth_req_id: &str) -> Result<Option<AuthRequest>, StoreError>;

    /// The request as a poll sees it: possibly a moment old (an adapter may read it for less),
    /// never newer. Only for the token endpoint, where every change a poll makes is decided by
    /// a conditional write and a stale `pending` costs the client one more poll.
    async fn get_auth_request_for_poll(
        &self,
        auth_req_id: &str,
    ) -> Result<Option<AuthRequest>, StoreError> {
        self.get_auth_request(auth_req_id).await
    }

    async fn get_auth_request_by_txn(&self, txn: &str) -> Result<Option<AuthRequest>, StoreError>;

    /// Records a poll at `now_ms`. A poll sooner than `interval` after the previous one grows the
    /// interval by `protocol::SLOW_DOWN_STEP_SECS`, atomically, so concurrent pollers cannot all
    /// slip through.
    async fn record_poll(&self, auth_req_id: &str, now_ms: i64) -> Result<PollOutcome, StoreError>;

    /// Records the user's one decision on a pending, unexpired request, with the decision's
    /// `jti`: a decision names its request (its `txn`), so the jti is the request's, and the
    /// same decision sent again is `JtiReplayed`. When several things are wrong, the first of
    /// `NotFound`, `JtiReplayed`, `AlreadyDecided`, `Expired` answers: a replayed decision is a
    /// replay even when the request has been decided since.
    async fn decide(
        &self,
        auth_req_id: &str,
        decision: Decision,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError> {
        self.decide_with(auth_req_id, decision, None, now, jti)
            .await
    }

    /// `decide`, keeping `evidence` (the device's signed decision) on the request in the same
    /// write.
    async fn decide_with(
        &self,
        auth_req_id: &str,
        decision: Decision,
        evidence: Option<&Evidence>,
        now: i64,
        jti: &JtiUse,
    ) -> Result<(), DecideError>;

    /// Marks an approved, unexpired request redeemed and stores its tokens and their new
    /// `family`: exactly one caller ever succeeds for a request, and the tokens of a caller that
    /// did not are never found.
    async fn redeem(
        &self,
        auth_req_id: &str,
        now: i64,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> Result<(), RedeemError>;

    /// Marks `expired` every pending ping or push request whose expiry has passed by `now` (at
    /// most `limit` of them), so their clients can be told; answers the requests it marked.
    /// Requests that expired more than `lookback` seconds ago are no longer looked for.
    async fn expire_due(
        &self,
        now: i64,
        lookback: i64,
        limit: usize,
    ) -> Result<Vec<AuthRequest>, StoreError>;

    /// Records that the client was notified of the request's outcome; `false` when it already was.
    async fn mark_notified(&self, auth_req_id: &str, now: i64) -> Result<bool, StoreError>;
}

/// Issued access and refresh tokens, by hash, and the families they belong to.
#[async_trait]
pub trait Tokens: Send + Sync {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    async fn get_family(&self, id: &str) -> Result<Option<Family>, StoreError>;

    /// Spends the unexpired, unspent refresh token `hash` of `client_id` (marks it rotated at
    /// `now`, keeping it to recognise reuse) and stores its successors, in one atomic write
    /// that also requires `family` to be live; a family that has no item yet (tokens issued
    /// before families existed) gets `family` as its item. A refresh token is used at most
    /// once: `Reused` when it was spent before.
    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        family: &Family,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError>;

    /// Revokes `family` at `now`, with every token in it; an earlier revocation stands. A
    /// family that has no item yet gets `family` as its item, revoked.
    async fn revoke_family(&self, family: &Family, now: i64) -> Result<(), StoreError>;

    /// Forgets the access token `hash` (revocation of that one token); nothing for any other.
    async fn revoke_access_token(&self, hash: &str) -> Result<(), StoreError>;
}

/// Registered clients.
#[async_trait]
pub trait Clients: Send + Sync {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError>;

    /// Stores a client under an id an operator chose, only if no client has it: `false`, and
    /// nothing written, when it is taken. Overwriting would replace another client's secret
    /// and metadata, and with them what that client may do.
    async fn create_client(&self, client: &Client) -> Result<bool, StoreError>;

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
}

/// Users, their devices and the enrolment codes that bind a device to a user.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Stores the user and makes each of its login hints find it.
    async fn put_user(&self, user: &User) -> Result<(), StoreError>;

    async fn get_user(&self, sub: &str) -> Result<Option<User>, StoreError>;

    /// The user a login hint names (compared after `domain::normalize_hint`).
    async fn find_user_by_hint(&self, hint: &str) -> Result<Option<User>, StoreError>;

    async fn put_device(&self, device: &Device) -> Result<(), StoreError>;

    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;

    /// Marks a device disabled (its push endpoint is gone) unless it changed since `read` was
    /// read: re-enrolled, moved or removed meanwhile, it is left as it is, and the answer is
    /// `false`. A stale copy written back whole would undo the change.
    async fn disable_device(&self, read: &Device) -> Result<bool, StoreError>;

    async fn put_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError>;

    /// The code with this hash, unless it is unknown, used or expired at `now`.
    async fn get_enrollment_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentCode>, StoreError>;

    /// Consumes an unexpired enrolment code issued for `device.sub` and stores the device, in one
    /// atomic write: a code enrols exactly one device, once.
    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<(), EnrollError>;

    async fn list_devices(&self, sub: &str) -> Result<Vec<Device>, StoreError>;

    /// Counts one `user_code` attempt of a client for the user before the code is checked,
    /// atomically: under `limit`, however many requests race, at most `limit.max` codes are
    /// ever checked in a window for one client and user. Counted per client, so that no client
    /// can lock another client's users out. `Locked` counts nothing.
    async fn begin_user_code_attempt(
        &self,
        client_id: &str,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<Attempt, StoreError>;

    /// Forgets the client's counted attempts for the user: the code was right.
    async fn clear_user_code_attempts(&self, client_id: &str, sub: &str) -> Result<(), StoreError>;
}

/// Single use of JWT ids that no other write consumes (client assertions).
#[async_trait]
pub trait Jtis: Send + Sync {
    /// Marks a `jti` used; `false` when it was used before and has not yet expired.
    async fn use_jti(&self, jti: &JtiUse, now: i64) -> Result<bool, StoreError>;
}

/// The whole store, one role at a time: `store.requests().decide(..)`,
/// `store.clients().get_client(..)`. An adapter implements every role and answers itself for
/// each; a decorator may replace one role and forward the others.
pub trait Store: Send + Sync {
    fn requests(&self) -> &dyn Requests;
    fn tokens(&self) -> &dyn Tokens;
    fn clients(&self) -> &dyn Clients;
    fn accounts(&self) -> &dyn Accounts;
    fn jtis(&self) -> &dyn Jtis;
}

/// `Store` for an adapter that plays every role itself.
macro_rules! plays_every_role {
    ($adapter:ty) => {
        impl $crate::store::Store for $adapter {
            fn requests(&self) -> &dyn $crate::store::Requests {
                self
            }

            fn tokens(&self) -> &dyn $crate::store::Tokens {
                self
            }

            fn clients(&self) -> &dyn $crate::store::Clients {
                self
            }

            fn accounts(&self) -> &dyn $crate::store::Accounts {
                self
            }

            fn jtis(&self) -> &dyn $crate::store::Jtis {
                self
            }
        }
    };
}
pub(crate) use plays_every_role;
