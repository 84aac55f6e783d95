//! The domain: clients, users, devices, authentication requests and issued tokens.

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

pub use crate::protocol::DeliveryMode;

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// RFC 8705 §2.1: a certificate from a trusted CA, identified by its subject DN or a SAN.
    TlsClientAuth,
    /// RFC 8705 §2.2: a self-signed certificate registered in the client's `jwks`.
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }
}

/// A registered relying party, with its metadata under the RFC 7591 / CIBA names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Client {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `secret::hash` of the client secret; the secret itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_hash: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,
    #[serde(default)]
    pub backchannel_token_delivery_mode: DeliveryMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_client_notification_endpoint: Option<String>,
    /// When set, every authentication request must be a request object signed with this alg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_authentication_request_signing_alg: Option<String>,
    #[serde(default)]
    pub backchannel_user_code_parameter: bool,
    /// A resource server (an API behind the RPs): it may introspect every client's access
    /// tokens and may not start authentication requests.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resource_server: bool,
    /// The form of the access tokens issued to this client.
    #[serde(default, skip_serializing_if = "AccessTokenFormat::is_opaque")]
    pub access_token_format: AccessTokenFormat,
    /// Held to the FAPI-CIBA client profile (`fapi`), whatever the OP's default.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fapi: bool,
    /// The RFC 9396 `authorization_details` types this client may request (RFC 9396 §10);
    /// `None`: every type the OP supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details_types: Option<Vec<String>>,
    /// Mutual TLS metadata (RFC 8705), under its registered names.
    #[serde(flatten)]
    pub tls: TlsClientMetadata,
}

/// A client's mutual TLS metadata (RFC 8705 §2.1.2, §3.4).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TlsClientMetadata {
    /// How a `tls_client_auth` client's certificate is recognised: exactly one of these five
    /// (`mtls::registered_identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_subject_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_email: Option<String>,
    /// Access and refresh tokens are bound to the client certificate of the token request
    /// (RFC 8705 §3).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_client_certificate_bound_access_tokens: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a client's access tokens look: an opaque random string (the default), or an RFC 9068 JWT
/// (`typ: at+jwt`) signed like ID tokens, which an API can check locally against `/jwks`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    #[default]
    Opaque,
    Jwt,
}

impl AccessTokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTokenFormat::Opaque => "opaque",
            AccessTokenFormat::Jwt => "jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opaque" => Some(AccessTokenFormat::Opaque),
            "jwt" => Some(AccessTokenFormat::Jwt),
            _ => None,
        }
    }

    fn is_opaque(&self) -> bool {
        *self == AccessTokenFormat::Opaque
    }
}

impl Client {
    /// The name the user's phone shows: `client_name`, unless it has characters that reorder or
    /// hide text (registration refuses them; an imported seed or an older item may still hold
    /// them), then the `client_id`.
    pub fn display_name(&self) -> &str {
        self.client_name
            .as_deref()
            .filter(|name| crate::display::first_unsafe(name).is_none())
            .unwrap_or(&self.client_id)
    }
}

/// An end-user: the subject, the hints that name them, their claims for the ID token and userinfo.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub sub: String,
    /// Usernames, e-mail addresses, phone numbers: anything `login_hint` may carry.
    #[serde(default)]
    pub login_hints: Vec<String>,
    /// OpenID standard claims (`name`, `email`, `phone_number`, ...).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `secret::hash` of the user's `user_code`, for clients that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code_hash: Option<String>,
}

/// How a login hint is compared: case and surrounding space never matter.
pub fn normalize_hint(hint: &str) -> String {
    hint.trim().to_lowercase()
}

/// An enrolled authentication device (authenticator app) of a user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Device {
    pub device_id: String,
    pub sub: String,
    /// The device's P-256 public key as a JWK.
    pub public_key: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_arn: Option<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Redeemed,
    /// Marked by the expiry sweep, so ping and push clients hear of the expiry promptly.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Redeemed => "redeemed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "redeemed" => Status::Redeemed,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// One backchannel authentication request, from /bc-authorize to redemption or expiry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthRequest {
    pub auth_req_id: String,
    /// The id the device sees instead of `auth_req_id`.
    pub txn: String,
    pub client_id: String,
    /// The client's name as the device was shown it (part of `transaction::shown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub sub: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_notification_token: Option<String>,
    pub delivery_mode: DeliveryMode,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds; at and after this instant the request is expired.
    pub expires_at: i64,
    /// Minimum seconds between two polls; grows by `protocol::SLOW_DOWN_STEP_SECS` on every
    /// `slow_down`.
    pub interval: i64,
    /// Epoch milliseconds of the latest poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll_ms: Option<i64>,
    pub status: Status,
    /// Epoch seconds of the user's decision (`auth_time` of the ID token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
    /// Epoch seconds at which a ping or push client was notified of the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<i64>,
    /// The RFC 9396 `authorization_details` the client asked the user to approve, as checked
    /// by `authorization_details::parse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// The device's signed decision, kept with the request for the grant's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The evidence of a decision: the device's JWS as it was sent, the device, the public key that
/// verified it (kept, so the evidence verifies after the device is gone) and its RFC 7638
/// thumbprint, and the `txn_hash` it carried (`transaction`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    pub decision_jws: String,
    pub device_id: String,
    pub device_key: serde_json::Value,
    pub device_jkt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_hash: Option<String>,
}

impl AuthRequest {
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at || self.status == Status::Expired
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "access" => TokenKind::Access,
            "refresh" => TokenKind::Refresh,
            _ => return None,
        })
    }
}

/// An issued access or refresh token, found by the hash of its value (of its `jti`, for a JWT
/// access token: `tokens::record_hash`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub hash: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    /// The request the grant came from; also the id of the token's `Family`.
    pub auth_req_id: String,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Epoch seconds.
    pub issued_at: i64,
    /// Epoch seconds.
    pub expires_at: i64,
    /// Epoch seconds at which a refresh token was spent by rotation. It is kept, spent, so that
    /// presenting it again is recognised as reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`, RFC 9449): it is only
    /// good with a proof signed by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The `x5t#S256` of the client certificate the token is bound to (RFC 8705 §3): it is only
    /// good over mutual TLS with that certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// The RFC 9396 `authorization_details` of the grant, answered by introspection (§9.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// The grant's `txn_approval` (`transaction::approval_claim`): which device approved what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
}

/// Every token issued from one grant (one approved request): the first access and refresh
/// tokens and all those rotated from them. Revoked as a whole, and never alive past
/// `expires_at`, however often its refresh token rotates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Family {
    /// The `auth_req_id` of the grant.
    pub id: String,
    pub client_id: String,
    pub sub: String,
    /// Epoch seconds: the absolute end of every token of the family.
    pub expires_at: i64,
    /// Epoch seconds at which the family was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl Family {
    /// Whether tokens of this family may still be used at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A one-time enrolment code the operator issued for a user, stored only as its hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnrollmentCode {
    pub code_hash: String,
    pub sub: String,
    /// Epoch seconds; at and after this instant the code is void.
    pub expires_at: i64,
}

/// A user's decision on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}
