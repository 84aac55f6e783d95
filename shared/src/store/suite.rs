//! The store test suite. Every adapter runs all of it through `store_suite!`, so the in-memory
//! store and DynamoDB behave the same way.

use std::sync::Arc;

use super::{
    CreateError, DecideError, EnrollError, JtiUse, PollOutcome, RedeemError, RotateError, Store,
};
use crate::domain::{
    AuthMethod, AuthRequest, Client, Decision, DeliveryMode, Device, EnrollmentCode, Status,
    TokenKind, TokenRecord, User,
};

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
            unknown_client_is_none,
            user_is_found_by_each_login_hint_ignoring_case,
            unknown_hint_finds_nobody,
            devices_are_listed_per_user,
            enrollment_code_enrols_one_device_once,
            expired_enrollment_code_enrols_nothing,
            enrollment_code_of_another_user_enrols_nothing,
            discarded_request_is_gone_and_its_jti_reusable,
            jti_is_accepted_once,
            expired_jti_may_be_used_again,
            created_request_is_found_by_id_and_by_txn,
            replayed_request_object_jti_stores_nothing,
            first_poll_is_in_time,
            poll_sooner_than_interval_grows_interval_by_five,
            poll_after_interval_is_in_time,
            poll_of_unknown_request_is_gone,
            decision_is_recorded_once,
            decision_after_expiry_is_refused,
            decision_with_replayed_jti_leaves_request_pending,
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
            expired_request_cannot_be_decided,
            notification_is_marked_once,
            refresh_token_of_another_client_does_not_rotate,
            expired_refresh_token_does_not_rotate,
            concurrent_decisions_succeed_exactly_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::store::suite::$case(store).await;
            }
        )*
    };
}

const NOW: i64 = 1_800_000_000;

pub fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        client_name: Some(format!("{id} name")),
        client_secret_hash: Some(crate::secret::hash("secret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        jwks: None,
        backchannel_token_delivery_mode: DeliveryMode::Poll,
        backchannel_client_notification_endpoint: None,
        backchannel_authentication_request_signing_alg: None,
        backchannel_user_code_parameter: false,
    }
}

pub fn request(id: &str) -> AuthRequest {
    AuthRequest {
        auth_req_id: id.into(),
        txn: format!("txn-{id}"),
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
        hash: hash.into(),
        kind,
        client_id: "c1".into(),
        sub: "alice".into(),
        scope: "openid".into(),
        auth_req_id: "r1".into(),
        auth_time: NOW + 10,
        expires_at: NOW + 3600,
    }
}

async fn created(store: &Arc<dyn Store>, id: &str) -> AuthRequest {
    let r = request(id);
    store
        .requests()
        .create_auth_request(&r, None)
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

pub async fn client_round_trips(store: Arc<dyn Store>) {
    let c = client("c1");
    store.clients().put_client(&c).await.unwrap();
    assert_eq!(store.clients().get_client("c1").await.unwrap(), Some(c));
}

pub async fn unknown_client_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.clients().get_client("nobody").await.unwrap(), None);
}

pub async fn user_is_found_by_each_login_hint_ignoring_case(store: Arc<dyn Store>) {
    let user = User {
        sub: "alice".into(),
        login_hints: vec![
            "alice".into(),
            "Alice@Example.com".into(),
            "+15555550100".into(),
        ],
        claims: serde_json::from_value(serde_json::json!({"name": "Alice"})).unwrap(),
        user_code_hash: None,
    };
    store.accounts().put_user(&user).await.unwrap();
    for hint in ["alice", "ALICE", "alice@example.com", " +15555550100 "] {
        let found = store.accounts().find_user_by_hint(hint).await.unwrap();
        assert_eq!(found.as_ref(), Some(&user), "hint {hint}");
    }
    assert_eq!(
        store.accounts().get_user("alice").await.unwrap(),
        Some(user)
    );
}

pub async fn unknown_hint_finds_nobody(store: Arc<dyn Store>) {
    assert_eq!(
        store.accounts().find_user_by_hint("mallory").await.unwrap(),
        None
    );
    assert_eq!(store.accounts().get_user("mallory").await.unwrap(), None);
}

