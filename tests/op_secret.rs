//! The OP secret read from Secrets Manager, as the functions given `OP_SECRET_ARN` read it at
//! cold start, against moto (`CIBA_SECRETSMANAGER_ENDPOINT`, started by tests/run). Without that
//! variable the tests skip, or fail when `CIBA_REQUIRE_SECRETSMANAGER=1`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use ciba_shared::op_secret::Keys;
use ciba_shared::secret::Secret;

fn endpoint() -> Option<String> {
    common::emulator::endpoint("SECRETSMANAGER")
}

/// A new secret on moto holding `value`; its ARN.
async fn create_secret(aws: &aws_config::SdkConfig, value: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    aws_sdk_secretsmanager::Client::new(aws)
        .create_secret()
        .name(format!("ciba-test-{}-{nanos}", std::process::id()))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn keys_come_from_the_secret_op_secret_arn_names() {
    let Some(endpoint) = endpoint() else { return };
    let aws = common::emulator::config(&endpoint).await;
    let value = "Zq4".repeat(21);
    let arn = create_secret(&aws, &value).await;
    let read = Keys::from_secrets_manager(&aws, &arn).await.unwrap();
    let expected = Keys::derive(&Secret::new(value)).unwrap();
    assert_eq!(read.user_code_hash("4321"), expected.user_code_hash("4321"));
    assert_eq!(read.push_token, expected.push_token);
}

#[tokio::test]
async fn missing_secret_is_a_configuration_error_naming_op_secret_arn() {
    let Some(endpoint) = endpoint() else { return };
    let aws = common::emulator::config(&endpoint).await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ciba-no-such-secret";
    let err = Keys::from_secrets_manager(&aws, arn).await.unwrap_err();
    assert!(
        err.0.starts_with("OP_SECRET_ARN: GetSecretValue of"),
        "{err}"
    );
    assert!(err.0.contains("ResourceNotFoundException"), "{err}");
}

#[tokio::test]
async fn short_secret_is_refused_without_showing_it() {
    let Some(endpoint) = endpoint() else { return };
    let aws = common::emulator::config(&endpoint).await;
    let value = "too-short-to-be-an-op-secret";
    let arn = create_secret(&aws, value).await;
    let err = Keys::from_secrets_manager(&aws, &arn).await.unwrap_err();
    assert!(
        err.0
            .ends_with("the OP secret must be at least 32 characters"),
        "{err}"
    );
    assert!(!err.0.contains(value), "{err}");
}
