//! The SNS push adapter against moto's SNS (`CIBA_SNS_ENDPOINT`, started by tests/run). Without
//! that variable the tests skip, or fail when `CIBA_REQUIRE_SNS=1`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ciba_shared::domain::Device;
use ciba_shared::push::sns::PlatformApps;
use ciba_shared::push::{Platform, PushError, PushMessage, PushSender, SnsPushSender};
use serde_json::Value;

fn endpoint() -> Option<String> {
    common::emulator::endpoint("SNS")
}

async fn client(endpoint: &str) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&common::emulator::config(endpoint).await)
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn create_app(client: &aws_sdk_sns::Client, platform: Platform) -> String {
    let mut request = client
        .create_platform_application()
        .name(unique("ciba-test"))
        .platform(platform.as_str())
        .attributes("PlatformCredential", "dummy");
    if platform != Platform::Gcm {
        request = request.attributes("PlatformPrincipal", "dummy");
    }
    request
        .send()
        .await
        .expect("CreatePlatformApplication")
        .platform_application_arn
        .expect("PlatformApplicationArn")
}

/// A sender with a fresh platform application for each of `platforms`.
async fn sender(endpoint: &str, platforms: &[Platform]) -> (aws_sdk_sns::Client, SnsPushSender) {
    let client = client(endpoint).await;
    let mut apps = HashMap::new();
    for &platform in platforms {
        apps.insert(platform, create_app(&client, platform).await);
    }
    let sender = SnsPushSender::new(client.clone(), PlatformApps(apps));
    (client, sender)
}

fn device(endpoint_arn: Option<String>, push_token: &str) -> Device {
    Device {
        device_id: unique("device"),
        sub: "alice".into(),
        public_key: serde_json::json!({}),
        platform: Some("GCM".into()),
        push_token: Some(push_token.into()),
        endpoint_arn,
        enabled: true,
    }
}

fn message(txn: &str) -> PushMessage {
    PushMessage {
        summary: None,
        txn: txn.into(),
        binding_message: Some("W4SCT".into()),
        client_name: "Example Bank".into(),
        scope: "openid".into(),
        acr_values: None,
        expires_at: 1_700_000_000,
    }
}

async fn endpoint_enabled(client: &aws_sdk_sns::Client, arn: &str) -> String {
    client
        .get_endpoint_attributes()
        .endpoint_arn(arn)
        .send()
        .await
        .expect("GetEndpointAttributes")
        .attributes
        .unwrap_or_default()
        .get("Enabled")
        .cloned()
        .unwrap_or_default()
}

async fn disable(client: &aws_sdk_sns::Client, arn: &str) {
    client
        .set_endpoint_attributes()
        .endpoint_arn(arn)
        .attributes("Enabled", "false")
        .send()
        .await
        .expect("SetEndpointAttributes");
}

/// The messages moto recorded for a platform endpoint: in `/moto-api/data.json`, the object with
/// `"arn": <endpoint arn>` (under `sns` -> `PlatformEndpoint`) holds `"messages": {id: message}`.
/// Searched recursively, so a differently nested layout of another moto version still works.
fn moto_messages(endpoint: &str, endpoint_arn: &str) -> Vec<String> {
    let response = ciba_local::client::send(endpoint, "GET", "/moto-api/data.json", &[], b"")
        .expect("GET /moto-api/data.json");
    assert_eq!(response.status, 200, "{}", response.body);
    let data = response.json();
    let found = find_arn(&data["sns"], endpoint_arn)
        .unwrap_or_else(|| panic!("no platform endpoint {endpoint_arn} in moto's data.json"));
    match &found["messages"] {
        Value::Object(messages) => messages
            .values()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        Value::Array(messages) => messages
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        other => panic!("unexpected messages for {endpoint_arn}: {other}"),
    }
}

fn find_arn<'a>(value: &'a Value, arn: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => {
            if map.get("arn").and_then(Value::as_str) == Some(arn) && map.contains_key("messages") {
                return Some(value);
            }
            map.values().find_map(|v| find_arn(v, arn))
        }
        Value::Array(items) => items.iter().find_map(|v| find_arn(v, arn)),
        _ => None,
    }
}

