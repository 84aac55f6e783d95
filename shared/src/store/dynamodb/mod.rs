//! The DynamoDB store: every entity in one table with string keys `pk` / `sk` and a numeric TTL
//! attribute `ttl` (epoch seconds). TTL deletion is late by up to days, so expiry is always checked
//! by the code (in conditions and after reads), never left to TTL.
//!
//! # Item layout
//!
//! | entity | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | client | `CLIENT#<client_id>` | `CLIENT` | `client_id`, `data` (JSON of `Client`) |
//! | user | `USER#<sub>` | `PROFILE` | `sub`, `data` (JSON of `User`, claims included) |
//! | login hint | `HINT#<normalize_hint(hint)>` | `HINT` | `sub` |
//! | device | `DEVICE#<device_id>` | `DEVICE` | `device_id`, `sub`, `data` (JSON of `Device`) |
//! | device, per user | `USER#<sub>` | `DEVICE#<device_id>` | same as the device item |
//! | used `jti` | `JTI#<scope>#<jti>` | `JTI` | `scope`, `jti`, `ttl` = the `jti`'s `expires_at` |
//! | auth request | `AUTHREQ#<auth_req_id>` | `AUTHREQ` | see below, `ttl` = `expires_at` + 86400 |
//! | txn | `TXN#<txn>` | `TXN` | `auth_req_id`, `ttl` = the request's `expires_at` + 86400 |
//! | enrolment code | `ENROLL#<code hash>` | `ENROLL` | `sub`, `expires_at`, `ttl` = `expires_at` |
//! | pending ping/push request, by expiry minute | `DUE#<expires_at / 60>` | `<auth_req_id>` | `expires_at`, `ttl` = `expires_at` + 86400 |
//! | pending request, per user | `PENDING#<sub>` | `REQ#<expires_at, 12 digits>#<auth_req_id>` | `client_id`, `ttl` = `expires_at` |
//! | pending requests' version | `PENDING#<sub>` | `HEAD` | `v`, `ttl` = the last request's `expires_at` + 86400 |
//! | `user_code` attempts | `USER#<sub>` | `USERCODE` | `n`, `until` (the window's end), `ttl` = `until` |
//! | token | `TOKEN#<hash>` | `TOKEN` | `hash`, `kind`, `client_id`, `sub`, `scope`, `auth_req_id`, `auth_time`, `acr`?, `issued_at`, `expires_at`, `rotated_at`? (a spent refresh token), `jkt`? (DPoP-bound), `x5t`? (certificate-bound), `ttl` = `expires_at` |
//! | envelope signing key | `SIGNING_KEY#<kid>` | `SIGNING_KEY` | `kid`, `ciphertext` (binary: the PKCS#8 DER private key encrypted by KMS under `kms_key_id` with the encryption context `{"purpose": "ciba-signing-key", "kid": <kid>}`), `public_jwk` (JSON), `kms_key_id`, `created_at`; no `ttl` (see `crate::envelope`) |
//! | token family | `FAMILY#<auth_req_id>` | `FAMILY` | `id`, `client_id`, `sub`, `expires_at`, `revoked_at`?, `ttl` = `expires_at` |
//!
//! In a `jti` key, `%` and `#` inside the scope are written `%25` and `%23`, so the first `#`
//! after `JTI#` always ends the scope (scopes are client and device ids, which normally have
//! neither).
//!
//! An auth request is stored as plain top-level attributes (no JSON blob), so conditions can use
//! them: `auth_req_id`, `txn`, `client_id`, `sub`, `scope`, `acr_values`?, `binding_message`?,
//! `client_notification_token`?, `delivery_mode` (`poll` / `ping` / `push`), `created_at`,
//! `expires_at`, `interval` (seconds), `last_poll_ms`?, `status` (`pending` / `approved` /
//! `denied` / `redeemed`), `decided_at`? (`?`: absent when `None`), plus two helpers for the
//! poll-rate check, since condition expressions cannot do arithmetic:
//! `interval_ms` (= `interval` * 1000) and `next_poll_ms` (= `last_poll_ms` + `interval_ms`,
//! absent before the first poll).
//!
//! A user's profile and hint items are written in one transaction, a device and its per-user copy
//! too. Request creation (request, txn, `jti` and the pending entry with its version, see
//! `pending`), decisions (request, `jti`, pending entry out) and redemption
//! (request, family and tokens), refresh rotation (spent token, family, successors) are single `TransactWriteItems` with conditions, each under a
//! `ClientRequestToken` of its own (see `transact`); the poll-rate check is a conditional
//! `UpdateItem`. Every read is strongly consistent.
//!
//! # Files
//!
//! `layout` names the keys, `codec` turns items into domain values and back, `transact` runs
//! transactions and retries and maps SDK errors; each item family implements its role in its own
//! file (`requests`, `tokens`, `clients`, `accounts`, `jtis`, `signing_keys`), with `pending` and `attempts` for
//! the limits of `PendingLimit` and `AttemptLimit`. `provision` creates the table and
//! holds the test scaffolding; `stream` reads the table's stream records for the notifier.

mod accounts;
mod attempts;
mod clients;
mod codec;
mod jtis;
mod layout;
mod pending;
mod provision;
mod requests;
mod signing_keys;
pub mod stream;
mod sweep;
mod tokens;
mod transact;
mod writes;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use aws_sdk_dynamodb::Client as DynamoClient;

pub use provision::{TableSetupError, create_table, local_client};
pub use signing_keys::SigningKeyItem;

use codec::Item;
use layout::key;
use transact::sdk_error;

use super::StoreError;

/// The `Store` on one DynamoDB table (see the module documentation for the layout).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: DynamoClient,
    table: String,
    /// Whether this process has seen the sweep cursor exist (it is never deleted): see `sweep`.
    cursor_seen: Arc<AtomicBool>,
    /// Clients read recently, when enabled (`with_client_cache`).
    clients: Option<Arc<clients::ClientCache>>,
}

impl DynamoStore {
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            cursor_seen: Arc::new(AtomicBool::new(false)),
            clients: None,
        }
    }

    /// Answers `get_client` from clients read within `ttl` (none when `ttl` is zero): each
    /// request of a flow authenticates its client, and the client rarely changes. A change made
    /// through another process is seen after at most `ttl`.
    pub fn with_client_cache(mut self, ttl: std::time::Duration) -> Self {
        self.clients = (!ttl.is_zero()).then(|| Arc::new(clients::ClientCache::new(ttl)));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A strongly consistent read.
    async fn get(&self, op: &str, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        self.read(op, pk, sk, true).await
    }

    /// An eventually consistent read (half the price): for items whose moment-old copy is as
    /// good, each caller says why.
    async fn get_eventually(
        &self,
        op: &str,
        pk: String,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        self.read(op, pk, sk, false).await
    }

    async fn read(
        &self,
        op: &str,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(out.item)
    }
}

crate::store::plays_every_role!(DynamoStore);
