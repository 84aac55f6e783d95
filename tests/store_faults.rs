//! The DynamoDB store under injected faults, DynamoDB Local behind a fault proxy. Skipped
//! without `CIBA_DYNAMODB_ENDPOINT`.
//!
//! Writes whose answers are lost on the way back: the proxy lets a conditional write commit,
//! then closes the connection without answering. The store must answer what was committed, not
//! the failed condition a second run of the write would meet (`invalid_grant` for an approved
//! login, a replayed `jti` for a recorded decision, an error for a stored request).
//!
//! A write racing a conditional write: the proxy holds a transaction while the test changes
//! what it is conditioned on.

mod common;

use std::sync::Arc;

use ciba_shared::domain::Device;
use ciba_shared::domain::{Decision, DeliveryMode, Family, Status, TokenKind, TokenRecord};
use ciba_shared::store::{
    Accounts, CreateError, DecideError, DynamoStore, JtiUse, PendingLimit, Requests, Tokens,
};
use ciba_testkit::store_suite::request;
use common::fault_proxy::{Fault, FaultProxy, dynamodb_behind_proxy};

/// A device and its per-user copy are written together.
const TRANSACT: &str = "DynamoDB_20120810.TransactWriteItems";
/// The conditional update that decides a decision and a redemption.
const UPDATE: &str = "DynamoDB_20120810.UpdateItem";
/// The puts of a creation (its request object's `jti` first).
const PUT: &str = "DynamoDB_20120810.PutItem";
const NOW: i64 = 1_800_000_000;

/// A table reached two ways: `store` through the proxy, `direct` without it.
struct Lossy {
    proxy: FaultProxy,
    store: Arc<DynamoStore>,
    direct: Arc<DynamoStore>,
    /// Attempts the SDK makes of one call (its retry configuration).
    sdk_attempts: usize,
}

async fn lossy() -> Option<Lossy> {
    let (local, proxy, client) = dynamodb_behind_proxy().await?;
    let sdk_attempts = client
        .config()
        .retry_config()
        .map_or(1, |retry| retry.max_attempts()) as usize;
    Some(Lossy {
        proxy,
        store: Arc::new(DynamoStore::new(client, local.table)),
        direct: local.store,
        sdk_attempts,
    })
}

impl Lossy {
    /// The next `answers` calls of `op` commit as usual, but their answers never arrive.
    fn lose_answers(&self, op: &str, answers: usize) {
        self.proxy.fail_next(op, answers, Fault::DropResponse);
    }

    /// Every answer to the next call of `op` is lost, the SDK's retries' too: the first attempt
    /// commits, the SDK gives up.
    fn lose_every_sdk_answer(&self, op: &str) {
        self.lose_answers(op, self.sdk_attempts);
    }

    /// Every fault was met.
    #[track_caller]
    fn assert_faults_met(&self, op: &str, faults: usize) {
        let (sent, met) = self.proxy.count(op);
        assert_eq!(met, faults, "answers lost");
        assert!(sent >= faults, "{sent} calls sent");
    }
}

fn jti(id: &str) -> JtiUse {
    JtiUse {
        scope: "device".into(),
        jti: id.into(),
        expires_at: NOW + 300,
    }
}

fn tokens(auth_req_id: &str) -> Vec<TokenRecord> {
    [
        ("access", TokenKind::Access),
        ("refresh", TokenKind::Refresh),
    ]
    .into_iter()
    .map(|(hash, kind)| TokenRecord {
        approval: None,
        hash: format!("{hash}-{auth_req_id}"),
        kind,
        client_id: "c1".into(),
        sub: "alice".into(),
        scope: "openid".into(),
        auth_req_id: auth_req_id.into(),
        auth_time: NOW + 10,
        acr: None,
        issued_at: NOW + 20,
        expires_at: NOW + 3600,
        rotated_at: None,
        jkt: None,
        x5t: None,
        authorization_details: None,
    })
    .collect()
}

fn family(auth_req_id: &str) -> Family {
    Family {
        id: auth_req_id.into(),
        client_id: "c1".into(),
        sub: "alice".into(),
        expires_at: NOW + 86_400,
        revoked_at: None,
    }
}

/// A stored request `id`, approved.
async fn approved(direct: &DynamoStore, id: &str) {
    direct
        .create_auth_request(&request(id), None, PendingLimit::NONE)
        .await
        .unwrap();
    let decision = jti(&format!("approval-{id}"));
    direct
        .decide(id, Decision::Approve, NOW + 10, &decision)
        .await
        .unwrap();
}

