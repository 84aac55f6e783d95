//! What the store holds under the keys a step touched (each request by id and by `txn`, each
//! token), read back from the store or expected from the model, and how the two differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ciba_shared::domain::{AuthRequest, TokenRecord};
use ciba_shared::store::{Store, StoreError};
use tokio::task::JoinSet;

use super::model::{Call, Model};
use super::ops::REQUEST_IDS;
use crate::store_suite::request;

/// What the store holds under some keys: each request by id and by `txn`, and each token.
#[derive(Default)]
pub struct Holdings {
    requests: BTreeMap<String, (Option<AuthRequest>, Option<AuthRequest>)>,
    tokens: BTreeMap<String, Option<TokenRecord>>,
}

/// The keys a step's calls touch.
#[derive(Default)]
pub struct Keys {
    pub requests: BTreeSet<String>,
    pub tokens: BTreeSet<String>,
}

impl Holdings {
    /// What the store holds under `keys`, every key read at once.
    pub async fn read(store: &Arc<dyn Store>, keys: &Keys) -> Result<Self, String> {
        let mut requests = JoinSet::new();
        for id in keys.requests.iter().cloned() {
            let store = store.clone();
            requests.spawn(async move {
                let by_id = store.requests().get_auth_request(&id).await?;
                let txn = request(&id).txn;
                let by_txn = store.requests().get_auth_request_by_txn(&txn).await?;
                Ok::<_, StoreError>((id, (by_id, by_txn)))
            });
        }
        let mut tokens = JoinSet::new();
        for hash in keys.tokens.iter().cloned() {
            let store = store.clone();
            tokens.spawn(async move {
                let token = store.tokens().get_token(&hash).await?;
                Ok::<_, StoreError>((hash, token))
            });
        }
        Ok(Self {
            requests: read_back(requests.join_all().await)?,
            tokens: read_back(tokens.join_all().await)?,
        })
    }

    /// What the model expects under `keys`.
    pub fn expected(model: &Model, keys: &Keys) -> Self {
        Self {
            requests: keys
                .requests
                .iter()
                .map(|id| {
                    let by_id = model.request(id).cloned();
                    let by_txn = model.request_by_txn(&request(id).txn).cloned();
                    (id.clone(), (by_id, by_txn))
                })
                .collect(),
            tokens: keys
                .tokens
                .iter()
                .map(|hash| (hash.clone(), model.token(hash).cloned()))
                .collect(),
        }
    }

    /// Nothing lost (and nothing made up): what the store `held` is what the model expects
    /// (`self`), except that a token expired at `now` may be gone, as TTL deletes it (late in
    /// DynamoDB, on time in the in-memory store).
    pub fn compare(&self, held: &Holdings, now: i64) -> Result<(), String> {
        let mut differences = Vec::new();
        for (id, want) in &self.requests {
            let got = &held.requests[id];
            if got.0 != want.0 {
                differences.push(format!(
                    "request {id} by id:\n    store: {:?}\n    model: {:?}",
                    got.0, want.0
                ));
            }
            if got.1 != want.1 {
                differences.push(format!(
                    "request {id} by txn:\n    store: {:?}\n    model: {:?}",
                    got.1, want.1
                ));
            }
        }
        for (hash, want) in &self.tokens {
            let got = &held.tokens[hash];
            let deleted = got.is_none() && want.as_ref().is_some_and(|t| t.expires_at < now);
            if got != want && !deleted {
                differences.push(format!(
                    "token {hash}:\n    store: {got:?}\n    model: {want:?}"
                ));
            }
        }
        if differences.is_empty() {
            return Ok(());
        }
        Err(format!(
            "nothing lost: the store does not hold what the model expects:\n  {}",
            differences.join("\n  ")
        ))
    }
}

impl Keys {
    /// Adds the keys `call` touches.
    pub fn add(&mut self, call: &Call) {
        let mut tokens = |tokens: &[TokenRecord]| {
            self.tokens.extend(tokens.iter().map(|t| t.hash.clone()));
        };
        match call {
            Call::Redeem { tokens: issued, .. } => tokens(issued),
            Call::Rotate {
                hash, successors, ..
            } => {
                tokens(successors);
                self.tokens.insert(hash.clone());
            }
            _ => {}
        }
        match call {
            Call::Create { request, .. } | Call::Discard { request, .. } => {
                self.requests.insert(request.auth_req_id.clone());
            }
            Call::Poll { id, .. } | Call::Decide { id, .. } | Call::Redeem { id, .. } => {
                self.requests.insert(id.clone());
            }
            Call::Sweep { .. } => {
                self.requests
                    .extend(REQUEST_IDS.iter().map(|id| id.to_string()));
            }
            Call::Rotate { .. } | Call::Nothing => {}
        }
    }
}

fn read_back<V>(
    reads: Vec<Result<(String, V), StoreError>>,
) -> Result<BTreeMap<String, V>, String> {
    reads
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading back failed: {e}"))
}