pub async fn devices_are_listed_per_user(store: Arc<dyn Store>) {
    let device = |id: &str, sub: &str| Device {
        device_id: id.into(),
        sub: sub.into(),
        public_key: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
        platform: Some("GCM".into()),
        push_token: Some(format!("push-{id}")),
        endpoint_arn: None,
        enabled: true,
    };
    for (id, sub) in [("d1", "alice"), ("d2", "alice"), ("d3", "bob")] {
        store.accounts().put_device(&device(id, sub)).await.unwrap();
    }
    let ids: Vec<String> = store
        .accounts()
        .list_devices("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["d1", "d2"]);
    assert_eq!(
        store.accounts().get_device("d3").await.unwrap(),
        Some(device("d3", "bob"))
    );
    assert!(
        store
            .accounts()
            .list_devices("carol")
            .await
            .unwrap()
            .is_empty()
    );
}

fn phone(id: &str, sub: &str) -> Device {
    Device {
        device_id: id.into(),
        sub: sub.into(),
        public_key: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
        platform: Some("GCM".into()),
        push_token: Some(format!("push-{id}")),
        endpoint_arn: Some(format!("arn:aws:sns:us-east-1:0:endpoint/GCM/app/{id}")),
        enabled: true,
    }
}

fn code(hash: &str, sub: &str) -> EnrollmentCode {
    EnrollmentCode {
        code_hash: hash.into(),
        sub: sub.into(),
        expires_at: NOW + 600,
    }
}

pub async fn enrollment_code_enrols_one_device_once(store: Arc<dyn Store>) {
    store
        .accounts()
        .put_enrollment_code(&code("h1", "alice"))
        .await
        .unwrap();
    assert_eq!(
        store
            .accounts()
            .get_enrollment_code("h1", NOW)
            .await
            .unwrap(),
        Some(code("h1", "alice"))
    );
    store
        .accounts()
        .enroll_device("h1", &phone("d1", "alice"), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.accounts().get_device("d1").await.unwrap(),
        Some(phone("d1", "alice"))
    );
    assert_eq!(
        store.accounts().list_devices("alice").await.unwrap(),
        [phone("d1", "alice")]
    );
    let again = store
        .accounts()
        .enroll_device("h1", &phone("d2", "alice"), NOW)
        .await;
    assert!(matches!(again, Err(EnrollError::InvalidCode)), "{again:?}");
    assert_eq!(store.accounts().get_device("d2").await.unwrap(), None);
    assert_eq!(
        store
            .accounts()
            .get_enrollment_code("h1", NOW)
            .await
            .unwrap(),
        None
    );
}

pub async fn expired_enrollment_code_enrols_nothing(store: Arc<dyn Store>) {
    store
        .accounts()
        .put_enrollment_code(&code("h1", "alice"))
        .await
        .unwrap();
    assert_eq!(
        store
            .accounts()
            .get_enrollment_code("h1", NOW + 600)
            .await
            .unwrap(),
        None
    );
    let late = store
        .accounts()
        .enroll_device("h1", &phone("d1", "alice"), NOW + 600)
        .await;
    assert!(matches!(late, Err(EnrollError::InvalidCode)), "{late:?}");
    assert_eq!(store.accounts().get_device("d1").await.unwrap(), None);
    let unknown = store
        .accounts()
        .enroll_device("nope", &phone("d1", "alice"), NOW)
        .await;
    assert!(
        matches!(unknown, Err(EnrollError::InvalidCode)),
        "{unknown:?}"
    );
}

pub async fn enrollment_code_of_another_user_enrols_nothing(store: Arc<dyn Store>) {
    store
        .accounts()
        .put_enrollment_code(&code("h1", "alice"))
        .await
        .unwrap();
    let foreign = store
        .accounts()
        .enroll_device("h1", &phone("d1", "bob"), NOW)
        .await;
    assert!(
        matches!(foreign, Err(EnrollError::InvalidCode)),
        "{foreign:?}"
    );
    assert!(
        store
            .accounts()
            .list_devices("bob")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .accounts()
            .get_enrollment_code("h1", NOW)
            .await
            .unwrap()
            .is_some(),
        "still usable by alice"
    );
}

pub async fn discarded_request_is_gone_and_its_jti_reusable(store: Arc<dyn Store>) {
    let r = request("r1");
    let j = jti("c1", "ro-1");
    store
        .requests()
        .create_auth_request(&r, Some(&j))
        .await
        .unwrap();
    store
        .requests()
        .discard_auth_request(&r, Some(&j))
        .await
        .unwrap();
    assert_eq!(store.requests().get_auth_request("r1").await.unwrap(), None);
    assert_eq!(
        store
            .requests()
            .get_auth_request_by_txn("txn-r1")
            .await
            .unwrap(),
        None
    );
    store
        .requests()
        .create_auth_request(&request("r2"), Some(&j))
        .await
        .unwrap();
}

pub async fn jti_is_accepted_once(store: Arc<dyn Store>) {
    let j = jti("c1", "j1");
    assert!(store.jtis().use_jti(&j, NOW).await.unwrap());
    assert!(!store.jtis().use_jti(&j, NOW + 1).await.unwrap());
    assert!(
        store.jtis().use_jti(&jti("c2", "j1"), NOW).await.unwrap(),
        "jti is per scope"
    );
}

pub async fn expired_jti_may_be_used_again(store: Arc<dyn Store>) {
    let j = jti("c1", "j1");
    assert!(store.jtis().use_jti(&j, NOW).await.unwrap());
    assert!(store.jtis().use_jti(&j, j.expires_at + 1).await.unwrap());
}

pub async fn created_request_is_found_by_id_and_by_txn(store: Arc<dyn Store>) {
    let r = request("r1");
    store
        .requests()
        .create_auth_request(&r, Some(&jti("c1", "ro-1")))
        .await
        .unwrap();
    assert_eq!(
        store.requests().get_auth_request("r1").await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        store
            .requests()
            .get_auth_request_by_txn("txn-r1")
            .await
            .unwrap(),
        Some(r)
    );
    assert_eq!(store.requests().get_auth_request("r2").await.unwrap(), None);
    assert_eq!(
        store
            .requests()
            .get_auth_request_by_txn("txn-r2")
            .await
            .unwrap(),
        None
    );
}

pub async fn replayed_request_object_jti_stores_nothing(store: Arc<dyn Store>) {
    store
        .requests()
        .create_auth_request(&request("r1"), Some(&jti("c1", "ro-1")))
        .await
        .unwrap();
    let replay = store
        .requests()
        .create_auth_request(&request("r2"), Some(&jti("c1", "ro-1")))
        .await;
    assert!(
        matches!(replay, Err(CreateError::JtiReplayed)),
        "{replay:?}"
    );
    assert_eq!(store.requests().get_auth_request("r2").await.unwrap(), None);
    assert_eq!(
        store
            .requests()
            .get_auth_request_by_txn("txn-r2")
            .await
            .unwrap(),
        None
    );
}

pub async fn first_poll_is_in_time(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let outcome = store
        .requests()
        .record_poll("r1", NOW * 1000)
        .await
        .unwrap();
    assert_eq!(outcome, PollOutcome::InTime);
}

pub async fn poll_sooner_than_interval_grows_interval_by_five(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    store
        .requests()
        .record_poll("r1", NOW * 1000)
        .await
        .unwrap();
    let second = store
        .requests()
        .record_poll("r1", NOW * 1000 + 1999)
        .await
        .unwrap();
    assert_eq!(second, PollOutcome::TooSoon { interval: 7 });
    let third = store
        .requests()
        .record_poll("r1", NOW * 1000 + 5000)
        .await
        .unwrap();
    assert_eq!(third, PollOutcome::TooSoon { interval: 12 });
    let stored = store
        .requests()
        .get_auth_request("r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.interval, 12);
    assert_eq!(stored.last_poll_ms, Some(NOW * 1000 + 5000));
}

pub async fn poll_after_interval_is_in_time(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    store
        .requests()
        .record_poll("r1", NOW * 1000)
        .await
        .unwrap();
    let outcome = store
        .requests()
        .record_poll("r1", NOW * 1000 + 2000)
        .await
        .unwrap();
    assert_eq!(outcome, PollOutcome::InTime);
    assert_eq!(
        store
            .requests()
            .get_auth_request("r1")
            .await
            .unwrap()
            .unwrap()
            .interval,
        2
    );
}

pub async fn poll_of_unknown_request_is_gone(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .requests()
            .record_poll("nope", NOW * 1000)
            .await
            .unwrap(),
        PollOutcome::Gone
    );
}

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
    let stored = store
        .requests()
        .get_auth_request("r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Denied);
    assert_eq!(stored.decided_at, Some(NOW + 5));
}

pub async fn decision_after_expiry_is_refused(store: Arc<dyn Store>) {
    let r = created(&store, "r1").await;
    let late = store
        .requests()
        .decide("r1", Decision::Approve, r.expires_at, &jti("dev", "d1"))
        .await;
    assert!(matches!(late, Err(DecideError::Expired)), "{late:?}");
    let stored = store
        .requests()
        .get_auth_request("r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Pending);
}

pub async fn decision_with_replayed_jti_leaves_request_pending(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    created(&store, "r2").await;
    store
        .requests()
        .decide("r1", Decision::Approve, NOW + 1, &jti("dev", "d1"))
        .await
        .unwrap();
    let replay = store
        .requests()
        .decide("r2", Decision::Approve, NOW + 2, &jti("dev", "d1"))
        .await;
    assert!(
        matches!(replay, Err(DecideError::JtiReplayed)),
        "{replay:?}"
    );
    let stored = store
        .requests()
        .get_auth_request("r2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Pending);
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

pub async fn pending_request_cannot_be_redeemed(store: Arc<dyn Store>) {
    created(&store, "r1").await;
    let outcome = store.requests().redeem("r1", NOW + 1, &[]).await;
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
    let outcome = store.requests().redeem("r1", NOW + 2, &[]).await;
    assert!(
        matches!(outcome, Err(RedeemError::NotRedeemable)),
        "{outcome:?}"
    );
}

pub async fn expired_request_cannot_be_redeemed(store: Arc<dyn Store>) {
    approved(&store, "r1").await;
    let outcome = store
        .requests()
        .redeem("r1", NOW + 600, &[token("h", TokenKind::Access)])
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
        .redeem("r1", NOW + 20, &tokens)
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
        .redeem("r1", NOW + 21, &[token("other", TokenKind::Access)])
        .await;
    assert!(
        matches!(again, Err(RedeemError::NotRedeemable)),
        "{again:?}"
    );
    assert_eq!(store.tokens().get_token("other").await.unwrap(), None);
    let stored = store
        .requests()
        .get_auth_request("r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Redeemed);
}

pub async fn concurrent_redemptions_succeed_exactly_once(store: Arc<dyn Store>) {
    approved(&store, "r1").await;
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let t = token(&format!("at-{i}"), TokenKind::Access);
            store.requests().redeem("r1", NOW + 20, &[t]).await.is_ok()
        })
    });
    let mut wins = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        wins += usize::from(attempt.await.unwrap());
    }
    assert_eq!(wins, 1);
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

async fn with_refresh_token(store: &Arc<dyn Store>) {
    approved(store, "r1").await;
    store
        .requests()
        .redeem("r1", NOW + 20, &[token("rt-1", TokenKind::Refresh)])
        .await
        .unwrap();
}

pub async fn refresh_token_rotates_once(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let next = [
        token("at-2", TokenKind::Access),
        token("rt-2", TokenKind::Refresh),
    ];
    store
        .tokens()
        .rotate_refresh_token("rt-1", "c1", NOW + 30, &next)
        .await
        .unwrap();
    assert_eq!(
        store.tokens().get_token("rt-1").await.unwrap(),
        None,
        "the old one is spent"
    );
    assert_eq!(
        store.tokens().get_token("rt-2").await.unwrap(),
        Some(next[1].clone())
    );
    let again = store
        .tokens()
        .rotate_refresh_token("rt-1", "c1", NOW + 31, &[token("rt-3", TokenKind::Refresh)])
        .await;
    assert!(matches!(again, Err(RotateError::Invalid)), "{again:?}");
    assert_eq!(store.tokens().get_token("rt-3").await.unwrap(), None);
}

pub async fn refresh_token_of_another_client_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let stolen = store
        .tokens()
        .rotate_refresh_token("rt-1", "c2", NOW + 30, &[token("rt-2", TokenKind::Refresh)])
        .await;
    assert!(matches!(stolen, Err(RotateError::Invalid)), "{stolen:?}");
    assert!(store.tokens().get_token("rt-1").await.unwrap().is_some());
    assert_eq!(store.tokens().get_token("rt-2").await.unwrap(), None);
}