#[tokio::test]
async fn redemption_whose_answers_were_lost_is_redeemed() {
    let Some(t) = lossy().await else { return };
    approved(&t.direct, "r1").await;
    t.lose_every_sdk_answer(UPDATE);

    let outcome = t
        .store
        .redeem("r1", NOW + 20, &family("r1"), &tokens("r1"))
        .await;

    assert!(outcome.is_ok(), "{outcome:?}");
    t.assert_faults_met(UPDATE, t.sdk_attempts);
    let stored = t.direct.get_auth_request("r1").await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Redeemed);
    for token in tokens("r1") {
        assert!(t.direct.get_token(&token.hash).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn decision_whose_answers_were_lost_is_recorded() {
    let Some(t) = lossy().await else { return };
    t.direct
        .create_auth_request(&request("r1"), None, PendingLimit::NONE)
        .await
        .unwrap();
    t.lose_every_sdk_answer(UPDATE);

    let outcome = t
        .store
        .decide("r1", Decision::Approve, NOW + 10, &jti("d1"))
        .await;

    assert!(outcome.is_ok(), "{outcome:?}");
    t.assert_faults_met(UPDATE, t.sdk_attempts);
    let stored = t.direct.get_auth_request("r1").await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Approved);
    // The decision's jti is spent all the same: another call with it is a replay.
    let replay = t
        .direct
        .decide("r1", Decision::Approve, NOW + 11, &jti("d1"))
        .await;
    assert!(
        matches!(replay, Err(DecideError::JtiReplayed)),
        "{replay:?}"
    );
}

#[tokio::test]
async fn creation_whose_answers_were_lost_is_created() {
    let Some(t) = lossy().await else { return };
    let mut r = request("r1");
    r.delivery_mode = DeliveryMode::Ping;
    t.lose_every_sdk_answer(PUT);

    let outcome = t
        .store
        .create_auth_request(&r, Some(&jti("ro1")), PendingLimit::NONE)
        .await;

    assert!(outcome.is_ok(), "{outcome:?}");
    t.assert_faults_met(PUT, t.sdk_attempts);
    assert_eq!(t.direct.get_auth_request("r1").await.unwrap(), Some(r));
    let replay = t
        .direct
        .create_auth_request(&request("r2"), Some(&jti("ro1")), PendingLimit::NONE)
        .await;
    assert!(
        matches!(replay, Err(CreateError::JtiReplayed)),
        "{replay:?}"
    );
}

#[tokio::test]
async fn answer_lost_once_is_learnt_from_the_sdk_retry() {
    let Some(t) = lossy().await else { return };
    approved(&t.direct, "r1").await;
    t.lose_answers(UPDATE, 1);

    let outcome = t
        .store
        .redeem("r1", NOW + 20, &family("r1"), &tokens("r1"))
        .await;

    assert!(outcome.is_ok(), "{outcome:?}");
    t.assert_faults_met(UPDATE, 1);
}

fn phone(endpoint: &str) -> Device {
    Device {
        device_id: "d1".into(),
        sub: "alice".into(),
        public_key: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
        platform: Some("GCM".into()),
        push_token: Some("push-d1".into()),
        endpoint_arn: Some(format!(
            "arn:aws:sns:us-east-1:0:endpoint/GCM/app/{endpoint}"
        )),
        enabled: true,
    }
}

#[tokio::test]
async fn device_enrolled_again_between_disabling_read_and_write_is_not_disabled() {
    let Some(t) = lossy().await else { return };
    t.direct.put_device(&phone("first")).await.unwrap();
    let read = phone("first");
    let gate = t.proxy.hold_next(TRANSACT);

    let store = t.store.clone();
    let disabling = tokio::spawn(async move { store.disable_device(&read).await });
    // disable_device has read the device and sent its write: the app enrols again meanwhile.
    gate.arrived().await;
    t.direct.put_device(&phone("again")).await.unwrap();
    gate.release();

    assert!(!disabling.await.unwrap().unwrap(), "reported as left alone");
    assert_eq!(
        t.direct.get_device("d1").await.unwrap(),
        Some(phone("again"))
    );
    assert_eq!(
        t.direct.list_devices("alice").await.unwrap(),
        [phone("again")]
    );
}
