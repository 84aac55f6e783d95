//! Who a backchannel request is for (CIBA Core §7.1): the user its one hint names, and their
//! `user_code` when the client requires one.

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::params::Hint;
use crate::config::Config;
use crate::domain::{Client, User};
use crate::error::{AuthnError, Internal};
use crate::ident::Ident;
use crate::jose::JwsError;
use crate::jwt::{Expect, JwtError};
use crate::op_secret::Keys;
use crate::ports::Signer;
use crate::store::Store;

fn invalid(description: impl Into<String>) -> AuthnError {
    AuthnError::InvalidRequest(description.into().into())
}

/// Finds the user a hint names. A `login_hint_token` is a JWT signed by the client with a
/// `sub_id` claim (an RFC 9493 subject identifier of format `email`, `phone_number`, `opaque`
/// or `iss_sub`); an `id_token_hint` is an ID token this OP issued to the client.
pub async fn resolve_user(
    hint: &Hint,
    client: &Client,
    store: &dyn Store,
    signer: &dyn Signer,
    config: &Config,
    now: i64,
) -> Result<User, AuthnError> {
    let unknown = || AuthnError::UnknownUserId("the hint does not name a known user".into());
    let user = match hint {
        Hint::LoginHint(hint) if hint.trim_start().starts_with('{') => {
            // An RFC 9493 subject identifier in JSON, as Auth0's CIBA SDKs send it. One that
            // does not parse, or has another format or issuer, names nobody this OP knows.
            let sub_id = serde_json::from_str::<Value>(hint).ok();
            match sub_id.as_ref().and_then(Value::as_object) {
                Some(sub_id) => match sub_id_subject(sub_id, config) {
                    Some(subject) => find_subject(subject, store).await?,
                    None => None,
                },
                None => None,
            }
        }
        Hint::LoginHint(hint) => find_subject(Subject::Hint(hint.clone()), store).await?,
        Hint::LoginHintToken(token) => {
            let subject = login_hint_token_subject(token, client, config, now)?;
            find_subject(subject, store).await?
        }
        Hint::IdTokenHint(token) => {
            let sub = id_token_hint_subject(token, client, signer, config, now)?;
            find_subject(Subject::Sub(sub), store).await?
        }
    };
    user.ok_or_else(unknown)
}

enum Subject {
    Hint(String),
    Sub(String),
}

/// The user `subject` names, once it has the shape of a login hint or a `sub` (`ident`): a hint
/// out of shape names nobody the store could hold, and must not reach it.
async fn find_subject(subject: Subject, store: &dyn Store) -> Result<Option<User>, AuthnError> {
    let (kind, value, name) = match &subject {
        Subject::Hint(h) => (Ident::LoginHint, h, "the hint"),
        Subject::Sub(sub) => (Ident::Subject, sub, "the hint's sub"),
    };
    if let Some(fault) = kind.fault(value) {
        return Err(invalid(format!("{name} {fault}")));
    }
    Ok(match subject {
        Subject::Hint(h) => store.accounts().find_user_by_hint(&h).await?,
        Subject::Sub(sub) => store.accounts().get_user(&sub).await?,
    })
}

/// Whom an RFC 9493 subject identifier names: `email`, `phone_number` and `opaque` are looked up
/// as login hints, `iss_sub` by `sub` when `iss` is this OP (one trailing `/` tolerated, as
/// Auth0's CIBA SDKs add one). Any other format, or another issuer, names nobody here.
fn sub_id_subject(sub_id: &serde_json::Map<String, Value>, config: &Config) -> Option<Subject> {
    let field = |name: &str| sub_id.get(name).and_then(Value::as_str).map(str::to_owned);
    match sub_id.get("format").and_then(Value::as_str)? {
        "email" => field("email").map(Subject::Hint),
        "phone_number" => field("phone_number").map(Subject::Hint),
        "opaque" => field("id").map(Subject::Hint),
        "iss_sub" => {
            let iss = field("iss")?;
            if iss.strip_suffix('/').unwrap_or(&iss) != config.issuer {
                return None;
            }
            field("sub").map(Subject::Sub)
        }
        _ => None,
    }
}

fn login_hint_token_subject(
    token: &str,
    client: &Client,
    config: &Config,
    now: i64,
) -> Result<Subject, AuthnError> {
    let keys = client
        .jwks
        .as_ref()
        .ok_or_else(|| invalid("the client has no registered keys to verify login_hint_token"))?;
    let expect = Expect::new("login_hint_token", config.clock_skew);
    let what = expect.what();
    let checked = expect
        .verify(token, keys, &[Algorithm::ES256, Algorithm::PS256], now)
        .map_err(|e| match e {
            JwtError::Expired => {
                AuthnError::ExpiredLoginHintToken("login_hint_token has expired".into())
            }
            other => invalid(other.describe(what)),
        })?;
    let sub_id = checked
        .claims
        .get("sub_id")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("login_hint_token must carry a sub_id subject identifier"))?;
    sub_id_subject(sub_id, config)
        .ok_or_else(|| invalid("login_hint_token sub_id has an unsupported format"))
}

