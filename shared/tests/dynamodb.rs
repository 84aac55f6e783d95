//! The DynamoDB adapter's own behaviour on DynamoDB Local, beyond the store suite: how items are
//! laid out, how errors are classified, concurrent polls, table provisioning. Each test skips
//! without `CIBA_DYNAMODB_ENDPOINT` (see `ciba_testkit::dynamodb`).

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use ciba_shared::domain::{Decision, Device};
use ciba_shared::store::dynamodb::{create_table, local_client};
use ciba_shared::store::{
    Accounts, Clients, CreateError, Crowded, DynamoStore, JtiUse, PendingLimit, PollOutcome,
    Requests, StoreError,
};
use ciba_testkit::dynamodb::{store_from_env, table_from_env};
use ciba_testkit::store_suite::request;

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let store = DynamoStore::new(local_client("http://127.0.0.1:9").await, "t");
    let err = store.get_client("c1").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn missing_table_is_a_fault() {
    let Some(local) = table_from_env().await else {
        return;
    };
    let store = DynamoStore::new(local.client, "no-such-table");
    let err = store.get_client("c1").await.unwrap_err();
    assert!(matches!(err, StoreError::Fault(_)), "{err:?}");
}

const NOW_MS: i64 = 1_800_000_000_000;

#[tokio::test]
async fn auth_request_is_stored_as_top_level_attributes() {
    let Some(local) = table_from_env().await else {
        return;
    };
    let store = &local.store;
    let read = |pk: &'static str, sk: &'static str| {
        let local = &local;
        async move {
            local
                .client
                .get_item()
                .table_name(&local.table)
                .key("pk", AttributeValue::S(pk.into()))
                .key("sk", AttributeValue::S(sk.into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let r = request("r1");
    store
        .create_auth_request(&r, None, PendingLimit::NONE)
        .await
        .unwrap();
    store.record_poll("r1", NOW_MS).await.unwrap();
    let item = read("AUTHREQ#r1", "AUTHREQ").await;
    let n = |name: &str| item.get(name).cloned();
    let num = |v: i64| Some(AttributeValue::N(v.to_string()));
    assert_eq!(n("status"), Some(AttributeValue::S("pending".into())));
    assert_eq!(n("expires_at"), num(r.expires_at));
    assert_eq!(n("ttl"), num(r.expires_at + 86_400));
    assert_eq!(n("interval"), num(2));
    assert_eq!(n("last_poll_ms"), num(NOW_MS));
    assert_eq!(n("next_poll_ms"), num(NOW_MS + 2000));
    assert!(!item.contains_key("data"));
    let txn = read("TXN#txn-r1", "TXN").await;
    assert_eq!(
        txn.get("auth_req_id"),
        Some(&AttributeValue::S("r1".into()))
    );
}

/// A user's pending map (`PENDING#<sub>` / `SLOTS`) holds decided requests only until it grows
/// or a limit is near: however many requests a user has had, the item stays a few entries (one
/// write unit per filing), and the limits count only what is still pending.
#[tokio::test]
async fn a_users_pending_map_stays_small_and_forgets_decided_requests() {
    let Some(local) = table_from_env().await else {
        return;
    };
    let store = &local.store;
    let generous = PendingLimit {
        per_client: 1_000,
        per_user: 1_000,
    };
    for i in 0..40 {
        let id = format!("t{i:02}.secret");
        let r = request(&id);
        store.create_auth_request(&r, None, generous).await.unwrap();
        let jti = JtiUse {
            scope: "device".into(),
            jti: format!("d{i}"),
            expires_at: r.expires_at,
        };
        store
            .decide(&id, Decision::Approve, r.created_at + 1, &jti)
            .await
            .unwrap();
    }
    let slots = local
        .client
        .get_item()
        .table_name(&local.table)
        .key("pk", AttributeValue::S("PENDING#alice".into()))
        .key("sk", AttributeValue::S("SLOTS".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let Some(AttributeValue::M(entries)) = slots.get("e") else {
        panic!("no map in {slots:?}");
    };
    assert!(entries.len() < 12, "{} entries", entries.len());
    // Forty decided requests leave room for exactly the limit.
    let strict = PendingLimit {
        per_client: 2,
        per_user: 3,
    };
    for id in ["p1.secret", "p2.secret"] {
        store
            .create_auth_request(&request(id), None, strict)
            .await
            .unwrap();
    }
    let third = store
        .create_auth_request(&request("p3.secret"), None, strict)
        .await;
    assert!(
        matches!(third, Err(CreateError::TooManyPending(Crowded::ByClient))),
        "{third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_concurrent_poll_too_soon_adds_exactly_five_seconds() {
    let Some(store) = store_from_env().await else {
        return;
    };
    store
        .create_auth_request(&request("r1"), None, PendingLimit::NONE)
        .await
        .unwrap();
    store.record_poll("r1", NOW_MS).await.unwrap();
    let polls: Vec<_> = (1..=10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.record_poll("r1", NOW_MS + i).await.unwrap() })
        })
        .collect();
    let mut intervals = BTreeSet::new();
    for poll in polls {
        match poll.await.unwrap() {
            PollOutcome::TooSoon { interval } => intervals.insert(interval),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(intervals, (1..=10).map(|k| 2 + 5 * k).collect());
    let stored = store.get_auth_request("r1").await.unwrap().unwrap();
    assert_eq!(stored.interval, 52);
}

#[tokio::test]
async fn device_moved_to_another_user_leaves_the_old_list() {
    let Some(store) = store_from_env().await else {
        return;
    };
    let mut device = Device {
        device_id: "d1".into(),
        sub: "alice".into(),
        public_key: serde_json::json!({"kty": "EC"}),
        platform: None,
        push_token: None,
        endpoint_arn: None,
        enabled: true,
    };
    store.put_device(&device).await.unwrap();
    device.sub = "bob".into();
    store.put_device(&device).await.unwrap();
    assert!(store.list_devices("alice").await.unwrap().is_empty());
    assert_eq!(store.list_devices("bob").await.unwrap(), [device.clone()]);
    assert_eq!(store.get_device("d1").await.unwrap(), Some(device));
}

#[tokio::test]
async fn table_creation_is_idempotent_and_enables_ttl() {
    let Some(local) = table_from_env().await else {
        return;
    };
    create_table(&local.client, &local.table).await.unwrap();
    let ttl = local
        .client
        .describe_time_to_live()
        .table_name(&local.table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}
