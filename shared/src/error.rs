//! Protocol errors. Each endpoint family has one error type with `code()` and `status()`;
//! `error_response` is the one place that turns any of them into an HTTP response with the
//! RFC 6749 §5.2 body `{"error", "error_description"}`.
//!
//! Internal causes (store and signer failures) are logged here, server-side, with the request
//! id; the client only ever sees `server_error` or `temporarily_unavailable`.

use std::borrow::Cow;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

use crate::store::StoreError;

type Text = Cow<'static, str>;

/// What every protocol error tells the response builder.
pub trait WireError: std::fmt::Debug {
    /// The `error` code on the wire.
    fn code(&self) -> &'static str;
    fn status(&self) -> StatusCode;
    fn description(&self) -> &str;
    /// `WWW-Authenticate` challenge, for 401s.
    fn challenge(&self) -> Option<String> {
        None
    }
    /// `Retry-After` seconds, for 503s.
    fn retry_after(&self) -> Option<u32> {
        None
    }
}

/// A failure inside the OP, never the caller's fault.
#[derive(Debug)]
pub enum Internal {
    /// Throttled or unreachable dependency: 503 `temporarily_unavailable` with `Retry-After`.
    Unavailable,
    /// 500 `server_error`.
    Fault,
}

impl Internal {
    /// Logs the cause server-side and keeps only its class.
    pub fn log(cause: &dyn std::fmt::Display, unavailable: bool) -> Self {
        if unavailable {
            tracing::warn!(cause = %cause, "dependency unavailable");
            Internal::Unavailable
        } else {
            tracing::error!(cause = %cause, "internal failure");
            Internal::Fault
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Internal::Unavailable => "temporarily_unavailable",
            Internal::Fault => "server_error",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Internal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal::Fault => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Internal::Unavailable => "the service is temporarily unavailable, retry later",
            Internal::Fault => "the server could not handle the request",
        }
    }

    fn retry_after(&self) -> Option<u32> {
        matches!(self, Internal::Unavailable).then_some(1)
    }
}

impl From<StoreError> for Internal {
    fn from(e: StoreError) -> Self {
        let unavailable = matches!(e, StoreError::Unavailable(_));
        Internal::log(&e, unavailable)
    }
}

impl From<crate::ports::SignerError> for Internal {
    fn from(e: crate::ports::SignerError) -> Self {
        Internal::log(&e, true)
    }
}

/// Why client authentication failed (RFC 6749 §2.3, §5.2).
#[derive(Debug)]
pub enum ClientAuthError {
    /// 400 `invalid_request`: more than one method, malformed credentials.
    InvalidRequest(Text),
    /// 401 `invalid_client`; `basic` adds the `WWW-Authenticate: Basic` challenge.
    InvalidClient {
        description: Text,
        basic: bool,
    },
    Internal(Internal),
}

impl From<StoreError> for ClientAuthError {
    fn from(e: StoreError) -> Self {
        ClientAuthError::Internal(e.into())
    }
}

/// Defines one family's error enum: its variants with wire code and status, plus the shared
/// client-authentication and internal variants, and its `WireError` impl. A family whose own
/// variants need a `WWW-Authenticate` challenge names the function giving it after `challenge =`.
macro_rules! error_family {
    (@challenge $error:expr) => { None };
    (@challenge $error:expr, $challenge:path) => { $challenge($error) };
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => ($code:literal, $status:ident)),* $(,)? } $(challenge = $challenge:path)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {
            $($(#[$vdoc])* $variant(Text),)*
            /// 401 `invalid_client`.
            InvalidClient { description: Text, basic: bool },
            Internal(Internal),
        }

        impl WireError for $name {
            fn code(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $code,)*
                    $name::InvalidClient { .. } => "invalid_client",
                    $name::Internal(i) => i.code(),
                }
            }

            fn status(&self) -> StatusCode {
                match self {
                    $($name::$variant(_) => StatusCode::$status,)*
                    $name::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
                    $name::Internal(i) => i.status(),
                }
            }

            fn description(&self) -> &str {
                match self {
                    $($name::$variant(d) => d,)*
                    $name::InvalidClient { description, .. } => description,
                    $name::Internal(i) => i.description(),
                }
            }

            fn challenge(&self) -> Option<String> {
                match self {
                    $name::InvalidClient { basic: true, .. } => Some(BASIC_CHALLENGE.into()),
                    _ => error_family!(@challenge self $(, $challenge)?),
                }
            }

            fn retry_after(&self) -> Option<u32> {
                match self {
                    $name::Internal(i) => i.retry_after(),
                    _ => None,
                }
            }
        }

        impl From<ClientAuthError> for $name {
            fn from(e: ClientAuthError) -> Self {
                match e {
                    ClientAuthError::InvalidRequest(d) => $name::InvalidRequest(d),
                    ClientAuthError::InvalidClient { description, basic } => {
                        $name::InvalidClient { description, basic }
                    }
                    ClientAuthError::Internal(i) => $name::Internal(i),
                }
            }
        }

        impl From<Internal> for $name {
            fn from(i: Internal) -> Self {
                $name::Internal(i)
            }
        }

        impl From<StoreError> for $name {
            fn from(e: StoreError) -> Self {
                $name::Internal(e.into())
            }
        }

        impl From<crate::ports::SignerError> for $name {
            fn from(e: crate::ports::SignerError) -> Self {
                $name::Internal(e.into())
            }
        }
    };
}

