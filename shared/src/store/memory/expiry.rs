//! The in-memory store's bookkeeping of time: what leaves the store when (as DynamoDB's TTL
//! deletes items, but on time), and each user's pending requests soonest-expiring first, so that
//! neither counting them nor forgetting what expired scans anything.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::Tables;
use crate::domain::{Family, TokenRecord};
use crate::store::JtiUse;

/// An entry of the store that expires, by its key.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Expiring {
    /// An auth request with its txn.
    Request(String),
    Token(String),
    Family(String),
    Jti(String, String),
    EnrollmentCode(String),
    Attempts(String),
}

/// Entries in the order they may leave: each insertion is queued once, each queued entry popped
/// once, so forgetting costs O(log n) per entry whatever the store holds.
#[derive(Default)]
pub(super) struct Expiry {
    queue: BinaryHeap<Reverse<(i64, Expiring)>>,
}

impl Expiry {
    /// `what` may leave once `at` has passed.
    pub(super) fn at(&mut self, at: i64, what: Expiring) {
        self.queue.push(Reverse((at, what)));
    }

    /// The next entry whose time has passed at `now`. The caller checks the entry still expires
    /// then: it may have been given a later time since.
    pub(super) fn due(&mut self, now: i64) -> Option<(i64, Expiring)> {
        match self.queue.peek() {
            Some(Reverse((at, _))) if *at < now => self.queue.pop().map(|Reverse(due)| due),
            _ => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// One user's pending requests: `(expires_at, auth_req_id)` → `client_id`, and how many each
/// client has.
#[derive(Default)]
pub(super) struct Pending {
    requests: BTreeMap<(i64, String), String>,
    per_client: HashMap<String, usize>,
}

impl Pending {
    pub(super) fn add(&mut self, expires_at: i64, auth_req_id: &str, client_id: &str) {
        self.requests
            .insert((expires_at, auth_req_id.to_owned()), client_id.to_owned());
        *self.per_client.entry(client_id.to_owned()).or_default() += 1;
    }

    /// The request is no longer pending (decided, expired, discarded).
    pub(super) fn remove(&mut self, expires_at: i64, auth_req_id: &str) {
        if let Some(client_id) = self.requests.remove(&(expires_at, auth_req_id.to_owned())) {
            self.forget_one(&client_id);
        }
    }

    fn forget_one(&mut self, client_id: &str) {
        if let Some(n) = self.per_client.get_mut(client_id) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(client_id);
            }
        }
    }

    /// `(from client_id, in total)` at `now`, forgetting those that expired (`expires_at` ≤ now).
    pub(super) fn count(&mut self, client_id: &str, now: i64) -> (usize, usize) {
        while let Some(entry) = self.requests.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let client = entry.remove();
            self.forget_one(&client);
        }
        let from_client = self.per_client.get(client_id).copied().unwrap_or(0);
        (from_client, self.requests.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

impl Tables {
    /// Forgets the entries whose time passed before `now`.
    pub(super) fn forget_expired(&mut self, now: i64) {
        while let Some((at, what)) = self.expiry.due(now) {
            match what {
                Expiring::Request(id) => {
                    let retention = self.request_retention;
                    let gone = self
                        .requests
                        .get(&id)
                        .is_some_and(|r| r.expires_at + retention == at);
                    if gone && let Some(request) = self.requests.remove(&id) {
                        self.txns.remove(&request.txn);
                        self.decision_jtis.remove(&id);
                        self.due.remove(&(request.expires_at, id));
                        self.not_pending(&request);
                    }
                }
                Expiring::Token(hash) => {
                    if self.tokens.get(&hash).is_some_and(|t| t.expires_at == at) {
                        self.tokens.remove(&hash);
                    }
                }
                Expiring::Family(id) => {
                    if self.families.get(&id).is_some_and(|f| f.expires_at == at) {
                        self.families.remove(&id);
                    }
                }
                Expiring::Jti(scope, jti) => {
                    let key = (scope, jti);
                    if self.jtis.get(&key) == Some(&at) {
                        self.jtis.remove(&key);
                    }
                }
                Expiring::EnrollmentCode(hash) => {
                    if self
                        .enrollment_codes
                        .get(&hash)
                        .is_some_and(|c| c.expires_at == at)
                    {
                        self.enrollment_codes.remove(&hash);
                    }
                }
                Expiring::Attempts(sub) => {
                    if self
                        .attempts
                        .get(&sub)
                        .is_some_and(|(_, until)| *until == at)
                    {
                        self.attempts.remove(&sub);
                    }
                }
            }
        }
    }

    pub(super) fn insert_jti(&mut self, jti: &JtiUse) {
        self.jtis
            .insert((jti.scope.clone(), jti.jti.clone()), jti.expires_at);
        self.expiry.at(
            jti.expires_at,
            Expiring::Jti(jti.scope.clone(), jti.jti.clone()),
        );
    }

    pub(super) fn insert_token(&mut self, token: &TokenRecord) {
        self.tokens.insert(token.hash.clone(), token.clone());
        self.expiry
            .at(token.expires_at, Expiring::Token(token.hash.clone()));
    }

    pub(super) fn insert_family(&mut self, family: &Family) {
        self.families.insert(family.id.clone(), family.clone());
        self.expiry
            .at(family.expires_at, Expiring::Family(family.id.clone()));
    }
}
