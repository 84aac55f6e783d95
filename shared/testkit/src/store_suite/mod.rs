//! The store test suite. Every adapter runs all of it through `store_suite!`, so the in-memory
//! store and DynamoDB behave the same way. The cases live with their role (`clients`,
//! `accounts`, `jtis`, `requests`, `decisions` for `Requests`' decisions and redemptions,
//! `tokens`, `limits` for the abuse limits); the fixtures they share are here.

use std::sync::Arc;

use ciba_shared::domain::{
    AuthMethod, AuthRequest, Client, Decision, DeliveryMode, EnrollmentCode, Family, Status,
    TokenKind, TokenRecord,
};
use ciba_shared::store::{JtiUse, PendingLimit, PollOutcome, Store};

mod accounts;
mod clients;
mod decisions;
mod jtis;
mod limits;
mod requests;
mod tokens;

pub use accounts::*;
pub use clients::*;
pub use decisions::*;
pub use jtis::*;
pub use limits::*;
pub use requests::*;
pub use tokens::*;

/// Expands to one `#[tokio::test]` per suite case, each on a fresh store from `$make`
/// (an `async` block giving an `Arc<dyn Store>`-compatible value).
///
/// `store_suite!(optional $make)`: `$make` is a future giving an `Option` of such a value; on
/// `None` every case returns at once (passes), for adapters whose backend may be absent.
#[macro_export]
macro_rules! store_suite {
    (optional $make:expr) => {
        $crate::store_suite!(::std::future::ready(match $make.await {
            ::std::option::Option::Some(store) => store,
            ::std::option::Option::None => return,
        }));
    };
    ($make:expr) => {
        $crate::store_suite!(@cases $make;
            client_round_trips,
            create_client_never_overwrites_a_taken_client_id,
            unknown_client_is_none,
            user_is_found_by_each_login_hint_ignoring_case,
            unknown_hint_finds_nobody,
            devices_are_listed_per_user,
            enrollment_code_enrols_one_device_once,
            expired_enrollment_code_enrols_nothing,
            enrollment_code_of_another_user_enrols_nothing,
            device_is_disabled_as_it_was_read,
            device_enrolled_again_since_it_was_read_is_not_disabled,
            discarded_request_is_gone_and_its_jti_reusable,
            jti_is_accepted_once,
            expired_jti_may_be_used_again,
            created_request_is_found_by_id_and_by_txn,
            minted_request_is_found_by_its_whole_id_and_its_txn_only,
            replayed_request_object_jti_stores_nothing,
            first_poll_is_in_time,
            poll_sooner_than_interval_grows_interval_by_five,
            poll_after_interval_is_in_time,
            poll_of_unknown_request_is_gone,
            decision_is_recorded_once,
            a_decision_keeps_its_evidence_through_redemption,
            decision_after_expiry_is_refused,
            decision_jti_belongs_to_its_request,
            decision_on_unknown_request_is_not_found,
            replayed_decision_on_decided_request_is_a_replay,
            pending_request_cannot_be_redeemed,
            denied_request_cannot_be_redeemed,
            expired_request_cannot_be_redeemed,
            approved_request_is_redeemed_once_and_tokens_are_stored,
            concurrent_redemptions_succeed_exactly_once,
            refresh_token_rotates_once,
            expiry_sweep_marks_due_ping_and_push_requests_once,
            expiry_sweep_leaves_poll_and_decided_requests,
            expiry_sweep_after_hours_down_still_finds_what_expired_meanwhile,
            expired_request_cannot_be_decided,
            notification_is_marked_once,
            refresh_token_of_another_client_does_not_rotate,
            expired_refresh_token_does_not_rotate,
            a_spent_refresh_token_presented_again_is_reuse,
            concurrent_rotations_of_one_token_spend_it_once,
            a_revoked_family_rotates_no_more,
            revoking_a_family_twice_keeps_the_first_time,
            revoking_a_family_without_an_item_stores_it_revoked,
            a_refresh_token_older_than_families_rotates_and_starts_its_family,
            an_access_token_is_revoked_alone,
            concurrent_decisions_succeed_exactly_once,
            pending_requests_beyond_the_per_client_limit_are_refused,
            pending_requests_beyond_the_per_user_limit_are_refused,
            decided_discarded_and_expired_requests_are_no_longer_pending,
            concurrent_requests_never_exceed_the_pending_limit,
            user_code_attempts_beyond_the_limit_are_locked_until_the_window_ends,
            cleared_user_code_attempts_start_over,
            user_code_attempts_are_counted_per_client,
            concurrent_user_code_attempts_are_counted_one_by_one,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::store_suite::$case(store).await;
            }
        )*
    };
}