const BASIC_CHALLENGE: &str = r#"Basic realm="ciba", charset="UTF-8""#;

error_family! {
    /// Errors of the backchannel authentication endpoint (CIBA Core §13).
    AuthnError {
        /// Missing, repeated or malformed parameter; a request object that fails verification.
        InvalidRequest => ("invalid_request", BAD_REQUEST),
        /// Unknown scope value.
        InvalidScope => ("invalid_scope", BAD_REQUEST),
        /// The `login_hint_token` has expired.
        ExpiredLoginHintToken => ("expired_login_hint_token", BAD_REQUEST),
        /// The hint names no known user.
        UnknownUserId => ("unknown_user_id", BAD_REQUEST),
        /// The client may not use CIBA this way.
        UnauthorizedClient => ("unauthorized_client", BAD_REQUEST),
        /// The client requires a `user_code` and none was sent.
        MissingUserCode => ("missing_user_code", BAD_REQUEST),
        /// The `user_code` is wrong.
        InvalidUserCode => ("invalid_user_code", BAD_REQUEST),
        /// The `binding_message` is too long or has characters the device cannot show.
        InvalidBindingMessage => ("invalid_binding_message", BAD_REQUEST),
        /// The `authorization_details` are malformed, of a type the OP or the client does not
        /// support, or fail their type's schema (RFC 9396 §5).
        InvalidAuthorizationDetails => ("invalid_authorization_details", BAD_REQUEST),
        /// The OP refuses the request.
        AccessDenied => ("access_denied", FORBIDDEN),
    }
}

error_family! {
    /// Errors of the token endpoint (RFC 6749 §5.2, CIBA Core §11).
    TokenError {
        InvalidRequest => ("invalid_request", BAD_REQUEST),
        /// Unknown, foreign, already redeemed `auth_req_id` or refresh token.
        InvalidGrant => ("invalid_grant", BAD_REQUEST),
        /// Push-mode clients never redeem at the token endpoint.
        UnauthorizedClient => ("unauthorized_client", BAD_REQUEST),
        UnsupportedGrantType => ("unsupported_grant_type", BAD_REQUEST),
        InvalidScope => ("invalid_scope", BAD_REQUEST),
        /// The user has not decided yet.
        AuthorizationPending => ("authorization_pending", BAD_REQUEST),
        /// Polled sooner than the interval; the interval grew by 5 seconds.
        SlowDown => ("slow_down", BAD_REQUEST),
        /// The request expired before it was redeemed.
        ExpiredToken => ("expired_token", BAD_REQUEST),
        /// The DPoP proof is missing where required, malformed, or fails a rule (RFC 9449 §5).
        InvalidDpopProof => ("invalid_dpop_proof", BAD_REQUEST),
        /// The DPoP proof lacks the nonce the OP requires, or has a stale one: retry with the
        /// `DPoP-Nonce` of the answer (RFC 9449 §8).
        UseDpopNonce => ("use_dpop_nonce", BAD_REQUEST),
        /// The user denied the request.
        AccessDenied => ("access_denied", BAD_REQUEST),
        /// Push delivery only: the approved request's tokens could not be issued (CIBA Core
        /// §10.3.1); the status is never sent.
        TransactionFailed => ("transaction_failed", INTERNAL_SERVER_ERROR),
    }
}

error_family! {
    /// Errors of the introspection and revocation endpoints (RFC 7662 §2.3, RFC 7009 §2.2.1):
    /// only the request itself can be wrong; any token is answered, active or not.
    TokenManagementError {
        InvalidRequest => ("invalid_request", BAD_REQUEST),
    }
}

