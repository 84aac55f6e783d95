//! The push port: how the authentication device hears of a pending request. The SNS adapter
//! (`sns`) serves AWS; the recording adapter serves the local API and tests.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Device;

pub mod sns;

pub use sns::SnsPushSender;

/// The push platforms a device may enrol with (SNS platform application types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Platform {
    #[serde(rename = "GCM")]
    Gcm,
    #[serde(rename = "APNS")]
    Apns,
    #[serde(rename = "APNS_SANDBOX")]
    ApnsSandbox,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GCM" => Some(Platform::Gcm),
            "APNS" => Some(Platform::Apns),
            "APNS_SANDBOX" => Some(Platform::ApnsSandbox),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Gcm => "GCM",
            Platform::Apns => "APNS",
            Platform::ApnsSandbox => "APNS_SANDBOX",
        }
    }
}

/// What the authentication device is told about a pending request. It never carries
/// `auth_req_id`: the device answers with `txn`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PushMessage {
    pub txn: String,
    pub binding_message: Option<String>,
    pub client_name: String,
    pub scope: String,
    pub acr_values: Option<String>,
    pub expires_at: i64,
    /// One line about the transaction, when the request has `authorization_details`
    /// (`transaction::summary`); the device fetches the details themselves by `txn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum PushError {
    /// The platform endpoint is disabled or gone (uninstalled app, expired token): skip it from
    /// now on.
    EndpointDisabled,
    /// No platform application is configured for this platform.
    PlatformNotConfigured,
    /// The push service refused the input (a malformed push token).
    Rejected(String),
    /// The push service is unavailable or throttling: the caller may retry.
    Unavailable(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::EndpointDisabled => f.write_str("push endpoint disabled"),
            PushError::PlatformNotConfigured => f.write_str("push platform not configured"),
            PushError::Rejected(m) => write!(f, "push rejected: {m}"),
            PushError::Unavailable(m) => write!(f, "push service unavailable: {m}"),
        }
    }
}

#[async_trait]
pub trait PushSender: Send + Sync {
    /// Creates the platform endpoint for a device's push token, or finds the one that exists,
    /// and answers its address (an SNS endpoint ARN).
    async fn register(&self, platform: Platform, push_token: &str) -> Result<String, PushError>;

    /// Sends a push notification to one enrolled device.
    async fn send(&self, device: &Device, message: &PushMessage) -> Result<(), PushError>;
}
