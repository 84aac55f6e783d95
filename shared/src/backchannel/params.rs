//! The parameters of a backchannel authentication request (CIBA Core §7.1) and the rules they
//! must pass before any lookup (§7.2, §13).

use serde_json::Value;

use crate::authorization_details;
use crate::config::Config;
use crate::display;
use crate::domain::Client;
use crate::error::AuthnError;
use crate::http::Form;
use crate::jose::Claims;
use crate::protocol::{Scope, ScopeError};

/// The authentication parameters, from form fields or a request object's claims.
pub const AUTHN_PARAMS: &[&str] = &[
    "scope",
    "login_hint",
    "login_hint_token",
    "id_token_hint",
    "acr_values",
    "binding_message",
    "user_code",
    "requested_expiry",
    "client_notification_token",
    "authorization_details",
];

fn invalid(description: impl Into<String>) -> AuthnError {
    AuthnError::InvalidRequest(description.into().into())
}

/// The raw parameters, unvalidated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AuthnParams {
    pub scope: Option<String>,
    pub login_hint: Option<String>,
    pub login_hint_token: Option<String>,
    pub id_token_hint: Option<String>,
    pub acr_values: Option<String>,
    pub binding_message: Option<String>,
    pub user_code: Option<String>,
    pub requested_expiry: Option<String>,
    pub client_notification_token: Option<String>,
    /// RFC 9396: a JSON array, as the form field's text (a request object's array claim is
    /// written back to text).
    pub authorization_details: Option<String>,
}

impl AuthnParams {
    fn set(&mut self, name: &str, value: String) {
        let slot = match name {
            "scope" => &mut self.scope,
            "login_hint" => &mut self.login_hint,
            "login_hint_token" => &mut self.login_hint_token,
            "id_token_hint" => &mut self.id_token_hint,
            "acr_values" => &mut self.acr_values,
            "binding_message" => &mut self.binding_message,
            "user_code" => &mut self.user_code,
            "requested_expiry" => &mut self.requested_expiry,
            "client_notification_token" => &mut self.client_notification_token,
            "authorization_details" => &mut self.authorization_details,
            _ => return,
        };
        *slot = Some(value);
    }

    pub fn from_form(form: &Form) -> Self {
        let mut params = Self::default();
        for name in AUTHN_PARAMS {
            if let Some(value) = form.get(name) {
                params.set(name, value.to_owned());
            }
        }
        params
    }

    /// From a request object: every parameter is a string, but `requested_expiry` may also be
    /// a JSON number (CIBA Core §7.1.1), and `authorization_details` is a JSON array (RFC 9396
    /// §3; the text of one is accepted too).
    pub fn from_claims(claims: &Claims) -> Result<Self, AuthnError> {
        let mut params = Self::default();
        for name in AUTHN_PARAMS {
            match (claims.get(*name), *name) {
                (None | Some(Value::Null), _) => {}
                (Some(Value::String(s)), _) if s.is_empty() => {}
                (Some(Value::String(s)), _) => params.set(name, s.clone()),
                (Some(Value::Number(n)), "requested_expiry") => params.set(name, n.to_string()),
                (Some(details), "authorization_details") => {
                    params.set(name, details.to_string());
                }
                (Some(_), _) => {
                    return Err(invalid(format!(
                        "request object claim {name} must be a string"
                    )));
                }
            }
        }
        Ok(params)
    }
}

/// Which hint names the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Hint {
    LoginHint(String),
    LoginHintToken(String),
    IdTokenHint(String),
}

/// The parameters once every rule that needs no storage has passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams {
    pub scope: String,
    pub hint: Hint,
    pub acr_values: Option<String>,
    pub binding_message: Option<String>,
    pub user_code: Option<String>,
    pub expires_in: i64,
    pub client_notification_token: Option<String>,
    /// Checked against their types' schemas (`authorization_details::parse`).
    pub authorization_details: Option<Value>,
}