error_family! {
    /// Errors of the authentication device's endpoints.
    DeviceError {
        InvalidRequest => ("invalid_request", BAD_REQUEST),
        /// A one-time enrolment code that is unknown, used or expired.
        InvalidGrant => ("invalid_grant", BAD_REQUEST),
        /// The request expired before the decision.
        ExpiredToken => ("expired_token", BAD_REQUEST),
        /// The request was already decided: the first decision stands.
        AlreadyDecided => ("invalid_request", CONFLICT),
    }
}

error_family! {
    /// Errors of the client registration endpoint (RFC 7591 §3.2.2).
    RegistrationError {
        /// The value of one of the client metadata fields is invalid (RFC 7591 §3.2.2).
        InvalidClientMetadata => ("invalid_client_metadata", BAD_REQUEST),
        /// The value of one or more redirection URIs is invalid (RFC 7591 §3.2.2).
        InvalidRedirectUri => ("invalid_redirect_uri", BAD_REQUEST),
        /// Not a JSON registration request.
        InvalidRequest => ("invalid_request", BAD_REQUEST),
        /// The initial access token is missing or not one the OP issued (RFC 6750 §3.1).
        InvalidToken => ("invalid_token", UNAUTHORIZED),
    }
    challenge = registration_challenge
}

fn registration_challenge(error: &RegistrationError) -> Option<String> {
    match error {
        RegistrationError::InvalidToken(d) => Some(format!(
            r#"Bearer realm="ciba", error="invalid_token", error_description="{d}""#
        )),
        _ => None,
    }
}

/// Errors of a protected resource (RFC 6750 §3.1).
#[derive(Debug)]
pub enum BearerError {
    /// No token at all: 401 with a bare `Bearer` challenge.
    Missing,
    InvalidRequest(Text),
    InvalidToken(Text),
    /// A DPoP-bound token presented without a valid proof of its key, or as a Bearer token: 401
    /// with a `DPoP` challenge (RFC 9449 §7.1).
    DpopToken(Text),
    /// The `DPoP` scheme with a missing or failing proof.
    InvalidDpopProof(Text),
    /// A proof without the nonce the OP requires, or with a stale one (RFC 9449 §9).
    UseDpopNonce(Text),
    Internal(Internal),
}

/// The `DPoP` challenge (RFC 9449 §7.1): the algorithms a proof may use, and the error.
fn dpop_challenge(error: &str, description: &str) -> String {
    format!(
        r#"DPoP algs="{}", error="{error}", error_description="{description}""#,
        crate::dpop::ALGORITHMS.join(" ")
    )
}

impl WireError for BearerError {
    fn code(&self) -> &'static str {
        match self {
            BearerError::Missing | BearerError::InvalidToken(_) | BearerError::DpopToken(_) => {
                "invalid_token"
            }
            BearerError::InvalidDpopProof(_) => "invalid_dpop_proof",
            BearerError::UseDpopNonce(_) => "use_dpop_nonce",
            BearerError::InvalidRequest(_) => "invalid_request",
            BearerError::Internal(i) => i.code(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BearerError::Missing
            | BearerError::InvalidToken(_)
            | BearerError::DpopToken(_)
            | BearerError::InvalidDpopProof(_)
            | BearerError::UseDpopNonce(_) => StatusCode::UNAUTHORIZED,
            BearerError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerError::Internal(i) => i.status(),
        }
    }

    fn description(&self) -> &str {
        match self {
            BearerError::Missing => "a Bearer access token is required",
            BearerError::InvalidRequest(d)
            | BearerError::InvalidToken(d)
            | BearerError::DpopToken(d)
            | BearerError::InvalidDpopProof(d)
            | BearerError::UseDpopNonce(d) => d,
            BearerError::Internal(i) => i.description(),
        }
    }