#[tokio::test]
async fn register_creates_an_endpoint_for_the_token() {
    let Some(endpoint) = endpoint() else { return };
    let (client, sender) = sender(&endpoint, &[Platform::Gcm]).await;
    let token = unique("token");

    let arn = sender.register(Platform::Gcm, &token).await.unwrap();

    assert!(arn.starts_with("arn:aws:sns:us-east-1:"), "{arn}");
    let attributes = client
        .get_endpoint_attributes()
        .endpoint_arn(&arn)
        .send()
        .await
        .expect("GetEndpointAttributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(attributes.get("Token"), Some(&token));
    assert_eq!(endpoint_enabled(&client, &arn).await, "true");
}

#[tokio::test]
async fn registering_the_same_token_twice_answers_the_same_endpoint() {
    let Some(endpoint) = endpoint() else { return };
    let (_, sender) = sender(&endpoint, &[Platform::Gcm]).await;
    let token = unique("token");

    let first = sender.register(Platform::Gcm, &token).await.unwrap();
    let second = sender.register(Platform::Gcm, &token).await.unwrap();

    assert_eq!(first, second);
}

#[tokio::test]
async fn re_registering_a_disabled_endpoint_re_enables_it() {
    let Some(endpoint) = endpoint() else { return };
    let (client, sender) = sender(&endpoint, &[Platform::Gcm]).await;
    let token = unique("token");
    let first = sender.register(Platform::Gcm, &token).await.unwrap();
    disable(&client, &first).await;

    let second = sender.register(Platform::Gcm, &token).await.unwrap();

    assert_eq!(first, second);
    assert_eq!(endpoint_enabled(&client, &second).await, "true");
}

#[tokio::test]
async fn unconfigured_platform_is_refused() {
    let Some(endpoint) = endpoint() else { return };
    let (_, sender) = sender(&endpoint, &[Platform::Gcm]).await;

    let result = sender.register(Platform::Apns, &unique("token")).await;

    assert_eq!(result, Err(PushError::PlatformNotConfigured));
}

#[tokio::test]
async fn push_publishes_gcm_and_apns_payloads_without_auth_req_id() {
    let Some(endpoint) = endpoint() else { return };
    let (_, sender) = sender(&endpoint, &[Platform::Gcm, Platform::Apns]).await;
    let token = unique("token");
    let arn = sender.register(Platform::Gcm, &token).await.unwrap();
    let txn = unique("txn");

    sender
        .send(&device(Some(arn.clone()), &token), &message(&txn))
        .await
        .unwrap();

    let messages = moto_messages(&endpoint, &arn);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let sent = &messages[0];
    assert!(!sent.contains("auth_req_id"), "{sent}");
    let outer: Value = serde_json::from_str(sent).expect("the published message is JSON");
    assert!(outer["default"].is_string(), "{outer}");
    let gcm: Value = serde_json::from_str(outer["GCM"].as_str().expect("GCM is a string")).unwrap();
    assert_eq!(gcm["data"]["txn"], txn.as_str());
    assert_eq!(gcm["data"]["binding_message"], "W4SCT");
    assert_eq!(gcm["priority"], "high");
    for key in ["APNS", "APNS_SANDBOX"] {
        let apns: Value =
            serde_json::from_str(outer[key].as_str().expect("APNS is a string")).unwrap();
        assert_eq!(apns["txn"], txn.as_str());
        assert_eq!(apns["binding_message"], "W4SCT");
        assert_eq!(apns["aps"]["alert"]["body"], "W4SCT");
    }
}

#[tokio::test]
async fn disabled_endpoint_is_reported_as_disabled() {
    let Some(endpoint) = endpoint() else { return };
    let (client, sender) = sender(&endpoint, &[Platform::Gcm]).await;
    let token = unique("token");
    let arn = sender.register(Platform::Gcm, &token).await.unwrap();
    disable(&client, &arn).await;

    let result = sender
        .send(&device(Some(arn), &token), &message(&unique("txn")))
        .await;

    assert_eq!(result, Err(PushError::EndpointDisabled));
}

#[tokio::test]
async fn device_without_endpoint_is_reported_as_disabled() {
    let Some(endpoint) = endpoint() else { return };
    let (_, sender) = sender(&endpoint, &[Platform::Gcm]).await;

    let result = sender
        .send(&device(None, &unique("token")), &message(&unique("txn")))
        .await;

    assert_eq!(result, Err(PushError::EndpointDisabled));
}

#[tokio::test]
async fn unreachable_sns_is_unavailable() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let client = client(&format!("http://127.0.0.1:{port}")).await;
    let token = unique("token");
    let sender = SnsPushSender::new(
        client,
        PlatformApps(HashMap::from([(
            Platform::Gcm,
            "arn:aws:sns:us-east-1:123456789012:app/GCM/unreachable".to_owned(),
        )])),
    );

    let registered = sender.register(Platform::Gcm, &token).await;
    let arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/unreachable/1".to_owned();
    let sent = sender
        .send(&device(Some(arn), &token), &message(&unique("txn")))
        .await;

    for result in [registered.map(|_| ()), sent] {
        match result {
            Err(PushError::Unavailable(text)) => {
                assert!(!text.contains(&token), "{text}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
