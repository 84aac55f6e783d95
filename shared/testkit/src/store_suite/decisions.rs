//! Cases of `Requests`: the one decision and the one redemption of a request.

use std::sync::Arc;

use super::{NOW, approved, created, family, jti, stored_request, token};
use ciba_shared::domain::{Decision, Evidence, Status, TokenKind};
use ciba_shared::store::{DecideError, RedeemError, Store};

pub async fn decision_is_recorded_once(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    store
        .requests()
        .decide("r1", Decision::Deny, NOW + 5, &jti("dev", "d1"))
        .await
        .unwrap();
    let again = store
        .requests()
        .decide("r1", Decision::Approve, NOW + 6, &jti("dev", "d2"))
        .await;
    assert!(
        matches!(again, Err(DecideError::AlreadyDecided)),
        "{again:?}"
    );
    let stored = stored_request(store.as_ref(), "r1").await;
    assert_eq!(stored.status, Status::Denied);
    assert_eq!(stored.decided_at, Some(NOW + 5));
}

/// The device's signed decision is kept with the request in the decision's own write, stays
/// when the request is redeemed, and a refused second decision does not replace it.
pub async fn a_decision_keeps_its_evidence_through_redemption(store: Arc<dyn Store>) {
    let evidence = Evidence {
        decision_jws: "eyJhbGciOiJFUzI1NiJ9.eyJ0eG4iOiJ0MSJ9.c2ln".into(),
        device_id: "dev".into(),
        device_key: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
        device_jkt: "jkt".into(),
        txn_hash: Some("hash".into()),
    };
    created(&store, "r1").await;
    store
        .requests()
        .decide_with(
            "r1",
            Decision::Approve,
            Some(&evidence),
            NOW + 5,
            &jti("dev", "d1"),
        )
        .await
        .unwrap();
    let other = Evidence {
        device_id: "other".into(),
        ..evidence.clone()
    };
    let again = store
        .requests()
        .decide_with(
            "r1",
            Decision::Deny,
            Some(&other),
            NOW + 6,
            &jti("dev", "d2"),
        )
        .await;
    assert!(
        matches!(again, Err(DecideError::AlreadyDecided)),
        "{again:?}"
    );
    assert_eq!(
        stored_request(store.as_ref(), "r1").await.evidence,
        Some(evidence.clone())
    );
    store
        .requests()
        .redeem(
            "r1",
            NOW + 7,
            &family("r1"),
            &[token("t1", TokenKind::Access)],
        )
        .await
        .unwrap();
    let redeemed = stored_request(store.as_ref(), "r1").await;
    assert_eq!(redeemed.status, Status::Redeemed);
    assert_eq!(redeemed.evidence, Some(evidence));
}

pub async fn decision_after_expiry_is_refused(store: Arc<dyn Store>) {
    let r = created(&store, "r1").await;
    let late = store
        .requests()
        .decide("r1", Decision::Approve, r.expires_at, &jti("dev", "d1"))
        .await;
    assert!(matches!(late, Err(DecideError::Expired)), "{late:?}");
    let stored = stored_request(store.as_ref(), "r1").await;
    assert_eq!(stored.status, Status::Pending);
}

/// A decision names its request (its `txn`), so its `jti` is that request's: another request's
/// decision may carry the same value, and a replay can only be of the same request.
pub async fn decision_jti_belongs_to_its_request(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    created(&store, "r2").await;
    store
        .requests()
        .decide("r1", Decision::Approve, NOW + 1, &jti("dev", "d1"))
        .await
        .unwrap();
    store
        .requests()
        .decide("r2", Decision::Deny, NOW + 2, &jti("dev", "d1"))
        .await
        .unwrap();
    let stored = stored_request(store.as_ref(), "r2").await;
    assert_eq!(stored.status, Status::Denied);
}

