//! The SNS push adapter: platform endpoints per device push token, one `Publish` per push.
//!
//! Error texts never carry the push token or the message: they name the SNS operation, the error
//! code and (shortened, with the token redacted) the service's message.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::operation::create_platform_endpoint::CreatePlatformEndpointError;
use serde_json::{Map, Value, json};

use super::{Platform, PushError, PushMessage, PushSender};
use crate::aws_error::{chain, is_transient};
use crate::domain::Device;

/// The SNS platform application ARN of each configured platform.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlatformApps(pub HashMap<Platform, String>);

impl PlatformApps {
    /// From `SNS_PLATFORM_APP_GCM`, `SNS_PLATFORM_APP_APNS`, `SNS_PLATFORM_APP_APNS_SANDBOX`.
    pub fn from_env() -> Self {
        let mut apps = HashMap::new();
        for platform in [Platform::Gcm, Platform::Apns, Platform::ApnsSandbox] {
            if let Ok(arn) = std::env::var(format!("SNS_PLATFORM_APP_{}", platform.as_str()))
                && !arn.is_empty()
            {
                apps.insert(platform, arn);
            }
        }
        Self(apps)
    }
}

#[derive(Clone, Debug)]
pub struct SnsPushSender {
    client: aws_sdk_sns::Client,
    apps: PlatformApps,
}

impl SnsPushSender {
    pub fn new(client: aws_sdk_sns::Client, apps: PlatformApps) -> Self {
        Self { client, apps }
    }

    pub fn from_env(aws: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_sns::Client::new(aws), PlatformApps::from_env())
    }

    /// Re-enables an existing endpoint (SNS disables endpoints whose token the platform refused;
    /// the app re-registering the same token means it is valid again).
    async fn enable(&self, endpoint_arn: &str, push_token: &str) -> Result<(), PushError> {
        self.client
            .set_endpoint_attributes()
            .endpoint_arn(endpoint_arn)
            .attributes("Enabled", "true")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                Some("NotFound") => PushError::EndpointDisabled,
                _ => sdk_error("SetEndpointAttributes", &e, Some(push_token)),
            })
    }
}

#[async_trait]
impl PushSender for SnsPushSender {
    async fn register(&self, platform: Platform, push_token: &str) -> Result<String, PushError> {
        let app = self
            .apps
            .0
            .get(&platform)
            .ok_or(PushError::PlatformNotConfigured)?;
        // `Enabled=true` makes SNS answer "already exists ... different attributes" for a
        // disabled endpoint of this token, which is then re-enabled below.
        let created = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(app)
            .token(push_token)
            .attributes("Enabled", "true")
            .send()
            .await;
        match created {
            Ok(out) => out.endpoint_arn.ok_or_else(|| {
                PushError::Unavailable(
                    "CreatePlatformEndpoint: no EndpointArn in the answer".into(),
                )
            }),
            Err(err) => {
                if let Some(CreatePlatformEndpointError::InvalidParameterException(e)) =
                    err.as_service_error()
                    && let Some(arn) = e.message().and_then(existing_endpoint_arn)
                {
                    tracing::info!(endpoint_arn = arn, "re-enabling the existing SNS endpoint");
                    self.enable(arn, push_token).await?;
                    return Ok(arn.to_owned());
                }
                Err(match err.code() {
                    // The configured platform application does not exist.
                    Some("NotFound") => PushError::PlatformNotConfigured,
                    _ => sdk_error("CreatePlatformEndpoint", &err, Some(push_token)),
                })
            }
        }
    }

    async fn send(&self, device: &Device, message: &PushMessage) -> Result<(), PushError> {
        let target = device
            .endpoint_arn
            .as_deref()
            .filter(|arn| !arn.is_empty())
            .ok_or(PushError::EndpointDisabled)?;
        let body = sns_message(message);
        self.client
            .publish()
            .target_arn(target)
            .message_structure("json")
            .message(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                Some("EndpointDisabled" | "NotFound") => PushError::EndpointDisabled,
                _ => sdk_error("Publish", &e, device.push_token.as_deref()),
            })
    }
}

