//! Cases of `Accounts`: users found by login hint, devices per user, enrolment codes, devices
//! disabled only as they were read.

use std::sync::Arc;

use super::{NOW, code_of};
use ciba_shared::domain::{Device, EnrollmentCode, User};
use ciba_shared::store::{EnrollError, Store};

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
        code_of(store.as_ref(), "h1", NOW).await,
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
    assert_eq!(code_of(store.as_ref(), "h1", NOW).await, None);
}

pub async fn expired_enrollment_code_enrols_nothing(store: Arc<dyn Store>) {
    store
        .accounts()
        .put_enrollment_code(&code("h1", "alice"))
        .await
        .unwrap();
    assert_eq!(code_of(store.as_ref(), "h1", NOW + 600).await, None);
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
        code_of(store.as_ref(), "h1", NOW).await.is_some(),
        "still usable by alice"
    );
}

pub async fn device_is_disabled_as_it_was_read(store: Arc<dyn Store>) {
    store
        .accounts()
        .put_device(&phone("d1", "alice"))
        .await
        .unwrap();
    let read = store.accounts().list_devices("alice").await.unwrap();

    assert!(store.accounts().disable_device(&read[0]).await.unwrap());

    let disabled = Device {
        enabled: false,
        ..phone("d1", "alice")
    };
    assert_eq!(
        store.accounts().get_device("d1").await.unwrap(),
        Some(disabled.clone())
    );
    assert_eq!(
        store.accounts().list_devices("alice").await.unwrap(),
        [disabled]
    );
}

pub async fn device_enrolled_again_since_it_was_read_is_not_disabled(store: Arc<dyn Store>) {
    for hash in ["h1", "h2"] {
        store
            .accounts()
            .put_enrollment_code(&code(hash, "alice"))
            .await
            .unwrap();
    }
    store
        .accounts()
        .enroll_device("h1", &phone("d1", "alice"), NOW)
        .await
        .unwrap();
    let read = store.accounts().list_devices("alice").await.unwrap();
    // The app enrols again (a new key, a new endpoint) before the stale copy is disabled.
    let again = Device {
        public_key: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x2", "y": "y2"}),
        endpoint_arn: Some("arn:aws:sns:us-east-1:0:endpoint/GCM/app/d1-again".into()),
        ..phone("d1", "alice")
    };
    store
        .accounts()
        .enroll_device("h2", &again, NOW)
        .await
        .unwrap();

    assert!(!store.accounts().disable_device(&read[0]).await.unwrap());

    assert_eq!(
        store.accounts().get_device("d1").await.unwrap(),
        Some(again.clone())
    );
    assert_eq!(
        store.accounts().list_devices("alice").await.unwrap(),
        [again]
    );
}