pub async fn decision_on_unknown_request_is_not_found(store: Arc<dyn Store>) {
    let outcome = store
        .requests()
        .decide("nope", Decision::Approve, NOW, &jti("dev", "d1"))
        .await;
    assert!(matches!(outcome, Err(DecideError::NotFound)), "{outcome:?}");
}

pub async fn replayed_decision_on_decided_request_is_a_replay(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let j = jti("dev", "d1");
    store
        .requests()
        .decide("r1", Decision::Approve, NOW + 1, &j)
        .await
        .unwrap();
    let replay = store
        .requests()
        .decide("r1", Decision::Approve, NOW + 2, &j)
        .await;
    assert!(
        matches!(replay, Err(DecideError::JtiReplayed)),
        "{replay:?}"
    );
}

pub async fn concurrent_decisions_succeed_exactly_once(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let attempts = (0..10).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let decision = if i % 2 == 0 {
                Decision::Approve
            } else {
                Decision::Deny
            };
            store
                .requests()
                .decide("r1", decision, NOW + 3, &jti("dev", &format!("d{i}")))
                .await
                .is_ok()
        })
    });
    let mut wins = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        wins += usize::from(attempt.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub async fn pending_request_cannot_be_redeemed(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let outcome = store
        .requests()
        .redeem("r1", NOW + 1, &family("r1"), &[])
        .await;
    assert!(
        matches!(outcome, Err(RedeemError::NotRedeemable)),
        "{outcome:?}"
    );
}

pub async fn denied_request_cannot_be_redeemed(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    store
        .requests()
        .decide("r1", Decision::Deny, NOW + 1, &jti("dev", "d1"))
        .await
        .unwrap();
    let outcome = store
        .requests()
        .redeem("r1", NOW + 2, &family("r1"), &[])
        .await;
    assert!(
        matches!(outcome, Err(RedeemError::NotRedeemable)),
        "{outcome:?}"
    );
}

pub async fn expired_request_cannot_be_redeemed(store: Arc<dyn Store>) {
    approved(&store, "r1").await;
    let outcome = store
        .requests()
        .redeem(
            "r1",
            NOW + 600,
            &family("r1"),
            &[token("h", TokenKind::Access)],
        )
        .await;
    assert!(
        matches!(outcome, Err(RedeemError::NotRedeemable)),
        "{outcome:?}"
    );
    assert_eq!(store.tokens().get_token("h").await.unwrap(), None);
}

pub async fn approved_request_is_redeemed_once_and_tokens_are_stored(store: Arc<dyn Store>) {
    approved(&store, "r1").await;
    let tokens = [
        token("at-hash", TokenKind::Access),
        token("rt-hash", TokenKind::Refresh),
    ];
    store
        .requests()
        .redeem("r1", NOW + 20, &family("r1"), &tokens)
        .await
        .unwrap();
    assert_eq!(
        store.tokens().get_token("at-hash").await.unwrap(),
        Some(tokens[0].clone())
    );
    assert_eq!(
        store.tokens().get_token("rt-hash").await.unwrap(),
        Some(tokens[1].clone())
    );
    let again = store
        .requests()
        .redeem(
            "r1",
            NOW + 21,
            &family("r1"),
            &[token("other", TokenKind::Access)],
        )
        .await;
    assert!(
        matches!(again, Err(RedeemError::NotRedeemable)),
        "{again:?}"
    );
    assert_eq!(store.tokens().get_token("other").await.unwrap(), None);
    let stored = stored_request(store.as_ref(), "r1").await;
    assert_eq!(stored.status, Status::Redeemed);
}

pub async fn concurrent_redemptions_succeed_exactly_once(store: Arc<dyn Store>) {
    approved(&store, "r1").await;
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let t = token(&format!("at-{i}"), TokenKind::Access);
            store
                .requests()
                .redeem("r1", NOW + 20, &family("r1"), &[t])
                .await
                .is_ok()
        })
    });
    let mut wins = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        wins += usize::from(attempt.await.unwrap());
    }
    assert_eq!(wins, 1);
}