/// The endpoint ARN in SNS's "Invalid parameter: Token Reason: Endpoint <arn> already exists
/// with the same Token, but different attributes."
fn existing_endpoint_arn(message: &str) -> Option<&str> {
    if !message.contains("already exists") {
        return None;
    }
    let (_, rest) = message.split_once("Endpoint ")?;
    let arn = rest.split_whitespace().next()?;
    arn.starts_with("arn:").then_some(arn)
}

/// SNS's own throttling codes (besides those every AWS service shares).
const TRANSIENT_CODES: &[&str] = &["KMSThrottling"];

/// Throttling, server-side errors, timeouts and connection failures are `Unavailable`
/// (retryable), everything else `Rejected`.
fn sdk_error<E>(op: &str, err: &SdkError<E>, token: Option<&str>) -> PushError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = match err {
        SdkError::TimeoutError(_) => format!("{op}: timeout"),
        SdkError::ServiceError(e) => format!(
            "{op}: {}: {}",
            e.err().code().unwrap_or("unknown"),
            e.err().message().unwrap_or("")
        ),
        _ => format!("{op}: {}", chain(err)),
    };
    let text = short(&text, token);
    if is_transient(err, TRANSIENT_CODES) {
        PushError::Unavailable(text)
    } else {
        PushError::Rejected(text)
    }
}