/// The `sub` of an ID token this OP issued to `client`, signed by a key `/jwks` publishes (the
/// signing key or a retired one). Its expiry does not matter: it only names the user (CIBA Core
/// §7.1).
fn id_token_hint_subject(
    token: &str,
    client: &Client,
    signer: &dyn Signer,
    config: &Config,
    now: i64,
) -> Result<String, AuthnError> {
    // Every key /jwks publishes: an ID token signed before a rotation still names its user.
    let keys = jsonwebtoken::jwk::JwkSet {
        keys: signer
            .published_jwks()
            .into_iter()
            .filter_map(|jwk| serde_json::from_value(jwk).ok())
            .collect(),
    };
    if keys.keys.is_empty() {
        return Err(invalid("the OP's key is unusable"));
    }
    let ours = |aud: &str| aud == client.client_id;
    let expect = Expect::new("id_token_hint", config.clock_skew)
        .issuer(&config.issuer)
        .audience(&ours)
        .ignore_expiry();
    let checked = expect
        .verify(token, &keys, &[Algorithm::ES256], now)
        .map_err(|e| match e {
            JwtError::Signature(JwsError::NoMatchingKey | JwsError::BadSignature)
            | JwtError::WrongIssuer => invalid("id_token_hint was not issued by this OP"),
            JwtError::WrongAudience => invalid("id_token_hint was not issued to this client"),
            other => invalid(other.describe("id_token_hint")),
        })?;
    checked
        .text("sub")
        .map(str::to_owned)
        .ok_or_else(|| invalid("id_token_hint has no sub"))
}

/// Checks the user's `user_code` when the client registered `backchannel_user_code_parameter`:
/// its keyed hash under the OP secret's user-code key (`keys`, which only a function given the
/// OP secret holds) against the stored one.
pub fn check_user_code(
    client: &Client,
    user: &User,
    user_code: Option<&str>,
    keys: Option<&Keys>,
) -> Result<(), AuthnError> {
    if !client.backchannel_user_code_parameter {
        return Ok(());
    }
    let code = user_code
        .ok_or_else(|| AuthnError::MissingUserCode("this client requires a user_code".into()))?;
    let keys = keys.ok_or_else(|| {
        AuthnError::Internal(Internal::log(
            &"a user_code to check, and no OP secret to check it with",
            false,
        ))
    })?;
    let ok = user
        .user_code_hash
        .as_deref()
        .is_some_and(|stored| keys.user_code_matches(code, stored));
    if ok {
        Ok(())
    } else {
        Err(AuthnError::InvalidUserCode(
            "the user_code is not valid".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::WireError;

    fn client_requiring_user_code() -> Client {
        serde_json::from_value(serde_json::json!({
            "client_id": "c1", "backchannel_user_code_parameter": true
        }))
        .unwrap()
    }

    fn user_with_code_hash(user_code_hash: String) -> User {
        User {
            sub: "alice".into(),
            login_hints: vec![],
            claims: Default::default(),
            user_code_hash: Some(user_code_hash),
        }
    }

    fn keys() -> Keys {
        Keys::derive(&crate::secret::Secret::new("k".repeat(40))).unwrap()
    }

    #[test]
    fn wrong_user_code_is_invalid_user_code() {
        let c = client_requiring_user_code();
        let user = user_with_code_hash(keys().user_code_hash("1234"));
        assert!(check_user_code(&c, &user, Some("1234"), Some(&keys())).is_ok());
        assert_eq!(
            check_user_code(&c, &user, Some("9999"), Some(&keys()))
                .unwrap_err()
                .code(),
            "invalid_user_code"
        );
    }

    #[test]
    fn user_code_stored_as_bare_sha256_is_invalid_user_code() {
        let c = client_requiring_user_code();
        let user = user_with_code_hash(crate::secret::hash("1234"));
        assert_eq!(
            check_user_code(&c, &user, Some("1234"), Some(&keys()))
                .unwrap_err()
                .code(),
            "invalid_user_code"
        );
    }

    #[test]
    fn user_code_without_op_secret_is_server_error_not_accepted() {
        let c = client_requiring_user_code();
        let user = user_with_code_hash(keys().user_code_hash("1234"));
        assert_eq!(
            check_user_code(&c, &user, Some("1234"), None)
                .unwrap_err()
                .code(),
            "server_error"
        );
    }

    /// Review finding 16: `/jwks` still publishes a retired key, so an ID token it signed
    /// before the rotation still names its user; a key the OP never published does not.
    #[tokio::test]
    async fn an_id_token_hint_signed_by_a_retired_but_published_key_names_its_user() {
        use crate::key_ring::KeyRing;
        use crate::ports::LocalSigner;
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;

        let config = Config::new("https://op.example.com").unwrap();
        let client = client_requiring_user_code();
        let now = 1_800_000_000;
        let old = LocalSigner::generate();
        let hint = |signer: &'static LocalSigner| async move {
            let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": signer.kid()});
            let claims = serde_json::json!({"iss": "https://op.example.com", "sub": "alice",
                                            "aud": "c1", "iat": now - 7200, "exp": now - 3600});
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = signer.sign(input.as_bytes()).await.unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        let old: &'static LocalSigner = Box::leak(Box::new(old));
        let stranger: &'static LocalSigner = Box::leak(Box::new(LocalSigner::generate()));
        let ring = KeyRing::new(
            std::sync::Arc::new(LocalSigner::generate()),
            vec![old.public_jwk().clone()],
        );
        let token = hint(old).await;
        assert_eq!(
            id_token_hint_subject(&token, &client, &ring, &config, now).unwrap(),
            "alice"
        );
        let forged = hint(stranger).await;
        assert!(id_token_hint_subject(&forged, &client, &ring, &config, now).is_err());
    }
}
