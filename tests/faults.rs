//! The real handlers when a dependency fails: DynamoDB Local, and SNS and KMS from moto, with a
//! fault proxy in front of the emulator whose fault a test injects. Skipped without
//! `CIBA_DYNAMODB_ENDPOINT`, `CIBA_SNS_ENDPOINT` and `CIBA_KMS_ENDPOINT`.
//!
//! A throttled dependency answers 503 `temporarily_unavailable` with `Retry-After`, and leaves
//! nothing half-written behind. The proxy throttles every attempt, the SDK's own retries included.
//!
//! A write whose every answer is lost, though it committed, is not mistaken for a failure that
//! leaves its effects behind: a request nobody knows of, a redeemed login without its tokens.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use ciba_local::event::HttpRequest;
use ciba_shared::domain::Status;
use ciba_shared::kms::KmsSigner;
use ciba_shared::push::sns::PlatformApps;
use ciba_shared::push::{Platform, SnsPushSender};
use ciba_shared::store::DynamoStore;
use ciba_testkit::dynamodb::{LocalTable, table_from_env};
use common::fault_proxy::{Fault, FaultProxy, dynamodb_behind_proxy};
use common::{Harness, Reply};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::rand_core::OsRng;

/// Refresh rotation is one transaction.
const TRANSACT: &str = "DynamoDB_20120810.TransactWriteItems";
/// A creation's puts: its request object's `jti`, the request, its expiry entry.
const PUT: &str = "DynamoDB_20120810.PutItem";
/// The conditional update that decides a redemption.
const UPDATE: &str = "DynamoDB_20120810.UpdateItem";
const PUBLISH: &str = "Publish";
const SIGN: &str = "TrentService.Sign";