pub async fn expired_refresh_token_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let late = store
        .tokens()
        .rotate_refresh_token(
            "rt-1",
            "c1",
            NOW + 3600,
            &[token("rt-2", TokenKind::Refresh)],
        )
        .await;
    assert!(matches!(late, Err(RotateError::Invalid)), "{late:?}");
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
    store
        .requests()
        .create_auth_request(&ping("p1", NOW + 100), None)
        .await
        .unwrap();
    let push = AuthRequest {
        delivery_mode: DeliveryMode::Push,
        ..ping("p2", NOW + 130)
    };
    store
        .requests()
        .create_auth_request(&push, None)
        .await
        .unwrap();
    store
        .requests()
        .create_auth_request(&ping("p3", NOW + 500), None)
        .await
        .unwrap();
    assert!(
        store
            .requests()
            .expire_due(NOW + 99, 3600, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let mut ids: Vec<String> = store
        .requests()
        .expire_due(NOW + 130, 3600, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, Status::Expired);
            r.auth_req_id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2"]);
    assert!(
        store
            .requests()
            .expire_due(NOW + 131, 3600, 100)
            .await
            .unwrap()
            .is_empty(),
        "once"
    );
    let stored = store
        .requests()
        .get_auth_request("p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Expired);
    assert_eq!(
        store
            .requests()
            .get_auth_request("p3")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Pending
    );
}

pub async fn expiry_sweep_leaves_poll_and_decided_requests(store: Arc<dyn Store>) {
    created(&store, "poll").await;
    store
        .requests()
        .create_auth_request(&ping("p1", NOW + 100), None)
        .await
        .unwrap();
    store
        .requests()
        .decide("p1", Decision::Approve, NOW + 5, &jti("dev", "d1"))
        .await
        .unwrap();
    assert!(
        store
            .requests()
            .expire_due(NOW + 700, 3600, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .requests()
            .get_auth_request("p1")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Approved
    );
    assert_eq!(
        store
            .requests()
            .get_auth_request("poll")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Pending
    );
}

pub async fn expired_request_cannot_be_decided(store: Arc<dyn Store>) {
    store
        .requests()
        .create_auth_request(&ping("p1", NOW + 100), None)
        .await
        .unwrap();
    store
        .requests()
        .expire_due(NOW + 100, 3600, 100)
        .await
        .unwrap();
    let late = store
        .requests()
        .decide("p1", Decision::Approve, NOW + 100, &jti("dev", "d1"))
        .await;
    assert!(matches!(late, Err(DecideError::Expired)), "{late:?}");
}

pub async fn notification_is_marked_once(store: Arc<dyn Store>) {
    store
        .requests()
        .create_auth_request(&ping("p1", NOW + 100), None)
        .await
        .unwrap();
    assert!(store.requests().mark_notified("p1", NOW + 5).await.unwrap());
    assert!(!store.requests().mark_notified("p1", NOW + 6).await.unwrap());
    assert_eq!(
        store
            .requests()
            .get_auth_request("p1")
            .await
            .unwrap()
            .unwrap()
            .notified_at,
        Some(NOW + 5)
    );
}
