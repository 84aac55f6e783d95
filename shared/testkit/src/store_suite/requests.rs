//! Cases of `Requests`: creation and discarding, the poll-rate check, the expiry sweep and
//! the notification mark.

use std::sync::Arc;

use super::{NOW, by_txn, create, created, expire, jti, poll, request, stored_request};
use ciba_shared::domain::{AuthRequest, Decision, DeliveryMode, Status};
use ciba_shared::store::{
    CreateError, DecideError, PendingLimit, PollOutcome, SWEEP_BATCH, SWEEP_LOOKBACK_SECS, Store,
};

pub async fn discarded_request_is_gone_and_its_jti_reusable(store: Arc<dyn Store>) {
    let r = request("r1");
    let j = jti("c1", "ro-1");
    store
        .requests()
        .create_auth_request(&r, Some(&j), PendingLimit::NONE)
        .await
        .unwrap();
    store
        .requests()
        .discard_auth_request(&r, Some(&j))
        .await
        .unwrap();
    assert_eq!(store.requests().get_auth_request("r1").await.unwrap(), None);
    assert_eq!(by_txn(store.as_ref(), "txn-r1").await, None);
    store
        .requests()
        .create_auth_request(&request("r2"), Some(&j), PendingLimit::NONE)
        .await
        .unwrap();
}

pub async fn created_request_is_found_by_id_and_by_txn(store: Arc<dyn Store>) {
    let r = request("r1");
    store
        .requests()
        .create_auth_request(&r, Some(&jti("c1", "ro-1")), PendingLimit::NONE)
        .await
        .unwrap();
    assert_eq!(
        store.requests().get_auth_request("r1").await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(by_txn(store.as_ref(), "txn-r1").await, Some(r));
    assert_eq!(store.requests().get_auth_request("r2").await.unwrap(), None);
    assert_eq!(by_txn(store.as_ref(), "txn-r2").await, None);
}

/// An id shaped as bc-authorize mints them (`<txn>.<secret>`) is found by itself and by its
/// txn; the txn alone, or the txn with another secret, finds and changes nothing: a device knows
/// the txn, and must not be able to act as the client.
pub async fn minted_request_is_found_by_its_whole_id_and_its_txn_only(store: Arc<dyn Store>) {
    let r = request("t7.s7");
    create(store.as_ref(), &r).await;
    assert_eq!(stored_request(store.as_ref(), "t7.s7").await, r);
    assert_eq!(by_txn(store.as_ref(), "t7").await, Some(r.clone()));
    let requests = store.requests();
    for forged in ["t7", "t7.s8", "t7.s7x", "t7.s"] {
        assert_eq!(
            requests.get_auth_request(forged).await.unwrap(),
            None,
            "{forged}"
        );
        assert_eq!(
            requests.record_poll(forged, NOW * 1000).await.unwrap(),
            PollOutcome::Gone,
            "{forged}"
        );
        let decided = requests
            .decide(forged, Decision::Approve, NOW + 1, &jti("dev", forged))
            .await;
        assert!(
            matches!(decided, Err(DecideError::NotFound)),
            "{forged}: {decided:?}"
        );
        assert!(
            !requests.mark_notified(forged, NOW + 1).await.unwrap(),
            "{forged}"
        );
    }
    assert_eq!(
        stored_request(store.as_ref(), "t7.s7").await,
        r,
        "unchanged"
    );
}

pub async fn replayed_request_object_jti_stores_nothing(store: Arc<dyn Store>) {
    store
        .requests()
        .create_auth_request(&request("r1"), Some(&jti("c1", "ro-1")), PendingLimit::NONE)
        .await
        .unwrap();
    let replay = store
        .requests()
        .create_auth_request(&request("r2"), Some(&jti("c1", "ro-1")), PendingLimit::NONE)
        .await;
    assert!(
        matches!(replay, Err(CreateError::JtiReplayed)),
        "{replay:?}"
    );
    assert_eq!(store.requests().get_auth_request("r2").await.unwrap(), None);
    assert_eq!(by_txn(store.as_ref(), "txn-r2").await, None);
}

pub async fn first_poll_is_in_time(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let outcome = poll(store.as_ref(), "r1", NOW * 1000).await;
    assert_eq!(outcome, PollOutcome::InTime);
}

pub async fn poll_sooner_than_interval_grows_interval_by_five(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    poll(store.as_ref(), "r1", NOW * 1000).await;
    let second = poll(store.as_ref(), "r1", NOW * 1000 + 1999).await;
    assert_eq!(second, PollOutcome::TooSoon { interval: 7 });
    let third = poll(store.as_ref(), "r1", NOW * 1000 + 5000).await;
    assert_eq!(third, PollOutcome::TooSoon { interval: 12 });
    let stored = stored_request(store.as_ref(), "r1").await;
    assert_eq!(stored.interval, 12);
    assert_eq!(stored.last_poll_ms, Some(NOW * 1000 + 5000));
}

pub async fn poll_after_interval_is_in_time(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    poll(store.as_ref(), "r1", NOW * 1000).await;
    let outcome = poll(store.as_ref(), "r1", NOW * 1000 + 2000).await;
    assert_eq!(outcome, PollOutcome::InTime);
    assert_eq!(stored_request(store.as_ref(), "r1").await.interval, 2);
}

pub async fn poll_of_unknown_request_is_gone(store: Arc<dyn Store>) {
    assert_eq!(
        poll(store.as_ref(), "nope", NOW * 1000).await,
        PollOutcome::Gone
    );
}

fn ping(id: &str, expires_at: i64) -> AuthRequest {
    AuthRequest {
        delivery_mode: DeliveryMode::Ping,
        client_notification_token: Some("cnt".into()),
        expires_at,
        ..request(id)
    }
}

pub async fn expiry_sweep_marks_due_ping_and_push_requests_once(store: Arc<dyn Store>) {
    create(store.as_ref(), &ping("p1", NOW + 100)).await;
    let push = AuthRequest {
        delivery_mode: DeliveryMode::Push,
        ..ping("p2", NOW + 130)
    };
    create(store.as_ref(), &push).await;
    create(store.as_ref(), &ping("p3", NOW + 500)).await;
    assert!(expire(store.as_ref(), NOW + 99).await.is_empty());
    let mut ids: Vec<String> = expire(store.as_ref(), NOW + 130)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, Status::Expired);
            r.auth_req_id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2"]);
    assert!(expire(store.as_ref(), NOW + 131).await.is_empty(), "once");
    let stored = stored_request(store.as_ref(), "p1").await;
    assert_eq!(stored.status, Status::Expired);
    assert_eq!(
        stored_request(store.as_ref(), "p3").await.status,
        Status::Pending
    );
}