/// At most 200 characters, the push token (if any) redacted.
fn short(text: &str, token: Option<&str>) -> String {
    let text = match token.filter(|t| !t.is_empty()) {
        Some(token) => text.replace(token, "<push token>"),
        None => text.to_owned(),
    };
    let text = text.trim_end_matches([' ', ':']);
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The `Publish` message for `MessageStructure=json`: one JSON *string* per platform.
fn sns_message(m: &PushMessage) -> String {
    let gcm = gcm_payload(m);
    let apns = apns_payload(m);
    json!({
        "default": format!("Sign-in request from {}", m.client_name),
        "GCM": gcm.to_string(),
        "APNS": apns.to_string(),
        "APNS_SANDBOX": apns.to_string(),
    })
    .to_string()
}

/// An FCM data message: every value a string, absent values omitted.
fn gcm_payload(m: &PushMessage) -> Value {
    let mut data = Map::new();
    data.insert("type".into(), "ciba_auth_request".into());
    data.insert("txn".into(), m.txn.clone().into());
    if let Some(binding) = &m.binding_message {
        data.insert("binding_message".into(), binding.clone().into());
    }
    data.insert("client_name".into(), m.client_name.clone().into());
    data.insert("scope".into(), m.scope.clone().into());
    if let Some(acr) = &m.acr_values {
        data.insert("acr_values".into(), acr.clone().into());
    }
    data.insert("expires_at".into(), m.expires_at.to_string().into());
    if let Some(summary) = &m.summary {
        data.insert("summary".into(), summary.clone().into());
    }
    json!({ "data": data, "priority": "high" })
}

/// An APNs payload: a visible alert plus the request's fields as custom keys.
fn apns_payload(m: &PushMessage) -> Value {
    // The transaction's summary first ("Pay 50.00 GBP to Savings Ltd"): the lock screen shows
    // what is to be approved; the app fetches the details before the user can decide.
    let body = m
        .summary
        .as_deref()
        .or(m.binding_message.as_deref())
        .unwrap_or("Approve or deny the request");
    let mut payload = Map::new();
    payload.insert(
        "aps".into(),
        json!({
            "alert": {
                "title": format!("Sign-in request from {}", m.client_name),
                "body": body,
            },
            "sound": "default",
            "category": "CIBA_AUTH_REQUEST",
            "mutable-content": 1,
        }),
    );
    payload.insert("txn".into(), m.txn.clone().into());
    if let Some(binding) = &m.binding_message {
        payload.insert("binding_message".into(), binding.clone().into());
    }
    payload.insert("client_name".into(), m.client_name.clone().into());
    payload.insert("scope".into(), m.scope.clone().into());
    if let Some(acr) = &m.acr_values {
        payload.insert("acr_values".into(), acr.clone().into());
    }
    payload.insert("expires_at".into(), m.expires_at.into());
    if let Some(summary) = &m.summary {
        payload.insert("summary".into(), summary.clone().into());
    }
    Value::Object(payload)
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::config::http::HttpResponse;
    use aws_sdk_sns::error::ErrorMetadata;
    use aws_sdk_sns::operation::publish::PublishError;

    use super::*;

    fn message() -> PushMessage {
        PushMessage {
            txn: "txn-123".into(),
            binding_message: Some("W4SCT".into()),
            client_name: "Example Bank".into(),
            scope: "openid profile".into(),
            acr_values: Some("urn:acr:high".into()),
            expires_at: 1_700_000_000,
            summary: None,
        }
    }

    #[test]
    fn a_transactions_summary_is_the_alert_and_a_field_of_both_platforms() {
        let mut m = message();
        m.summary = Some("Pay 50.00 GBP to Savings Ltd".into());
        let gcm = platform_payload(&m, "GCM");
        assert_eq!(gcm["data"]["summary"], "Pay 50.00 GBP to Savings Ltd");
        let apns = platform_payload(&m, "APNS");
        assert_eq!(apns["aps"]["alert"]["body"], "Pay 50.00 GBP to Savings Ltd");
        assert_eq!(apns["summary"], "Pay 50.00 GBP to Savings Ltd");
        assert_eq!(apns["binding_message"], "W4SCT");
    }

    fn platform_payload(message: &PushMessage, key: &str) -> Value {
        let outer: Value = serde_json::from_str(&sns_message(message)).unwrap();
        let inner = outer[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} must be a JSON string"));
        serde_json::from_str(inner).unwrap()
    }

    #[test]
    fn push_message_has_a_string_per_platform_and_a_default() {
        let outer: Value = serde_json::from_str(&sns_message(&message())).unwrap();
        let keys: Vec<&str> = outer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        for key in ["default", "GCM", "APNS", "APNS_SANDBOX"] {
            assert!(outer[key].is_string(), "{key} must be a string");
        }
        assert_eq!(outer["default"], "Sign-in request from Example Bank");
        assert_eq!(outer["APNS"], outer["APNS_SANDBOX"]);
    }

    #[test]
    fn push_gcm_payload_is_a_high_priority_data_message_of_strings() {
        let gcm = platform_payload(&message(), "GCM");
        assert_eq!(gcm["priority"], "high");
        let data = gcm["data"].as_object().unwrap();
        assert_eq!(data["type"], "ciba_auth_request");
        assert_eq!(data["txn"], "txn-123");
        assert_eq!(data["binding_message"], "W4SCT");
        assert_eq!(data["client_name"], "Example Bank");
        assert_eq!(data["scope"], "openid profile");
        assert_eq!(data["acr_values"], "urn:acr:high");
        assert_eq!(data["expires_at"], "1700000000");
        assert!(data.values().all(Value::is_string), "{data:?}");
    }

    #[test]
    fn push_gcm_payload_omits_absent_values() {
        let mut m = message();
        m.binding_message = None;
        m.acr_values = None;
        let gcm = platform_payload(&m, "GCM");
        let data = gcm["data"].as_object().unwrap();
        assert!(!data.contains_key("binding_message"));
        assert!(!data.contains_key("acr_values"));
        assert_eq!(data["txn"], "txn-123");
    }

    #[test]
    fn push_apns_payload_has_an_alert_and_the_request_fields() {
        for key in ["APNS", "APNS_SANDBOX"] {
            let apns = platform_payload(&message(), key);
            let aps = &apns["aps"];
            assert_eq!(aps["alert"]["title"], "Sign-in request from Example Bank");
            assert_eq!(aps["alert"]["body"], "W4SCT");
            assert_eq!(aps["sound"], "default");
            assert_eq!(aps["category"], "CIBA_AUTH_REQUEST");
            assert_eq!(aps["mutable-content"], 1);
            assert_eq!(apns["txn"], "txn-123");
            assert_eq!(apns["binding_message"], "W4SCT");
            assert_eq!(apns["client_name"], "Example Bank");
            assert_eq!(apns["scope"], "openid profile");
            assert_eq!(apns["acr_values"], "urn:acr:high");
            assert_eq!(apns["expires_at"], 1_700_000_000);
        }
    }

    #[test]
    fn push_apns_alert_without_binding_message_asks_to_approve_or_deny() {
        let mut m = message();
        m.binding_message = None;
        let apns = platform_payload(&m, "APNS");
        assert_eq!(apns["aps"]["alert"]["body"], "Approve or deny the request");
        assert!(apns.get("binding_message").is_none());
    }

    #[test]
    fn push_message_never_carries_auth_req_id() {
        let text = sns_message(&message());
        assert!(!text.contains("auth_req_id"), "{text}");
        for key in ["GCM", "APNS", "APNS_SANDBOX"] {
            let payload = platform_payload(&message(), key).to_string();
            assert!(!payload.contains("auth_req_id"), "{payload}");
        }
    }

    #[test]
    fn push_existing_endpoint_arn_is_read_from_the_duplicate_message() {
        let arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/0f1e2d3c";
        let message = format!(
            "Invalid parameter: Token Reason: Endpoint {arn} already exists with the same \
             Token, but different attributes."
        );
        assert_eq!(existing_endpoint_arn(&message), Some(arn));
        assert_eq!(
            existing_endpoint_arn("Invalid parameter: Token Reason: malformed"),
            None
        );
    }

    fn service_error(status: u16, code: &str, message: &str) -> SdkError<PublishError> {
        let raw = lambda_http::http::Response::builder()
            .status(status)
            .body(String::new().into())
            .unwrap();
        SdkError::service_error(
            PublishError::generic(ErrorMetadata::builder().code(code).message(message).build()),
            HttpResponse::try_from(raw).unwrap(),
        )
    }

    #[test]
    fn push_sdk_errors_map_to_unavailable_or_rejected() {
        let unavailable = [
            (400, "Throttled"),
            (400, "KMSThrottling"),
            (500, "InternalError"),
            (503, "Whatever"),
        ];
        for (status, code) in unavailable {
            let err = sdk_error("Publish", &service_error(status, code, "slow down"), None);
            assert!(
                matches!(err, PushError::Unavailable(_)),
                "{status} {code}: {err:?}"
            );
        }
        let err = sdk_error(
            "Publish",
            &service_error(400, "InvalidParameter", "Invalid parameter: TargetArn"),
            None,
        );
        assert_eq!(
            err,
            PushError::Rejected("Publish: InvalidParameter: Invalid parameter: TargetArn".into())
        );
        let timeout: SdkError<PublishError> = SdkError::timeout_error("too slow");
        assert_eq!(
            sdk_error("Publish", &timeout, None),
            PushError::Unavailable("Publish: timeout".into())
        );
    }

    #[test]
    fn push_rejected_token_is_not_echoed() {
        let err = sdk_error(
            "CreatePlatformEndpoint",
            &service_error(
                400,
                "InvalidParameter",
                "Invalid parameter: Token tok-secret is bad",
            ),
            Some("tok-secret"),
        );
        let PushError::Rejected(text) = err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert!(!text.contains("tok-secret"), "{text}");
        assert!(text.contains("InvalidParameter"), "{text}");
    }

    #[test]
    fn push_error_texts_redact_the_token_and_stay_short() {
        let text = short(
            &format!("Publish: InvalidParameter: tok-secret {}", "x".repeat(500)),
            Some("tok-secret"),
        );
        assert!(!text.contains("tok-secret"));
        assert!(text.chars().count() <= 201);
    }
}
