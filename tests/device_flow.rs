//! The authentication device end to end: enrolment with a one-time code, the push that
//! /bc-authorize sends, signed decisions, and what happens when pushes cannot be delivered.
//! Every scenario runs on the in-memory store and on DynamoDB Local.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use ciba_local::event::HttpRequest;
use ciba_shared::domain::Device;
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random};
use ciba_shared::push::{Platform, PushError, PushMessage, PushSender};
use ciba_shared::store::Store;
use common::{Harness, Reply};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::rand_core::OsRng;
use serde_json::json;

on_both_stores!(
    the_local_enrollment_code_endpoint_takes_json_and_a_bounded_ttl_only,
    enrolled_device_receives_the_push_and_its_approval_issues_tokens,
    enrolled_device_can_deny,
    enrollment_code_replay_is_invalid_grant,
    expired_enrollment_code_is_invalid_grant,
    reenrolling_the_same_push_token_updates_the_device,
    off_curve_key_is_invalid_request_and_spends_no_code,
    unknown_platform_is_invalid_request_and_spends_no_code,
    enrollment_code_from_the_operator_endpoint_enrols,
);

fn device_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["device_id"].as_str().unwrap().to_owned()
}

fn decision(h: &Harness, key: &SigningKey, device_id: &str, txn: &str, action: &str) -> String {
    let now = h.now();
    jose::sign_with_key(
        key,
        &json!({"alg": "ES256", "kid": device_id}),
        &json!({"txn": txn, "action": action, "iat": now, "exp": now + 60, "jti": OsRandom.token(12)}),
    )
}

async fn carol_requests(h: &Harness) -> Reply {
    h.bc_authorize(&[
        ("scope", "openid"),
        ("login_hint", "carol"),
        ("binding_message", "Pay 5 EUR"),
    ])
    .await
}

async fn enrolled_device_receives_the_push_and_its_approval_issues_tokens(h: Harness) {
    carol_requests(&h)
        .await
        .expect_error(400, "unknown_user_id");
    let key = SigningKey::random(&mut OsRng);
    let id = device_id(
        &h.enroll("demo-enrol-carol", &key, "fcm-token-carol", "GCM")
            .await,
    );
    let stored = h.store.accounts().get_device(&id).await.unwrap().unwrap();
    assert_eq!(stored.sub, "user-carol");
    assert!(stored.endpoint_arn.unwrap().contains(":endpoint/GCM/"));

    let reply = carol_requests(&h).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let auth_req_id = reply.body["auth_req_id"].as_str().unwrap().to_owned();
    let pushes = h.pushes.sent_to("user-carol");
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].device_id, id);
    assert_eq!(
        pushes[0].message.binding_message.as_deref(),
        Some("Pay 5 EUR")
    );

    let txn = pushes[0].message.txn.clone();
    let approve = decision(&h, &key, &id, &txn, "approve");
    assert_eq!(h.post_decision(&approve).await.status, 204);
    let tokens = h.poll(&auth_req_id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
}