const NOW: i64 = 1_800_000_000;

/// The stored request `id`, which must exist.
pub async fn stored_request(store: &dyn Store, id: &str) -> AuthRequest {
    store
        .requests()
        .get_auth_request(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("request {id} is stored"))
}

/// Stores `request` (without a request object `jti`).
pub async fn create(store: &dyn Store, request: &AuthRequest) {
    store
        .requests()
        .create_auth_request(request, None, PendingLimit::NONE)
        .await
        .unwrap();
}

/// One expiry sweep at `now` (an hour's look-back, 100 at most).
pub async fn expire(store: &dyn Store, now: i64) -> Vec<AuthRequest> {
    store.requests().expire_due(now, 3600, 100).await.unwrap()
}

/// The request the device knows as `txn`.
pub async fn by_txn(store: &dyn Store, txn: &str) -> Option<AuthRequest> {
    store.requests().get_auth_request_by_txn(txn).await.unwrap()
}

/// A poll of request `id` at `now_ms`.
pub async fn poll(store: &dyn Store, id: &str, now_ms: i64) -> PollOutcome {
    store.requests().record_poll(id, now_ms).await.unwrap()
}

/// The enrolment code with hash `hash`, if it is still usable at `now`.
pub async fn code_of(store: &dyn Store, hash: &str, now: i64) -> Option<EnrollmentCode> {
    store
        .accounts()
        .get_enrollment_code(hash, now)
        .await
        .unwrap()
}

pub fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        client_name: Some(format!("{id} name")),
        client_secret_hash: Some(ciba_shared::secret::hash("secret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        jwks: None,
        backchannel_token_delivery_mode: DeliveryMode::Poll,
        backchannel_client_notification_endpoint: None,
        backchannel_authentication_request_signing_alg: None,
        backchannel_user_code_parameter: false,
        resource_server: false,
        access_token_format: Default::default(),
        fapi: false,
        authorization_details_types: None,
        tls: Default::default(),
    }
}

/// A pending poll-mode request. An id shaped as bc-authorize mints them, `<txn>.<secret>`, starts
/// with its txn; any other id gets the txn `txn-<id>`.
pub fn request(id: &str) -> AuthRequest {
    AuthRequest {
        evidence: None,
        client_name: None,
        auth_req_id: id.into(),
        txn: id
            .split_once('.')
            .map_or_else(|| format!("txn-{id}"), |(txn, _)| txn.to_owned()),
        client_id: "c1".into(),
        sub: "alice".into(),
        scope: "openid profile".into(),
        acr_values: None,
        binding_message: Some("W4SCT".into()),
        client_notification_token: None,
        delivery_mode: DeliveryMode::Poll,
        created_at: NOW,
        expires_at: NOW + 600,
        interval: 2,
        last_poll_ms: None,
        status: Status::Pending,
        decided_at: None,
        notified_at: None,
        authorization_details: None,
    }
}

fn jti(scope: &str, jti: &str) -> JtiUse {
    JtiUse {
        scope: scope.into(),
        jti: jti.into(),
        expires_at: NOW + 300,
    }
}

fn token(hash: &str, kind: TokenKind) -> TokenRecord {
    TokenRecord {
        approval: None,
        hash: hash.into(),
        kind,
        client_id: "c1".into(),
        sub: "alice".into(),
        scope: "openid".into(),
        auth_req_id: "r1".into(),
        auth_time: NOW + 10,
        acr: None,
        issued_at: NOW + 20,
        expires_at: NOW + 3600,
        rotated_at: None,
        jkt: None,
        x5t: None,
        authorization_details: None,
    }
}

/// The family of request `id`'s grant, live for a day.
fn family(id: &str) -> Family {
    Family {
        id: id.into(),
        client_id: "c1".into(),
        sub: "alice".into(),
        expires_at: NOW + 86_400,
        revoked_at: None,
    }
}

async fn created(store: &Arc<dyn Store>, id: &str) -> AuthRequest {
    let r = request(id);
    store
        .requests()
        .create_auth_request(&r, None, PendingLimit::NONE)
        .await
        .unwrap();
    r
}

async fn approved(store: &Arc<dyn Store>, id: &str) {
    created(store, id).await;
    store
        .requests()
        .decide(
            id,
            Decision::Approve,
            NOW + 10,
            &jti("dev", &format!("d-{id}")),
        )
        .await
        .unwrap();
}