/// The answer a throttled dependency gives: 503, `temporarily_unavailable`, `Retry-After`.
#[track_caller]
fn assert_unavailable(reply: &Reply) {
    reply.expect_error(503, "temporarily_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
}

/// The table's items whose key begins with one of `prefixes`.
async fn items_under(local: &LocalTable, prefixes: &[&str]) -> Vec<String> {
    let scan = local
        .client
        .scan()
        .table_name(&local.table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scan.items()
        .iter()
        .filter_map(|item| item.get("pk")?.as_s().ok().cloned())
        .filter(|pk| prefixes.iter().any(|p| pk.starts_with(p)))
        .collect()
}

/// Where a request leaves items: itself, its `txn`, its expiry entry.
const REQUEST_ITEMS: &[&str] = &["AUTHREQ#", "TXN#", "DUE#"];
/// Where a request object's `jti` is spent (a client assertion's `jti` is spent by client
/// authentication, whatever becomes of the request).
const REQUEST_OBJECT_JTIS: &str = "JTI#request";

/// No request stayed behind, and none was pushed.
async fn assert_no_request_left(local: &LocalTable, h: &Harness) {
    assert_eq!(
        items_under(local, REQUEST_ITEMS).await,
        Vec::<String>::new()
    );
    assert!(h.pushes.all().is_empty(), "nothing was pushed");
}

/// A request of demo-rp for alice, approved on her phone: its `auth_req_id`.
async fn approved_request(h: &Harness) -> String {
    let requested = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_eq!(requested.status, 200, "{:?}", requested.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    requested.body["auth_req_id"].as_str().unwrap().to_owned()
}

/// A token response whose access token userinfo takes.
#[track_caller]
fn access_token(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["access_token"].as_str().unwrap()
}

/// A fresh table, and moto (SNS, KMS) behind a fault proxy.
async fn emulators() -> Option<(LocalTable, FaultProxy, String)> {
    let local = table_from_env().await?;
    let moto = common::emulator::endpoint("SNS")?;
    common::emulator::endpoint("KMS")?;
    let proxy = FaultProxy::start(&moto).await;
    Some((local, proxy, moto))
}

#[tokio::test]
async fn sns_throttled_at_push_answers_503_and_discards_the_request() {
    let Some((local, proxy, moto)) = emulators().await else {
        return;
    };
    let sns = aws_sdk_sns::Client::new(&common::emulator::config(&moto).await);
    let app = sns
        .create_platform_application()
        .name(format!("ciba-throttling-{}", local.table))
        .platform("GCM")
        .attributes("PlatformCredential", "dummy")
        .send()
        .await
        .unwrap()
        .platform_application_arn
        .unwrap();
    let through_proxy = aws_sdk_sns::Client::new(&common::emulator::config(&proxy.endpoint).await);
    let push = SnsPushSender::new(
        through_proxy,
        PlatformApps(HashMap::from([(Platform::Gcm, app)])),
    );
    let h = Harness::with_ports(local.store.clone(), Some(Arc::new(push)), None).await;
    let key = SigningKey::random(&mut OsRng);
    let token = format!("fcm-{}", local.table);
    let enrolled = h.enroll("demo-enrol-carol", &key, &token, "GCM").await;
    assert_eq!(enrolled.status, 201, "{:?}", enrolled.body);
    proxy.fail_always(PUBLISH, Fault::sns_throttled());
    let mut claims = h.request_claims();
    claims["login_hint"] = "carol".into();
    let request_object = h.sign_request(&claims);

    assert_unavailable(&h.bc_authorize_signed(&request_object).await);

    assert!(proxy.count(PUBLISH).1 > 0, "throttled");
    assert_eq!(
        items_under(&local, &[REQUEST_ITEMS, &[REQUEST_OBJECT_JTIS]].concat()).await,
        Vec::<String>::new()
    );
    // The request object's jti went with the request: the same request object is not a replay.
    assert_unavailable(&h.bc_authorize_signed(&request_object).await);
}

#[tokio::test]
async fn kms_throttled_at_signing_answers_503_and_the_request_stays_redeemable() {
    let Some((local, proxy, moto)) = emulators().await else {
        return;
    };
    let kms = aws_sdk_kms::Client::new(&common::emulator::config(&moto).await);
    let key_id = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let through_proxy = aws_sdk_kms::Client::new(&common::emulator::config(&proxy.endpoint).await);
    let signer = KmsSigner::new(through_proxy, &key_id).await.unwrap();
    let h = Harness::with_ports(local.store.clone(), None, Some(Arc::new(signer))).await;
    let auth_req_id = approved_request(&h).await;
    proxy.fail_always(SIGN, Fault::kms_throttled());

    assert_unavailable(&h.poll(&auth_req_id).await);

    assert!(proxy.count(SIGN).1 > 0, "throttled");
    let request = h.store.requests().get_auth_request(&auth_req_id).await;
    assert_eq!(request.unwrap().unwrap().status, Status::Approved);
    assert!(items_under(&local, &["TOKEN#"]).await.is_empty());
    proxy.heal();
    let redeemed = h.poll(&auth_req_id).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    assert!(redeemed.body["id_token"].is_string());
}

/// A fresh table reached through a fault proxy, and the harness on it.
async fn behind_proxy() -> Option<(LocalTable, FaultProxy, Harness)> {
    let (local, proxy, client) = dynamodb_behind_proxy().await?;
    let store = DynamoStore::new(client, local.table.clone());
    let h = Harness::with_store(Arc::new(store)).await;
    Some((local, proxy, h))
}

#[tokio::test]
async fn dynamodb_throttled_at_a_write_answers_503_and_stores_nothing() {
    let Some((local, proxy, h)) = behind_proxy().await else {
        return;
    };
    proxy.fail_always(PUT, Fault::dynamodb_throttled());
    let request = [("scope", "openid"), ("login_hint", "alice")];

    assert_unavailable(&h.bc_authorize(&request).await);

    assert!(proxy.count(PUT).1 > 0, "throttled");
    assert_no_request_left(&local, &h).await;
    proxy.heal();
    assert_eq!(h.bc_authorize(&request).await.status, 200);
}

#[tokio::test]
async fn request_whose_creation_answers_were_all_lost_is_created_once() {
    let Some((local, proxy, h)) = behind_proxy().await else {
        return;
    };
    let request_object = h.sign_request(&h.request_claims());
    // Every put commits, but no answer to it arrives: each learns from its item that it went
    // through (the mark it left), and the request is created, once.
    proxy.fail_always(PUT, Fault::DropResponse);

    let created = h.bc_authorize_signed(&request_object).await;

    assert_eq!(created.status, 200, "{:?}", created.body);
    assert!(proxy.count(PUT).1 > 0, "answers lost");
    proxy.heal();
    let requests = items_under(&local, &["AUTHREQ#"]).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    h.bc_authorize_signed(&request_object)
        .await
        .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn redemption_whose_answers_were_all_lost_issues_the_tokens() {
    let Some((_local, proxy, h)) = behind_proxy().await else {
        return;
    };
    let auth_req_id = approved_request(&h).await;
    proxy.fail_always(UPDATE, Fault::DropResponse);

    let redeemed = h.poll(&auth_req_id).await;

    assert!(proxy.count(UPDATE).1 > 0, "answers lost");
    assert_eq!(h.userinfo(access_token(&redeemed)).await.status, 200);
    proxy.heal();
    h.poll(&auth_req_id)
        .await
        .expect_error(400, "invalid_grant");
}

#[tokio::test]
async fn refresh_whose_rotation_answers_were_all_lost_issues_the_successors() {
    let Some((_local, proxy, h)) = behind_proxy().await else {
        return;
    };
    let redeemed = h.poll(&approved_request(&h).await).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    let refresh_token = redeemed.body["refresh_token"].as_str().unwrap();
    let refresh = || {
        HttpRequest::new("POST", "/token")
            .header(
                "authorization",
                &Harness::basic("demo-rp", "demo-rp-secret"),
            )
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
    };
    proxy.fail_always(TRANSACT, Fault::DropResponse);

    let rotated = h.send(refresh()).await;

    assert!(proxy.count(TRANSACT).1 > 0, "answers lost");
    assert_eq!(h.userinfo(access_token(&rotated)).await.status, 200);
    proxy.heal();
    h.send(refresh()).await.expect_error(400, "invalid_grant");
}
