//! Issuing one-time enrolment codes, for the operator tooling, the seed and the local API.

use ciba_shared::domain::{EnrollmentCode, User};
use ciba_shared::ports::Random;
use ciba_shared::secret::{self, Secret};
use ciba_shared::store::{Store, StoreError};

/// An enrolment code carries 160 bits.
const CODE_BYTES: usize = 20;

#[derive(Debug)]
pub enum IssueError {
    UnknownUser,
    Store(StoreError),
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueError::UnknownUser => f.write_str("no user has that sub or login hint"),
            IssueError::Store(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        IssueError::Store(e)
    }
}

/// The user named by `sub` or by a login hint.
pub async fn find_user(store: &dyn Store, user: &str) -> Result<Option<User>, StoreError> {
    match store.accounts().get_user(user).await? {
        Some(u) => Ok(Some(u)),
        None => store.accounts().find_user_by_hint(user).await,
    }
}

/// Stores `code` (given, or random when `None`) for `user`, valid for `ttl` seconds from `now`.
/// Answers the code in clear: it is shown once and stored only as its hash.
/// The longest an enrolment code may live: 30 days.
pub const MAX_TTL: i64 = 30 * 86_400;

pub async fn issue(
    store: &dyn Store,
    random: &dyn Random,
    user: &str,
    code: Option<&str>,
    ttl: i64,
    now: i64,
) -> Result<(Secret, EnrollmentCode), IssueError> {
    let user = find_user(store, user)
        .await?
        .ok_or(IssueError::UnknownUser)?;
    let code = Secret::new(code.map_or_else(|| random.token(CODE_BYTES), str::to_owned));
    let record = EnrollmentCode {
        code_hash: secret::hash(code.expose()),
        sub: user.sub,
        expires_at: now.saturating_add(ttl.clamp(1, MAX_TTL)),
    };
    store.accounts().put_enrollment_code(&record).await?;
    Ok((code, record))
}
