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
//! | auth request (and, once redeemed, its token family) | `AUTHREQ#<locator>`: the `txn` an `auth_req_id` of the form `<txn>.<secret>` starts with, any other id itself | `AUTHREQ` | see below, `ttl` = `expires_at` + 86400, once redeemed the family's end |
//! | txn, only for ids that do not start with their txn (minted before, tests) | `TXN#<txn>` | `TXN` | `auth_req_id`, `ttl` = the request's `expires_at` + 86400 |
//! | enrolment code | `ENROLL#<code hash>` | `ENROLL` | `sub`, `expires_at`, `ttl` = `expires_at` |
//! | pending ping/push request, by expiry minute | `DUE#<expires_at / 60>#<shard>` (16 shards by a hash of the id; `DUE#<minute>` before sharding) | `<auth_req_id>` | `expires_at`, `ttl` = `expires_at` + 86400 |
//! | expiry sweep cursor | `SWEEP` | `CURSOR` | `minute` (see `sweep`) |
//! | a user's pending requests | `PENDING#<sub>` | `SLOTS` | `v` (version), `e` (map: request locator → `{c: client_id, x: expires_at}`), `ttl` (see `pending`) |
//! | `user_code` attempts of one client | `USER#<sub>` | `USERCODE#<client_id>` | `n`, `until` (the window's end), `ttl` = `until` |
//! | token | `TOKEN#<hash>` | `TOKEN` | `hash`, `kind`, `client_id`, `sub`, `scope`, `auth_req_id`, `auth_time`, `acr`?, `issued_at`, `expires_at`, `rotated_at`? (a spent refresh token), `jkt`? (DPoP-bound), `x5t`? (certificate-bound), `ttl` = `expires_at` |
//! | envelope signing key | `SIGNING_KEY#<kid>` | `SIGNING_KEY` | `kid`, `ciphertext` (binary: the PKCS#8 DER private key encrypted by KMS under `kms_key_id` with the encryption context `{"purpose": "ciba-signing-key", "kid": <kid>}`), `public_jwk` (JSON), `kms_key_id`, `created_at`; no `ttl` (see `crate::envelope`) |
//! | token family of tokens issued before families lived on their request | `FAMILY#<auth_req_id>` | `FAMILY` | `id`, `client_id`, `sub`, `expires_at`, `revoked_at`?, `ttl` = `expires_at` |
//!
//! In a `jti` key, `%` and `#` inside the scope are written `%25` and `%23`, so the first `#`
//! after `JTI#` always ends the scope (scopes are client and device ids, which normally have
//! neither). Items a creation puts carry `put_by`, the mark of the call that put them.
//!
//! An auth request is stored as plain top-level attributes (no JSON blob), so conditions can use
//! them: `auth_req_id`, `txn`, `client_id`, `client_name`? (as the device was shown it), `sub`,
//! `scope`, `acr_values`?, `binding_message`?,
//! `client_notification_token`?, `delivery_mode` (`poll` / `ping` / `push`), `created_at`,
//! `expires_at`, `interval` (seconds), `last_poll_ms`?, `status` (`pending` / `approved` /
//! `denied` / `redeemed`), `decided_at`? (`?`: absent when `None`), `authorization_details`?
//! (RFC 9396, the JSON text as checked), `evidence`? (the device's signed decision, its device,
//! key thumbprint and `txn_hash`, as JSON text: kept as long as the grant), `decision_jti`? and
//! `decided_by`? (the decision's `jti` and the mark of the write that made it),
//! `redeemed_by`?, `family_expires_at`? and `revoked_at`? (the family of a redeemed request),
//! plus two helpers for the poll-rate check, since condition expressions cannot do arithmetic:
//! `interval_ms` (= `interval` * 1000) and `next_poll_ms` (= `last_poll_ms` + `interval_ms`,
//! absent before the first poll).
//!
//! A poll-mode flow is eight write units: creation puts the request and files it in the user's
//! `SLOTS` item (`pending`), each poll and the decision update the request, and redemption puts
//! the two tokens, then updates the request (see `requests` for why that order, and how a write
//! whose answer was lost learns it went through). A user's profile and hint items are written
//! in one transaction, a device and its per-user copy too, and refresh rotation (spent token,
//! family check, successors) is one `TransactWriteItems`, each under a `ClientRequestToken` of
//! its own (see `transact`). Reads are strongly consistent, except where a moment-old copy is
//! as good and the reader says why (users, hints, device lists, the token endpoint's view of a
//! request).
//!
//! # Files
//!
//! `layout` names the keys, `codec` turns items into domain values and back, `transact` runs
//! transactions and retries and maps SDK errors; each item family implements its role in its own
//! file (`requests`, `tokens`, `clients`, `accounts`, `jtis`, `signing_keys`), `writes` the plain
//! writes they share, `sweep` the expiry index, with `pending` and `attempts` for
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
