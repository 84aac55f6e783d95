//! Cases of the abuse limits: pending requests per user (`Requests::create_auth_request` under a
//! `PendingLimit`) and `user_code` attempts per client and user
//! (`Accounts::begin_user_code_attempt`).

use std::sync::Arc;

use super::{NOW, jti, request};
use ciba_shared::domain::{AuthRequest, Decision};
use ciba_shared::store::{Attempt, AttemptLimit, CreateError, Crowded, PendingLimit, Store};

const LIMIT: PendingLimit = PendingLimit {
    per_client: 2,
    per_user: 3,
};

/// Request `id` of `client` for user `sub`.
fn request_of(id: &str, client: &str, sub: &str) -> AuthRequest {
    AuthRequest {
        client_id: client.into(),
        sub: sub.into(),
        ..request(id)
    }
}

async fn create(store: &dyn Store, r: &AuthRequest) -> Result<(), CreateError> {
    store.requests().create_auth_request(r, None, LIMIT).await
}

fn refused(outcome: Result<(), CreateError>) -> Crowded {
    match outcome {
        Err(CreateError::TooManyPending(crowded)) => crowded,
        other => panic!("expected TooManyPending, got {other:?}"),
    }
}

pub async fn pending_requests_beyond_the_per_client_limit_are_refused(store: Arc<dyn Store>) {
    create(&*store, &request_of("r1", "c1", "alice"))
        .await
        .unwrap();
    create(&*store, &request_of("r2", "c1", "alice"))
        .await
        .unwrap();
    let third = create(&*store, &request_of("r3", "c1", "alice")).await;
    assert_eq!(refused(third), Crowded::ByClient);
    assert!(
        store
            .requests()
            .get_auth_request("r3")
            .await
            .unwrap()
            .is_none()
    );
    // Another user, or another client of the same user, is not crowded by them.
    create(&*store, &request_of("r4", "c1", "bob"))
        .await
        .unwrap();
    create(&*store, &request_of("r5", "c2", "alice"))
        .await
        .unwrap();
}

pub async fn pending_requests_beyond_the_per_user_limit_are_refused(store: Arc<dyn Store>) {
    create(&*store, &request_of("r1", "c1", "alice"))
        .await
        .unwrap();
    create(&*store, &request_of("r2", "c2", "alice"))
        .await
        .unwrap();
    create(&*store, &request_of("r3", "c3", "alice"))
        .await
        .unwrap();
    let fourth = create(&*store, &request_of("r4", "c4", "alice")).await;
    assert_eq!(refused(fourth), Crowded::ByUser);
    assert!(
        store
            .requests()
            .get_auth_request("r4")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn decided_discarded_and_expired_requests_are_no_longer_pending(store: Arc<dyn Store>) {
    let first = request_of("r1", "c1", "alice");
    let second = AuthRequest {
        expires_at: NOW + 60,
        ..request_of("r2", "c1", "alice")
    };
    create(&*store, &first).await.unwrap();
    create(&*store, &second).await.unwrap();
    store
        .requests()
        .decide("r1", Decision::Deny, NOW + 5, &jti("dev", "d1"))
        .await
        .unwrap();
    create(&*store, &request_of("r3", "c1", "alice"))
        .await
        .unwrap();
    store
        .requests()
        .discard_auth_request(&request_of("r3", "c1", "alice"), None)
        .await
        .unwrap();
    create(&*store, &request_of("r4", "c1", "alice"))
        .await
        .unwrap();
    // r2 and r4 pending: full, until r2 expires.
    let full = create(&*store, &request_of("r5", "c1", "alice")).await;
    assert_eq!(refused(full), Crowded::ByClient);
    let later = AuthRequest {
        created_at: NOW + 60,
        expires_at: NOW + 660,
        ..request_of("r5", "c1", "alice")
    };
    create(&*store, &later).await.unwrap();
}

pub async fn concurrent_requests_never_exceed_the_pending_limit(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = request_of(&format!("r{i}"), &format!("c{i}"), "alice");
                store.requests().create_auth_request(&r, None, LIMIT).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            Err(CreateError::TooManyPending(Crowded::ByUser)) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(created, 3, "exactly per_user requests are created");
}

const ATTEMPTS: AttemptLimit = AttemptLimit {
    max: 3,
    window: 900,
};

async fn attempt(store: &dyn Store, sub: &str, now: i64) -> Attempt {
    attempt_of(store, "pos", sub, now).await
}

async fn attempt_of(store: &dyn Store, client_id: &str, sub: &str, now: i64) -> Attempt {
    store
        .accounts()
        .begin_user_code_attempt(client_id, sub, now, ATTEMPTS)
        .await
        .unwrap()
}

/// One client's failures lock that client out for the user, not another client, and clearing
/// one client's count leaves the other's.
pub async fn user_code_attempts_are_counted_per_client(store: Arc<dyn Store>) {
    for i in 0..3 {
        assert_eq!(
            attempt_of(&*store, "guesser", "alice", NOW + i).await,
            Attempt::Granted
        );
    }
    assert!(matches!(
        attempt_of(&*store, "guesser", "alice", NOW + 3).await,
        Attempt::Locked { .. }
    ));
    assert_eq!(
        attempt_of(&*store, "pos", "alice", NOW + 3).await,
        Attempt::Granted
    );
    store
        .accounts()
        .clear_user_code_attempts("pos", "alice")
        .await
        .unwrap();
    assert!(matches!(
        attempt_of(&*store, "guesser", "alice", NOW + 4).await,
        Attempt::Locked { .. }
    ));
}

pub async fn user_code_attempts_beyond_the_limit_are_locked_until_the_window_ends(
    store: Arc<dyn Store>,
) {
    for i in 0..3 {
        assert_eq!(attempt(&*store, "alice", NOW + i).await, Attempt::Granted);
    }
    let until = NOW + 900;
    assert_eq!(
        attempt(&*store, "alice", NOW + 3).await,
        Attempt::Locked { until }
    );
    assert_eq!(
        attempt(&*store, "alice", until - 1).await,
        Attempt::Locked { until }
    );
    assert_eq!(attempt(&*store, "bob", NOW + 3).await, Attempt::Granted);
    // The window over, a new one opens with this attempt counted.
    assert_eq!(attempt(&*store, "alice", until).await, Attempt::Granted);
    assert_eq!(attempt(&*store, "alice", until + 1).await, Attempt::Granted);
    assert_eq!(attempt(&*store, "alice", until + 2).await, Attempt::Granted);
    assert_eq!(
        attempt(&*store, "alice", until + 3).await,
        Attempt::Locked { until: until + 900 }
    );
}

pub async fn cleared_user_code_attempts_start_over(store: Arc<dyn Store>) {
    attempt(&*store, "alice", NOW).await;
    attempt(&*store, "alice", NOW + 1).await;
    store
        .accounts()
        .clear_user_code_attempts("pos", "alice")
        .await
        .unwrap();
    for i in 2..5 {
        assert_eq!(attempt(&*store, "alice", NOW + i).await, Attempt::Granted);
    }
    assert!(matches!(
        attempt(&*store, "alice", NOW + 5).await,
        Attempt::Locked { .. }
    ));
}

pub async fn concurrent_user_code_attempts_are_counted_one_by_one(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .accounts()
                    .begin_user_code_attempt("pos", "alice", NOW, ATTEMPTS)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if task.await.unwrap() == Attempt::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, ATTEMPTS.max);
}