async fn enrolled_device_can_deny(h: Harness) {
    let key = SigningKey::random(&mut OsRng);
    let id = device_id(
        &h.enroll("demo-enrol-carol", &key, "fcm-token-carol", "GCM")
            .await,
    );
    let auth_req_id = carol_requests(&h).await.body["auth_req_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let txn = h.latest_txn("user-carol");
    let deny = decision(&h, &key, &id, &txn, "deny");
    assert_eq!(h.post_decision(&deny).await.status, 204);
    h.poll(&auth_req_id)
        .await
        .expect_error(400, "access_denied");
}

async fn enrollment_code_replay_is_invalid_grant(h: Harness) {
    let key = SigningKey::random(&mut OsRng);
    device_id(&h.enroll("demo-enrol-carol", &key, "token-1", "GCM").await);
    let other = SigningKey::random(&mut OsRng);
    h.enroll("demo-enrol-carol", &other, "token-2", "APNS")
        .await
        .expect_error(400, "invalid_grant");
    assert_eq!(devices_of(&h, "user-carol").await, 1);
}

async fn expired_enrollment_code_is_invalid_grant(h: Harness) {
    h.clock.advance_secs(86_400);
    let key = SigningKey::random(&mut OsRng);
    h.enroll("demo-enrol-carol", &key, "token-1", "GCM")
        .await
        .expect_error(400, "invalid_grant");
    assert!(devices_of(&h, "user-carol").await == 0);
}

/// Review finding 17: `ttl` = i64::MAX overflowed (a panic, a 500), and a `text/plain` body was
/// taken, which any web page can send to a developer's running OP without a CORS preflight.
async fn the_local_enrollment_code_endpoint_takes_json_and_a_bounded_ttl_only(h: Harness) {
    for ttl in [
        json!(i64::MAX),
        json!(2_592_001),
        json!(0),
        json!(-5),
        json!("600"),
    ] {
        let req = HttpRequest::new("POST", "/_local/enrollment-codes").body(
            "application/json",
            json!({"user": "carol", "ttl": ttl}).to_string(),
        );
        h.send(req).await.expect_error(400, "invalid_request");
    }
    let plain = HttpRequest::new("POST", "/_local/enrollment-codes").body(
        "text/plain",
        json!({"user": "carol", "ttl": 300}).to_string(),
    );
    h.send(plain).await.expect_error(400, "invalid_request");
    let ok = HttpRequest::new("POST", "/_local/enrollment-codes")
        .body("application/json", json!({"user": "carol"}).to_string());
    assert_eq!(h.send(ok).await.status, 201);
}

async fn issue_code(h: &Harness, user: &str) -> String {
    let req = HttpRequest::new("POST", "/_local/enrollment-codes").body(
        "application/json",
        json!({"user": user, "ttl": 300}).to_string(),
    );
    let reply = h.send(req).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["enrollment_code"].as_str().unwrap().to_owned()
}

async fn reenrolling_the_same_push_token_updates_the_device(h: Harness) {
    let old_key = SigningKey::random(&mut OsRng);
    let first = device_id(
        &h.enroll("demo-enrol-carol", &old_key, "same-token", "GCM")
            .await,
    );
    let code = issue_code(&h, "carol").await;
    let new_key = SigningKey::random(&mut OsRng);
    let second = device_id(&h.enroll(&code, &new_key, "same-token", "GCM").await);
    assert_eq!(first, second, "same push token, same device");
    assert_eq!(devices_of(&h, "user-carol").await, 1);

    carol_requests(&h).await;
    let txn = h.latest_txn("user-carol");
    let stale = decision(&h, &old_key, &first, &txn, "approve");
    h.post_decision(&stale)
        .await
        .expect_error(400, "invalid_request");
    let fresh = decision(&h, &new_key, &first, &txn, "approve");
    assert_eq!(h.post_decision(&fresh).await.status, 204);
}

async fn off_curve_key_is_invalid_request_and_spends_no_code(h: Harness) {
    let body = json!({
        "enrollment_code": "demo-enrol-carol",
        "public_key": {"kty": "EC", "crv": "P-256",
                       "x": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
                       "y": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"},
        "push_token": "token-1",
        "platform": "GCM",
    });
    h.register_raw(&body)
        .await
        .expect_error(400, "invalid_request");
    let key = SigningKey::random(&mut OsRng);
    device_id(&h.enroll("demo-enrol-carol", &key, "token-1", "GCM").await);
}

async fn unknown_platform_is_invalid_request_and_spends_no_code(h: Harness) {
    let key = SigningKey::random(&mut OsRng);
    h.enroll("demo-enrol-carol", &key, "token-1", "WNS")
        .await
        .expect_error(400, "invalid_request");
    assert!(devices_of(&h, "user-carol").await == 0);
    device_id(
        &h.enroll("demo-enrol-carol", &key, "token-1", "APNS_SANDBOX")
            .await,
    );
}

async fn enrollment_code_from_the_operator_endpoint_enrols(h: Harness) {
    let code = issue_code(&h, "user-bob").await;
    let key = SigningKey::random(&mut OsRng);
    let id = device_id(&h.enroll(&code, &key, "bob-tablet", "APNS").await);
    assert_eq!(
        h.store
            .accounts()
            .get_device(&id)
            .await
            .unwrap()
            .unwrap()
            .sub,
        "user-bob"
    );
    assert_eq!(devices_of(&h, "user-bob").await, 2);
}

/// A push service that fails every send in one way.
struct FailingPush(fn() -> PushError);

#[async_trait]
impl PushSender for FailingPush {
    async fn register(&self, platform: Platform, _token: &str) -> Result<String, PushError> {
        Ok(format!(
            "arn:aws:sns:test:0:endpoint/{}/x/y",
            platform.as_str()
        ))
    }

    async fn send(&self, _device: &Device, _message: &PushMessage) -> Result<(), PushError> {
        Err((self.0)())
    }
}

async fn failing_harness(error: fn() -> PushError) -> Harness {
    let store = Arc::new(ciba_shared::store::MemoryStore::new());
    Harness::with_push(store, Some(Arc::new(FailingPush(error)))).await
}

#[tokio::test]
async fn push_outage_answers_503_and_the_same_request_object_may_be_sent_again() {
    let h = failing_harness(|| PushError::Unavailable("throttled".into())).await;
    let ro = h.sign_request(&h.request_claims());
    let reply = h.bc_authorize_signed(&ro).await;
    reply.expect_error(503, "temporarily_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");

    // Once pushes flow again, the very same request object is accepted.
    let healthy = Harness::with_push(h.store.clone(), None).await;
    healthy.clock.advance_secs(0);
    assert_eq!(healthy.bc_authorize_signed(&ro).await.status, 200);
}

#[tokio::test]
async fn disabled_endpoint_is_marked_and_a_user_with_none_left_is_unknown_user_id() {
    let h = failing_harness(|| PushError::EndpointDisabled).await;
    let device = alice_phone_after_her_only_push_failed(&h).await;
    assert!(!device.enabled, "the disabled endpoint's device is marked");
    // The next request does not even try the disabled device.
    h.bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await
        .expect_error(400, "unknown_user_id");
}

/// The endpoint a device gets when it is enrolled again while a push to it fails.
const ENROLLED_AGAIN: &str = "arn:aws:sns:test:0:endpoint/GCM/x/enrolled-again";

/// A push service whose endpoint for the device is disabled, while the device is enrolled again
/// (a new endpoint) between bc-authorize's read of it and the failed push.
struct EnrolledAgainDuringPush(Arc<dyn Store>);

#[async_trait]
impl PushSender for EnrolledAgainDuringPush {
    async fn register(&self, _platform: Platform, _token: &str) -> Result<String, PushError> {
        Ok(ENROLLED_AGAIN.into())
    }

    async fn send(&self, device: &Device, _message: &PushMessage) -> Result<(), PushError> {
        let again = Device {
            endpoint_arn: Some(ENROLLED_AGAIN.into()),
            ..device.clone()
        };
        self.0.accounts().put_device(&again).await.unwrap();
        Err(PushError::EndpointDisabled)
    }
}

async fn device_enrolled_again_while_its_push_failed_stays_enabled(store: Arc<dyn Store>) {
    let push = Arc::new(EnrolledAgainDuringPush(store.clone()));
    let h = Harness::with_push(store, Some(push)).await;
    let device = alice_phone_after_her_only_push_failed(&h).await;
    assert!(device.enabled, "the stale copy was not written back");
    assert_eq!(device.endpoint_arn.as_deref(), Some(ENROLLED_AGAIN));
}

#[tokio::test]
async fn device_enrolled_again_while_its_push_failed_stays_enabled_in_memory() {
    let store = Arc::new(ciba_shared::store::MemoryStore::new());
    device_enrolled_again_while_its_push_failed_stays_enabled(store).await;
}

#[tokio::test]
async fn device_enrolled_again_while_its_push_failed_stays_enabled_on_dynamodb() {
    let Some(store) = ciba_testkit::dynamodb::store_from_env().await else {
        return;
    };
    device_enrolled_again_while_its_push_failed_stays_enabled(store).await;
}

/// Alice's phone, once a request for her found no device a push reached (`unknown_user_id`).
async fn alice_phone_after_her_only_push_failed(h: &Harness) -> Device {
    h.bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await
        .expect_error(400, "unknown_user_id");
    h.store
        .accounts()
        .get_device("alice-phone")
        .await
        .unwrap()
        .unwrap()
}

/// How many devices `sub` has enrolled.
async fn devices_of(h: &Harness, sub: &str) -> usize {
    h.store.accounts().list_devices(sub).await.unwrap().len()
}