    fn challenge(&self) -> Option<String> {
        match self {
            BearerError::Missing => Some(r#"Bearer realm="ciba""#.into()),
            BearerError::InvalidToken(d) => Some(format!(
                r#"Bearer realm="ciba", error="invalid_token", error_description="{d}""#
            )),
            BearerError::InvalidRequest(_) => {
                Some(r#"Bearer realm="ciba", error="invalid_request""#.into())
            }
            BearerError::DpopToken(d) => Some(dpop_challenge("invalid_token", d)),
            BearerError::InvalidDpopProof(d) => Some(dpop_challenge("invalid_dpop_proof", d)),
            BearerError::UseDpopNonce(d) => Some(dpop_challenge("use_dpop_nonce", d)),
            BearerError::Internal(_) => None,
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            BearerError::Internal(i) => i.retry_after(),
            _ => None,
        }
    }
}

impl From<StoreError> for BearerError {
    fn from(e: StoreError) -> Self {
        BearerError::Internal(e.into())
    }
}

/// Errors of endpoints with no protocol family of their own (unknown route, wrong method).
#[derive(Debug)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed(&'static str),
}

impl WireError for RouteError {
    fn code(&self) -> &'static str {
        match self {
            RouteError::NotFound => "not_found",
            RouteError::MethodNotAllowed(_) => "invalid_request",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RouteError::NotFound => StatusCode::NOT_FOUND,
            RouteError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn description(&self) -> &str {
        match self {
            RouteError::NotFound => "no such endpoint",
            RouteError::MethodNotAllowed(_) => "method not allowed on this endpoint",
        }
    }
}

/// The RFC 6749 §5.2 body of an error, `{"error", "error_description"}`: the response body, and
/// the error a push-mode client is sent (with `auth_req_id` added).
pub fn error_body(error: &dyn WireError) -> serde_json::Value {
    serde_json::json!({
        "error": error.code(),
        "error_description": error.description(),
    })
}

/// The one function that turns a protocol error into a response.
pub fn error_response(error: &dyn WireError) -> Response<Body> {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!(
            code = error.code(),
            status = status.as_u16(),
            "request failed"
        );
    } else {
        tracing::info!(
            code = error.code(),
            status = status.as_u16(),
            "request refused"
        );
    }
    let body = error_body(error);
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if let Some(challenge) = error.challenge() {
        builder = builder.header("www-authenticate", challenge);
    }
    if let Some(seconds) = error.retry_after() {
        builder = builder.header("retry-after", seconds.to_string());
    }
    builder
        .body(Body::Text(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn error_body_is_exactly_error_and_description() {
        let r = error_response(&TokenError::SlowDown("poll less often".into()));
        assert_eq!(r.status(), 400);
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "slow_down", "error_description": "poll less often"})
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[test]
    fn basic_client_failure_carries_basic_challenge() {
        let e: TokenError = ClientAuthError::InvalidClient {
            description: "bad".into(),
            basic: true,
        }
        .into();
        let r = error_response(&e);
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        assert_eq!(body(&r)["error"], "invalid_client");
    }

    #[test]
    fn post_client_failure_has_no_challenge() {
        let e: AuthnError = ClientAuthError::InvalidClient {
            description: "bad".into(),
            basic: false,
        }
        .into();
        assert!(
            error_response(&e)
                .headers()
                .get("www-authenticate")
                .is_none()
        );
    }

    #[test]
    fn unavailable_store_is_503_with_retry_after_and_no_detail() {
        let e: TokenError =
            StoreError::Unavailable("ThrottlingException: secret detail".into()).into();
        let r = error_response(&e);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(body(&r)["error"], "temporarily_unavailable");
        assert!(!body(&r).to_string().contains("secret detail"));
    }

    #[test]
    fn store_fault_is_500_server_error() {
        let e: AuthnError = StoreError::Fault("boom".into()).into();
        let r = error_response(&e);
        assert_eq!(r.status(), 500);
        assert_eq!(body(&r)["error"], "server_error");
    }

    #[test]
    fn already_decided_is_409_invalid_request() {
        let r = error_response(&DeviceError::AlreadyDecided("already decided".into()));
        assert_eq!(r.status(), 409);
        assert_eq!(body(&r)["error"], "invalid_request");
    }

    #[test]
    fn missing_initial_access_token_is_401_with_bearer_challenge() {
        let r = error_response(&RegistrationError::InvalidToken(
            "an initial access token is required".into(),
        ));
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer realm="ciba", error="invalid_token""#)
        );
        assert_eq!(
            body(&r),
            serde_json::json!({
                "error": "invalid_token",
                "error_description": "an initial access token is required"
            })
        );
    }

    #[test]
    fn invalid_client_metadata_is_400_without_challenge() {
        let r = error_response(&RegistrationError::InvalidClientMetadata("bad".into()));
        assert_eq!(r.status(), 400);
        assert_eq!(body(&r)["error"], "invalid_client_metadata");
        assert!(r.headers().get("www-authenticate").is_none());
        let r = error_response(&RegistrationError::InvalidRedirectUri("bad".into()));
        assert_eq!(body(&r)["error"], "invalid_redirect_uri");
    }

    #[test]
    fn invalid_bearer_token_is_401_with_bearer_challenge() {
        let r = error_response(&BearerError::InvalidToken("expired".into()));
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
    }
}