/// The most `acr_values` may hold: values, characters of one value, characters in all.
pub const ACR_VALUES_MAX: (usize, usize, usize) = (10, 255, 2048);

/// `acr_values`: at most 10 space-separated values of 1 to 255 characters, 2048 in all, each of
/// RFC 6749's NQCHAR (printable ASCII but space, `"` and `\`). Whether the OP supports a value
/// is decided when tokens are minted: an unsupported one is never asserted.
fn validate_acr_values(acr: &str) -> Result<(), AuthnError> {
    let (values, each, all) = ACR_VALUES_MAX;
    if acr.len() > all {
        return Err(invalid(format!(
            "acr_values must be at most {all} characters"
        )));
    }
    let parts: Vec<&str> = acr.split(' ').collect();
    if parts.len() > values {
        return Err(invalid(format!(
            "acr_values must hold at most {values} values"
        )));
    }
    let nqchar = |c: char| matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if parts
        .iter()
        .any(|p| p.is_empty() || p.len() > each || !p.chars().all(nqchar))
    {
        return Err(invalid(format!(
            "acr_values must be space-separated values of 1 to {each} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Applies the contract's parameter rules in order; the first broken rule answers.
pub fn validate(
    params: AuthnParams,
    client: &Client,
    config: &Config,
) -> Result<ValidParams, AuthnError> {
    let scope = validate_scope(params.scope.as_deref())?;
    let hint = exactly_one_hint(&params)?;
    if let Some(message) = &params.binding_message {
        validate_binding_message(message)?;
    }
    let expires_in = match params.requested_expiry.as_deref() {
        None => config.expires_in,
        Some(raw) => parse_requested_expiry(raw)?.min(config.max_expires_in),
    };
    let notification_required = client.backchannel_token_delivery_mode.notifies();
    match &params.client_notification_token {
        Some(token) => validate_notification_token(token)?,
        None if notification_required => {
            return Err(invalid(
                "client_notification_token is required in ping and push mode",
            ));
        }
        None => {}
    }
    if client.backchannel_user_code_parameter && params.user_code.is_none() {
        return Err(AuthnError::MissingUserCode(
            "this client requires a user_code".into(),
        ));
    }
    if let Some(acr) = &params.acr_values {
        validate_acr_values(acr)?;
    }
    let authorization_details = params
        .authorization_details
        .as_deref()
        .map(|raw| {
            authorization_details::parse(
                raw,
                &config.authorization_details_types,
                client.authorization_details_types.as_deref(),
            )
        })
        .transpose()
        .map_err(|e| AuthnError::InvalidAuthorizationDetails(e.0.into()))?;
    Ok(ValidParams {
        scope,
        hint,
        acr_values: params.acr_values,
        binding_message: params.binding_message,
        user_code: params.user_code,
        expires_in,
        client_notification_token: params.client_notification_token,
        authorization_details,
    })
}

/// `scope` is required and must contain `openid`; every value must be one the OP knows.
pub fn validate_scope(scope: Option<&str>) -> Result<String, AuthnError> {
    let scope = scope.ok_or_else(|| invalid("scope is required"))?;
    match Scope::requested(scope) {
        Ok(scope) => Ok(scope.to_string()),
        Err(ScopeError::NoOpenid) => Err(invalid("scope must contain openid")),
        Err(ScopeError::Unknown(value) | ScopeError::Exceeds(value)) => Err(
            AuthnError::InvalidScope(format!("unknown scope {value}").into()),
        ),
    }
}

/// Exactly one of `login_hint`, `login_hint_token`, `id_token_hint`.
pub fn exactly_one_hint(params: &AuthnParams) -> Result<Hint, AuthnError> {
    let hints = [
        params.login_hint.clone().map(Hint::LoginHint),
        params.login_hint_token.clone().map(Hint::LoginHintToken),
        params.id_token_hint.clone().map(Hint::IdTokenHint),
    ];
    let mut present = hints.into_iter().flatten();
    match (present.next(), present.next()) {
        (Some(hint), None) => Ok(hint),
        (None, _) => Err(invalid(
            "one of login_hint, login_hint_token or id_token_hint is required",
        )),
        (Some(_), Some(_)) => Err(invalid(
            "only one of login_hint, login_hint_token or id_token_hint may be sent",
        )),
    }
}

/// At most 100 characters, starting with a letter, digit or punctuation mark, with no line
/// breaks, control, bidirectional or zero-width characters: what a phone can show in one
/// notification, shown as sent.
pub fn validate_binding_message(message: &str) -> Result<(), AuthnError> {
    let bad = |d: &'static str| Err(AuthnError::InvalidBindingMessage(d.into()));
    if message.chars().count() > 100 {
        return bad("binding_message must be at most 100 characters");
    }
    let Some(first) = message.chars().next() else {
        return bad("binding_message must not be empty");
    };
    if !(first.is_alphanumeric() || first.is_ascii_punctuation() || is_unicode_punctuation(first)) {
        return bad("binding_message must start with a letter, digit or punctuation mark");
    }
    if let Some(c) = display::first_unsafe(message) {
        return Err(AuthnError::InvalidBindingMessage(
            format!(
                "binding_message must not contain line breaks, control, bidirectional or \
                 zero-width characters (found U+{:04X})",
                u32::from(c)
            )
            .into(),
        ));
    }
    Ok(())
}

fn is_unicode_punctuation(c: char) -> bool {
    matches!(
        c,
        '¡' | '¿'
            | '«'
            | '»'
            | '“'
            | '”'
            | '‘'
            | '’'
            | '„'
            | '…'
            | '–'
            | '—'
            | '€'
            | '£'
            | '¥'
    )
}

/// A positive integer number of seconds.
pub fn parse_requested_expiry(raw: &str) -> Result<i64, AuthnError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid("requested_expiry must be a positive integer"))
}

/// b64token syntax (RFC 6750 §2.1), at most 1024 characters.
pub fn validate_notification_token(token: &str) -> Result<(), AuthnError> {
    if token.len() > 1024 {
        return Err(invalid(
            "client_notification_token must be at most 1024 characters",
        ));
    }
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/'));
    if !valid {
        return Err(invalid(
            "client_notification_token must have b64token syntax",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeliveryMode;
    use crate::error::WireError;

    /// A poll client with no options: only `client_id` is required.
    fn client(id: &str) -> Client {
        serde_json::from_value(serde_json::json!({"client_id": id})).unwrap()
    }

    fn config() -> Config {
        Config::new("https://op.example.com").unwrap()
    }

    fn params() -> AuthnParams {
        AuthnParams {
            scope: Some("openid email".into()),
            login_hint: Some("alice".into()),
            ..Default::default()
        }
    }

    fn code(r: Result<ValidParams, AuthnError>) -> &'static str {
        r.map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn valid_minimal_request_passes_with_default_expiry() {
        let v = validate(params(), &client("c1"), &config()).unwrap();
        assert_eq!(v.expires_in, 600);
        assert_eq!(v.scope, "openid email");
        assert_eq!(v.hint, Hint::LoginHint("alice".into()));
    }

    #[test]
    fn missing_scope_is_invalid_request() {
        let p = AuthnParams {
            scope: None,
            ..params()
        };
        assert_eq!(
            code(validate(p, &client("c1"), &config())),
            "invalid_request"
        );
    }

    #[test]
    fn scope_without_openid_is_invalid_request() {
        let p = AuthnParams {
            scope: Some("email".into()),
            ..params()
        };
        assert_eq!(
            code(validate(p, &client("c1"), &config())),
            "invalid_request"
        );
    }

    #[test]
    fn unknown_scope_is_invalid_scope() {
        let p = AuthnParams {
            scope: Some("openid payments".into()),
            ..params()
        };
        assert_eq!(code(validate(p, &client("c1"), &config())), "invalid_scope");
    }

    #[test]
    fn no_hint_is_invalid_request() {
        let p = AuthnParams {
            login_hint: None,
            ..params()
        };
        assert_eq!(
            code(validate(p, &client("c1"), &config())),
            "invalid_request"
        );
    }

    #[test]
    fn two_hints_are_invalid_request() {
        let p = AuthnParams {
            id_token_hint: Some("x.y.z".into()),
            ..params()
        };
        assert_eq!(
            code(validate(p, &client("c1"), &config())),
            "invalid_request"
        );
    }

    #[test]
    fn binding_message_of_100_characters_passes() {
        assert!(validate_binding_message(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn binding_message_of_101_characters_is_invalid_binding_message() {
        let p = AuthnParams {
            binding_message: Some("a".repeat(101)),
            ..params()
        };
        assert_eq!(
            code(validate(p, &client("c1"), &config())),
            "invalid_binding_message"
        );
    }

    #[test]
    fn binding_message_with_line_break_is_invalid_binding_message() {
        assert!(validate_binding_message("pay\nnow").is_err());
        assert!(validate_binding_message("pay\u{7}now").is_err());
    }

    #[test]
    fn binding_message_starting_with_space_is_invalid_binding_message() {
        assert!(validate_binding_message(" W4SCT").is_err());
        assert!(validate_binding_message("").is_err());
    }

    #[test]
    fn binding_message_may_start_with_punctuation_or_digit() {
        assert!(validate_binding_message("#W4SCT ok: pay €12.50?").is_ok());
        assert!(validate_binding_message("42 is the code").is_ok());
    }

    #[test]
    fn requested_expiry_is_honoured_up_to_the_cap() {
        let p = AuthnParams {
            requested_expiry: Some("120".into()),
            ..params()
        };
        assert_eq!(
            validate(p, &client("c1"), &config()).unwrap().expires_in,
            120
        );
        let p = AuthnParams {
            requested_expiry: Some("99999".into()),
            ..params()
        };
        assert_eq!(
            validate(p, &client("c1"), &config()).unwrap().expires_in,
            1800
        );
    }

    #[test]
    fn requested_expiry_must_be_a_positive_integer() {
        for bad in ["0", "-5", "1.5", "ten"] {
            let p = AuthnParams {
                requested_expiry: Some(bad.into()),
                ..params()
            };
            assert_eq!(
                code(validate(p, &client("c1"), &config())),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn requested_expiry_may_be_a_json_number_in_a_request_object() {
        let claims: Claims =
            serde_json::from_value(serde_json::json!({"requested_expiry": 300})).unwrap();
        assert_eq!(
            AuthnParams::from_claims(&claims)
                .unwrap()
                .requested_expiry
                .as_deref(),
            Some("300")
        );
    }

    #[test]
    fn non_string_request_object_parameter_is_invalid_request() {
        let claims: Claims = serde_json::from_value(serde_json::json!({"login_hint": 42})).unwrap();
        assert_eq!(
            AuthnParams::from_claims(&claims).unwrap_err().code(),
            "invalid_request"
        );
    }

    #[test]
    fn client_notification_token_is_required_in_ping_mode() {
        let mut c = client("c1");
        c.backchannel_token_delivery_mode = DeliveryMode::Ping;
        assert_eq!(code(validate(params(), &c, &config())), "invalid_request");
        let p = AuthnParams {
            client_notification_token: Some("8d67dc78-7faa-4d41-aabd-67707b374255".into()),
            ..params()
        };
        assert_eq!(code(validate(p, &c, &config())), "ok");
    }

    #[test]
    fn client_notification_token_must_be_b64token() {
        assert!(validate_notification_token("abc+/~._-==").is_ok());
        assert!(validate_notification_token("has space").is_err());
        assert!(validate_notification_token("=").is_err());
        assert!(validate_notification_token(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn missing_user_code_when_client_requires_it() {
        let mut c = client("c1");
        c.backchannel_user_code_parameter = true;
        assert_eq!(code(validate(params(), &c, &config())), "missing_user_code");
    }
}
