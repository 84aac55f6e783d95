//! The protocol's vocabulary, named once: grant type identifiers, token delivery modes, the
//! `slow_down` step and the scope a request or refresh carries.

use serde::{Deserialize, Serialize};

use crate::config::SUPPORTED_SCOPES;
use crate::domain::{AuthRequest, Status};
use crate::error::TokenError;

/// The CIBA grant type (CIBA Core §10.1).
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
/// The refresh token grant type (RFC 6749 §6).
pub const REFRESH_GRANT: &str = "refresh_token";

/// Seconds a `slow_down` adds to a request's polling interval (RFC 8628 §3.5, which CIBA Core
/// §11 refers to).
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

/// How a client receives its tokens (CIBA Core §5).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    #[default]
    Poll,
    Ping,
    Push,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Poll => "poll",
            DeliveryMode::Ping => "ping",
            DeliveryMode::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "poll" => DeliveryMode::Poll,
            "ping" => DeliveryMode::Ping,
            "push" => DeliveryMode::Push,
            _ => return None,
        })
    }

    /// Whether the client is called back at its notification endpoint (ping and push).
    pub fn notifies(self) -> bool {
        self != DeliveryMode::Poll
    }
}

/// A scope value list (RFC 6749 §3.3): space-separated, each value once, in the order first
/// given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(Vec<String>);

/// Why a requested scope was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// A value this OP does not know.
    Unknown(String),
    /// `openid` is missing (OIDC Core §3.1.2.1, CIBA Core §7.1).
    NoOpenid,
    /// A value beyond the scope originally granted (RFC 6749 §6).
    Exceeds(String),
}

impl Scope {
    /// The values of `raw`, repeated ones kept once; empty values (extra spaces) are skipped.
    pub fn parse(raw: &str) -> Self {
        let mut values: Vec<String> = Vec::new();
        for value in raw.split(' ').filter(|v| !v.is_empty()) {
            if !values.iter().any(|v| v == value) {
                values.push(value.to_owned());
            }
        }
        Self(values)
    }

    /// The scope of an authentication request: every value one this OP supports, `openid`
    /// among them.
    pub fn requested(raw: &str) -> Result<Self, ScopeError> {
        let scope = Self::parse(raw);
        if let Some(unknown) = scope.values().find(|v| !SUPPORTED_SCOPES.contains(v)) {
            return Err(ScopeError::Unknown(unknown.to_owned()));
        }
        if !scope.contains("openid") {
            return Err(ScopeError::NoOpenid);
        }
        Ok(scope)
    }

    /// `requested` if it asks for nothing beyond `self`: the scope a refresh may narrow to.
    pub fn narrow(&self, requested: &str) -> Result<Self, ScopeError> {
        let narrowed = Self::parse(requested);
        if let Some(extra) = narrowed.values().find(|v| !self.contains(v)) {
            return Err(ScopeError::Exceeds(extra.to_owned()));
        }
        Ok(narrowed)
    }

    pub fn contains(&self, value: &str) -> bool {
        self.0.iter().any(|v| v == value)
    }

    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// Where an authentication request stands for the client asking for its tokens: at the token
/// endpoint (poll and ping) or in the push callback (CIBA Core §10.3.1, §11).
#[derive(Debug)]
pub enum Standing {
    /// The user has not decided yet.
    Pending,
    /// Approved and unexpired: its tokens may be issued, once.
    Approved,
    /// Its tokens were issued.
    Redeemed,
    /// Expired or denied: the error the client is told.
    Refused(TokenError),
}

/// The standing of `request` at `now` (epoch seconds). Expiry outranks a denial: an expired
/// request is `expired_token` whatever the user did.
pub fn standing(request: &AuthRequest, now: i64) -> Standing {
    let expired = || {
        Standing::Refused(TokenError::ExpiredToken(
            "the authentication request has expired".into(),
        ))
    };
    match request.status {
        Status::Redeemed => Standing::Redeemed,
        Status::Expired => expired(),
        _ if request.is_expired(now) => expired(),
        Status::Denied => Standing::Refused(TokenError::AccessDenied(
            "the user denied the request".into(),
        )),
        Status::Approved => Standing::Approved,
        Status::Pending => Standing::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: Status) -> AuthRequest {
        serde_json::from_value(serde_json::json!({
            "auth_req_id": "r1", "txn": "t1", "client_id": "c1", "sub": "u1", "scope": "openid",
            "delivery_mode": "push", "created_at": 100, "expires_at": 200, "interval": 5,
            "status": status,
        }))
        .unwrap()
    }

    fn code(standing: Standing) -> &'static str {
        use crate::error::WireError;
        match standing {
            Standing::Pending => "pending",
            Standing::Approved => "approved",
            Standing::Redeemed => "redeemed",
            Standing::Refused(e) => e.code(),
        }
    }

    #[test]
    fn standing_follows_the_decision_until_expiry() {
        assert_eq!(code(standing(&request(Status::Pending), 150)), "pending");
        assert_eq!(code(standing(&request(Status::Approved), 150)), "approved");
        assert_eq!(
            code(standing(&request(Status::Denied), 150)),
            "access_denied"
        );
        assert_eq!(
            code(standing(&request(Status::Expired), 150)),
            "expired_token"
        );
    }

    #[test]
    fn expiry_outranks_a_denial_but_not_a_redemption() {
        assert_eq!(
            code(standing(&request(Status::Denied), 200)),
            "expired_token"
        );
        assert_eq!(
            code(standing(&request(Status::Approved), 200)),
            "expired_token"
        );
        assert_eq!(code(standing(&request(Status::Redeemed), 200)), "redeemed");
    }

    #[test]
    fn delivery_modes_round_trip_through_their_wire_names() {
        for mode in [DeliveryMode::Poll, DeliveryMode::Ping, DeliveryMode::Push] {
            assert_eq!(DeliveryMode::parse(mode.as_str()), Some(mode));
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::from(mode.as_str())
            );
        }
        assert_eq!(DeliveryMode::parse("Poll"), None);
    }

    #[test]
    fn scope_keeps_each_value_once_in_first_order() {
        assert_eq!(
            Scope::parse("  openid email openid  profile").to_string(),
            "openid email profile"
        );
    }

    #[test]
    fn requested_scope_needs_openid_and_known_values() {
        assert_eq!(
            Scope::requested("openid payments"),
            Err(ScopeError::Unknown("payments".into()))
        );
        assert_eq!(Scope::requested("email"), Err(ScopeError::NoOpenid));
        assert!(Scope::requested("openid email").is_ok());
    }

    #[test]
    fn narrowing_may_drop_values_but_not_add_any() {
        let granted = Scope::parse("openid email profile");
        assert_eq!(
            granted.narrow("email  openid").unwrap().to_string(),
            "email openid"
        );
        assert_eq!(
            granted.narrow("openid phone"),
            Err(ScopeError::Exceeds("phone".into()))
        );
    }
}