pub async fn expiry_sweep_after_hours_down_still_finds_what_expired_meanwhile(
    store: Arc<dyn Store>,
) {
    create(store.as_ref(), &ping("p1", NOW + 100)).await;
    create(store.as_ref(), &ping("p2", NOW + 3 * 3600)).await;
    // A sweep ran just before both were due; then the sweeper was down for five hours.
    assert!(sweep(store.as_ref(), NOW + 50).await.is_empty());
    let late = NOW + 5 * 3600;
    let mut ids: Vec<String> = sweep(store.as_ref(), late)
        .await
        .into_iter()
        .map(|r| r.auth_req_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2"]);
    assert!(sweep(store.as_ref(), late + 60).await.is_empty(), "once");
}

/// A sweep as the deployed sweeper makes it.
async fn sweep(store: &dyn Store, now: i64) -> Vec<AuthRequest> {
    store
        .requests()
        .expire_due(now, SWEEP_LOOKBACK_SECS, SWEEP_BATCH)
        .await
        .unwrap()
}

pub async fn expiry_sweep_leaves_poll_and_decided_requests(store: Arc<dyn Store>) {
    created(&store, "poll").await;
    create(store.as_ref(), &ping("p1", NOW + 100)).await;
    store
        .requests()
        .decide("p1", Decision::Approve, NOW + 5, &jti("dev", "d1"))
        .await
        .unwrap();
    assert!(expire(store.as_ref(), NOW + 700).await.is_empty());
    assert_eq!(
        stored_request(store.as_ref(), "p1").await.status,
        Status::Approved
    );
    assert_eq!(
        stored_request(store.as_ref(), "poll").await.status,
        Status::Pending
    );
}

pub async fn expired_request_cannot_be_decided(store: Arc<dyn Store>) {
    create(store.as_ref(), &ping("p1", NOW + 100)).await;
    expire(store.as_ref(), NOW + 100).await;
    let late = store
        .requests()
        .decide("p1", Decision::Approve, NOW + 100, &jti("dev", "d1"))
        .await;
    assert!(matches!(late, Err(DecideError::Expired)), "{late:?}");
}

pub async fn notification_is_marked_once(store: Arc<dyn Store>) {
    create(store.as_ref(), &ping("p1", NOW + 100)).await;
    assert!(store.requests().mark_notified("p1", NOW + 5).await.unwrap());
    assert!(!store.requests().mark_notified("p1", NOW + 6).await.unwrap());
    assert_eq!(
        stored_request(store.as_ref(), "p1").await.notified_at,
        Some(NOW + 5)
    );
}
