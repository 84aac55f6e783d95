//! The rules of dynamic client registration (RFC 7591 §2) with the CIBA client metadata (CIBA
//! Core §4): every field this OP registers is checked, the client's keys above all.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use serde_json::{Map, Value};
use url::Url;

mod tls;

use crate::callback_policy::{self, RESOLVES_INTERNALLY};
use crate::config::is_loopback;
use crate::display;
use crate::domain::{AccessTokenFormat, AuthMethod, DeliveryMode, TlsClientMetadata};
use crate::error::RegistrationError;
use crate::jose;
use crate::ports::Resolver;
use crate::protocol::{CIBA_GRANT, REFRESH_GRANT};

/// The name is shown on the user's phone.
const MAX_CLIENT_NAME: usize = 200;
/// FAPI 1.0 Part 2 §5.2.2: RSA keys of 2048 bits or more.
const MIN_RSA_BITS: usize = 2048;
/// JWK members holding private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn invalid_metadata(description: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(description.into().into())
}

/// The methods authenticating with a client secret; `private_key_jwt` clients get none.
pub fn uses_secret(method: AuthMethod) -> bool {
    matches!(
        method,
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
    )
}

/// The client metadata of a registration request, validated (RFC 7591 §2, CIBA Core §4).
#[derive(Debug)]
pub struct Metadata {
    pub token_endpoint_auth_method: AuthMethod,
    /// Validated and answered; `Client` keeps no grant list of its own.
    pub grant_types: Vec<String>,
    pub delivery_mode: DeliveryMode,
    pub notification_endpoint: Option<String>,
    pub signing_alg: Option<String>,
    pub user_code: bool,
    pub jwks: Option<JwkSet>,
    pub client_name: Option<String>,
    /// `resource_server: true`: an API that introspects access tokens and starts no requests.
    pub resource_server: bool,
    pub access_token_format: AccessTokenFormat,
    /// `fapi: true`: the FAPI-CIBA client profile (`fapi::check_registration`).
    pub fapi: bool,
    /// The client certificate's identity and binding (RFC 8705).
    pub tls: TlsClientMetadata,
}

/// A member of the request, `null` counting as absent.
fn member<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn string<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, RegistrationError> {
    match member(body, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_metadata(format!("{name} must be a string"))),
    }
}

/// A boolean member, absent or `null` counting as `false`.
fn boolean(body: &Map<String, Value>, name: &str) -> Result<bool, RegistrationError> {
    match member(body, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid_metadata(format!("{name} must be a boolean"))),
    }
}

impl Metadata {
    /// Checks every field this OP registers; metadata it does not know is ignored (RFC 7591 §2).
    /// `local_op`: the OP runs locally (`Config::runs_locally`).
    pub fn validate(body: &Map<String, Value>, local_op: bool) -> Result<Self, RegistrationError> {
        if member(body, "jwks_uri").is_some() {
            return Err(invalid_metadata(
                "jwks_uri is not supported: register the client's keys by value in jwks",
            ));
        }
        let resource_server = boolean(body, "resource_server")?;
        let delivery_mode = match string(body, "backchannel_token_delivery_mode")? {
            Some(_) if resource_server => {
                return Err(invalid_metadata(
                    "a resource server starts no authentication requests: leave out backchannel_token_delivery_mode",
                ));
            }
            Some(mode) => DeliveryMode::parse(mode).ok_or_else(|| {
                invalid_metadata("backchannel_token_delivery_mode must be poll, ping or push")
            })?,
            None if resource_server => DeliveryMode::Poll,
            None => {
                return Err(invalid_metadata(
                    "backchannel_token_delivery_mode is required",
                ));
            }
        };
        let access_token_format = match string(body, "access_token_format")? {
            None => AccessTokenFormat::Opaque,
            Some(format) => AccessTokenFormat::parse(format)
                .ok_or_else(|| invalid_metadata("access_token_format must be opaque or jwt"))?,
        };
        let notification_endpoint = string(body, "backchannel_client_notification_endpoint")?
            .map(|raw| notification_endpoint(raw, local_op))
            .transpose()?;
        if delivery_mode.notifies() && notification_endpoint.is_none() {
            return Err(invalid_metadata(
                "backchannel_client_notification_endpoint is required in ping and push mode",
            ));
        }
        let token_endpoint_auth_method = match string(body, "token_endpoint_auth_method")? {
            None | Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
            Some("client_secret_post") => AuthMethod::ClientSecretPost,
            Some("private_key_jwt") => AuthMethod::PrivateKeyJwt,
            Some("tls_client_auth") => AuthMethod::TlsClientAuth,
            Some("self_signed_tls_client_auth") => AuthMethod::SelfSignedTlsClientAuth,
            Some(_) => {
                return Err(invalid_metadata(
                    "token_endpoint_auth_method must be client_secret_basic, client_secret_post, \
                     private_key_jwt, tls_client_auth or self_signed_tls_client_auth",
                ));
            }
        };
        let jwks = member(body, "jwks").map(jwks).transpose()?;
        let tls = tls::metadata(
            body,
            token_endpoint_auth_method,
            jwks.as_ref(),
            delivery_mode,
            resource_server,
        )?;
        if token_endpoint_auth_method == AuthMethod::PrivateKeyJwt {
            let keys = jwks.as_ref().ok_or_else(|| {
                invalid_metadata("private_key_jwt requires the client's public keys in jwks")
            })?;
            if !has_key_for(keys, "ES256") && !has_key_for(keys, "PS256") {
                return Err(invalid_metadata(
                    "private_key_jwt requires an EC P-256 or RSA signing key in jwks",
                ));
            }
        }
        let signing_alg = match string(body, "backchannel_authentication_request_signing_alg")? {
            None => None,
            Some(alg @ ("ES256" | "PS256")) => {
                let keys = jwks.as_ref().ok_or_else(|| {
                    invalid_metadata(
                        "backchannel_authentication_request_signing_alg requires the client's public keys in jwks",
                    )
                })?;
                if !has_key_for(keys, alg) {
                    return Err(invalid_metadata(format!(
                        "jwks has no signing key for {alg} request objects"
                    )));
                }
                Some(alg.to_owned())
            }
            Some(_) => {
                return Err(invalid_metadata(
                    "backchannel_authentication_request_signing_alg must be ES256 or PS256",
                ));
            }
        };
        let user_code = boolean(body, "backchannel_user_code_parameter")?;
        let grant_types = if resource_server {
            match member(body, "grant_types") {
                None => Vec::new(),
                Some(Value::Array(a)) if a.is_empty() => Vec::new(),
                Some(_) => {
                    return Err(invalid_metadata(
                        "a resource server is granted no tokens: grant_types must be empty",
                    ));
                }
            }
        } else {
            grant_types(member(body, "grant_types"))?
        };
        let client_name = string(body, "client_name")?
            .map(|name| {
                let count = name.chars().count();
                if count == 0 || count > MAX_CLIENT_NAME || display::first_unsafe(name).is_some() {
                    Err(invalid_metadata(format!(
                        "client_name must be 1 to {MAX_CLIENT_NAME} characters without control, \
                         bidirectional or zero-width characters"
                    )))
                } else {
                    Ok(name.to_owned())
                }
            })
            .transpose()?;
        if let Some(uris) = member(body, "redirect_uris") {
            redirect_uris(uris)?;
        }
        Ok(Self {
            token_endpoint_auth_method,
            grant_types,
            delivery_mode,
            notification_endpoint,
            signing_alg,
            user_code,
            jwks,
            client_name,
            resource_server,
            access_token_format,
            fapi: boolean(body, "fapi")?,
            tls,
        })
    }

    /// Whether the client needs its certificate to reach the OP: it authenticates with one, or
    /// its tokens are bound to one (RFC 8705).
    pub fn uses_mutual_tls(&self) -> bool {
        matches!(
            self.token_endpoint_auth_method,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        ) || self.tls.tls_client_certificate_bound_access_tokens
    }

    /// The step after `validate` that needs the network: a public OP resolves the notification
    /// endpoint's name and refuses it when any address it resolves to now is not public. A name
    /// that does not resolve is accepted: delivery resolves it again and refuses such addresses.
    pub async fn check_endpoint_addresses(
        &self,
        resolver: &dyn Resolver,
        local_op: bool,
    ) -> Result<(), RegistrationError> {
        let Some(endpoint) = self.notification_endpoint.as_deref() else {
            return Ok(());
        };
        if local_op {
            return Ok(());
        }
        let url = Url::parse(endpoint).map_err(|_| {
            invalid_metadata("backchannel_client_notification_endpoint must be an absolute URL")
        })?;
        let host = callback_policy::registrable_host(&url).map_err(invalid_metadata)?;
        if callback_policy::resolves_internally(resolver, host).await {
            return Err(invalid_metadata(RESOLVES_INTERNALLY));
        }
        Ok(())
    }
}

/// CIBA Core §4: "This URL MUST use the https scheme". Plain http only reaches a loopback host,
/// and only from an OP running locally, where the RP under development listens. A public OP
/// also refuses hosts that are not a public DNS name (`callback_policy::registrable_host`).
fn notification_endpoint(raw: &str, local_op: bool) -> Result<String, RegistrationError> {
    let url = Url::parse(raw).map_err(|_| {
        invalid_metadata("backchannel_client_notification_endpoint must be an absolute URL")
    })?;
    if url.fragment().is_some() {
        return Err(invalid_metadata(
            "backchannel_client_notification_endpoint must not have a fragment",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if local_op && is_loopback(&url) => {}
        _ => {
            return Err(invalid_metadata(
                "backchannel_client_notification_endpoint must be an https URL",
            ));
        }
    }
    if !local_op {
        callback_policy::registrable_host(&url).map_err(invalid_metadata)?;
    }
    Ok(url.into())
}

/// A JWK Set of public keys only, with at least one key, each an EC P-256 point or an RSA key of
/// at least `MIN_RSA_BITS`: the keys ES256 and PS256 verify with. A malformed key is refused
/// rather than ignored (RFC 7517 §5 lets a reader ignore it), so the client learns now, not at its
/// first signed request.
fn jwks(value: &Value) -> Result<JwkSet, RegistrationError> {
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_metadata("jwks must be a JWK Set: an object with a keys array"))?;
    if keys.is_empty() {
        return Err(invalid_metadata("jwks must hold at least one key"));
    }
    let private = keys
        .iter()
        .any(|key| PRIVATE_MEMBERS.iter().any(|m| key.get(m).is_some()));
    if private {
        return Err(invalid_metadata(
            "jwks must hold public keys only, never private or symmetric key material",
        ));
    }
    let unusable = || {
        invalid_metadata(
            "jwks must hold EC P-256 keys or RSA keys of 2048 bits or more, each complete",
        )
    };
    let set: JwkSet = serde_json::from_value(value.clone()).map_err(|_| unusable())?;
    for (jwk, raw) in set.keys.iter().zip(keys) {
        let usable = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(_) => jose::p256_public_jwk(raw).is_ok(),
            AlgorithmParameters::RSA(rsa) => {
                rsa_bits(&rsa.n) >= MIN_RSA_BITS
                    && URL_SAFE_NO_PAD.decode(&rsa.e).is_ok_and(|e| !e.is_empty())
            }
            _ => false,
        };
        if !usable {
            return Err(unusable());
        }
    }
    Ok(set)
}

/// The size of an RSA modulus given as base64url, in bits; 0 when it does not decode.
fn rsa_bits(n: &str) -> usize {
    let modulus = URL_SAFE_NO_PAD.decode(n).unwrap_or_default();
    let Some(first) = modulus.iter().position(|b| *b != 0) else {
        return 0;
    };
    (modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize
}

/// Whether `keys` holds a signing key of the type `alg` verifies with.
fn has_key_for(keys: &JwkSet, alg: &str) -> bool {
    keys.keys.iter().any(|jwk| {
        let signing =
            !matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature);
        let fits = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::EllipticCurve(ec), "ES256") => ec.curve == EllipticCurve::P256,
            (AlgorithmParameters::RSA(_), "PS256") => true,
            _ => false,
        };
        signing && fits
    })
}

/// The CIBA grant, optionally with `refresh_token`; the CIBA grant alone when absent.
fn grant_types(value: Option<&Value>) -> Result<Vec<String>, RegistrationError> {
    let Some(value) = value else {
        return Ok(vec![CIBA_GRANT.to_owned()]);
    };
    let grants: Vec<&str> = value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect())
        .ok_or_else(|| invalid_metadata("grant_types must be an array of strings"))?;
    if grants
        .iter()
        .any(|g| *g != CIBA_GRANT && *g != REFRESH_GRANT)
    {
        return Err(invalid_metadata(format!(
            "grant_types may hold only {CIBA_GRANT} and {REFRESH_GRANT}"
        )));
    }
    if !grants.contains(&CIBA_GRANT) {
        return Err(invalid_metadata(format!(
            "grant_types must include {CIBA_GRANT}"
        )));
    }
    let mut unique: Vec<String> = Vec::with_capacity(grants.len());
    for grant in grants {
        if !unique.iter().any(|g| g == grant) {
            unique.push(grant.to_owned());
        }
    }
    Ok(unique)
}

/// CIBA has no redirects, so the URIs are not kept; a client that sends them still gets them
/// checked (RFC 7591 §2: absolute, and RFC 6749 §3.1.2: no fragment).
fn redirect_uris(value: &Value) -> Result<(), RegistrationError> {
    let bad = || {
        RegistrationError::InvalidRedirectUri(
            "redirect_uris must be an array of absolute https URLs without fragment".into(),
        )
    };
    let uris = value.as_array().ok_or_else(bad)?;
    for uri in uris {
        let url = uri
            .as_str()
            .and_then(|s| Url::parse(s).ok())
            .ok_or_else(bad)?;
        if url.scheme() != "https" || url.fragment().is_some() {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::WireError;
    use serde_json::json;
    use std::net::IpAddr;

    fn validate(body: Value, local_op: bool) -> Result<Metadata, RegistrationError> {
        Metadata::validate(body.as_object().unwrap(), local_op)
    }

    fn ping_to(endpoint: &str) -> Value {
        json!({
            "backchannel_token_delivery_mode": "ping",
            "backchannel_client_notification_endpoint": endpoint,
        })
    }

    #[test]
    fn http_loopback_notification_endpoint_is_accepted_when_the_op_runs_locally() {
        for endpoint in [
            "http://127.0.0.1:3000/cb",
            "http://localhost:3000/cb",
            "http://[::1]:3000/cb",
        ] {
            let m = validate(ping_to(endpoint), true).unwrap();
            assert_eq!(m.notification_endpoint.as_deref(), Some(endpoint));
        }
    }

    #[test]
    fn http_loopback_notification_endpoint_is_refused_for_a_public_op() {
        let e = validate(ping_to("http://127.0.0.1:3000/cb"), false).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
    }

    #[test]
    fn http_notification_endpoint_on_another_host_is_refused_even_locally() {
        let e = validate(ping_to("http://rp.example.com/cb"), true).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
    }

    #[test]
    fn internal_notification_endpoints_are_refused_by_a_public_op() {
        for (endpoint, why) in [
            (
                "https://169.254.169.254/latest/meta-data/",
                callback_policy::IP_LITERAL,
            ),
            ("https://10.0.0.1/", callback_policy::IP_LITERAL),
            ("https://192.168.1.1/", callback_policy::IP_LITERAL),
            (
                "https://[::ffff:169.254.169.254]/",
                callback_policy::IP_LITERAL,
            ),
            (
                "https://metadata.google.internal/",
                callback_policy::LOCAL_NAME,
            ),
            ("https://user:pw@host/", callback_policy::USERINFO),
            ("https://user:pw@rp.example.com/", callback_policy::USERINFO),
        ] {
            let e = validate(ping_to(endpoint), false).unwrap_err();
            assert_eq!(e.code(), "invalid_client_metadata", "{endpoint}");
            assert_eq!(e.description(), why, "{endpoint}");
        }
    }

    #[test]
    fn https_loopback_notification_endpoint_is_accepted_when_the_op_runs_locally() {
        for endpoint in ["https://localhost:3443/cb", "https://127.0.0.1:3443/cb"] {
            assert!(validate(ping_to(endpoint), true).is_ok(), "{endpoint}");
        }
    }

    /// DNS as a test wants it: `rp.example.com` resolves to what the test says, nothing else
    /// resolves.
    struct Answers(Vec<IpAddr>);

    #[async_trait::async_trait]
    impl Resolver for Answers {
        async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
            match host {
                "rp.example.com" => Ok(self.0.clone()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        }
    }

    async fn check(endpoint: &str, answers: &[&str], local_op: bool) -> Result<(), String> {
        let resolver = Answers(answers.iter().map(|a| a.parse().unwrap()).collect());
        validate(ping_to(endpoint), local_op)
            .unwrap()
            .check_endpoint_addresses(&resolver, local_op)
            .await
            .map_err(|e| e.description().to_owned())
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused_by_a_public_op() {
        for answers in [
            &["10.0.0.5"][..],
            &["169.254.169.254"],
            &["127.0.0.1"],
            &["fd00:ec2::254"],
            &["93.184.216.34", "192.168.1.1"],
        ] {
            let refused = check("https://rp.example.com/cb", answers, false).await;
            assert_eq!(
                refused,
                Err(callback_policy::RESOLVES_INTERNALLY.to_owned()),
                "{answers:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_public_addresses_only_is_accepted() {
        let answers = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"];
        assert_eq!(
            check("https://rp.example.com/cb", &answers, false).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_at_registration_is_left_to_delivery() {
        assert_eq!(
            check("https://later.example.com/cb", &[], false).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn an_op_that_runs_locally_does_not_resolve_the_endpoint() {
        assert_eq!(
            check("https://rp.example.com/cb", &["10.0.0.5"], true).await,
            Ok(())
        );
    }

    #[test]
    fn relative_notification_endpoint_is_invalid_client_metadata() {
        let e = validate(ping_to("/cb"), false).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
    }

    #[test]
    fn null_metadata_counts_as_absent() {
        let m = validate(
            json!({"backchannel_token_delivery_mode": "poll", "client_name": null, "jwks": null}),
            false,
        )
        .unwrap();
        assert!(m.client_name.is_none() && m.jwks.is_none());
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, [CIBA_GRANT]);
    }

    #[test]
    fn repeated_grant_types_are_registered_once() {
        let m = validate(
            json!({
                "backchannel_token_delivery_mode": "poll",
                "grant_types": [CIBA_GRANT, "refresh_token", CIBA_GRANT],
            }),
            false,
        )
        .unwrap();
        assert_eq!(m.grant_types, [CIBA_GRANT, "refresh_token"]);
    }

    #[test]
    fn rsa_modulus_size_ignores_leading_zero_bits() {
        let mut n = vec![0u8, 0x01];
        n.extend([0xff; 255]);
        assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode(&n)), 2041);
        assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode([0x80; 256])), 2048);
        assert_eq!(rsa_bits("not base64!"), 0);
    }

    #[test]
    fn a_resource_server_registers_without_ciba_metadata_and_with_no_grants() {
        let m = validate(json!({"resource_server": true}), false).unwrap();
        assert!(m.resource_server);
        assert!(m.grant_types.is_empty());
        for refused in [
            json!({"resource_server": true, "backchannel_token_delivery_mode": "poll"}),
            json!({"resource_server": true, "grant_types": [CIBA_GRANT]}),
            json!({"resource_server": "yes"}),
        ] {
            let e = validate(refused.clone(), false).unwrap_err();
            assert_eq!(e.code(), "invalid_client_metadata", "{refused}");
        }
    }

    #[test]
    fn access_token_format_is_opaque_unless_jwt_is_asked_for() {
        let poll = |extra: Value| {
            let mut body = json!({"backchannel_token_delivery_mode": "poll"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            validate(body, false)
        };
        let format = |extra| poll(extra).map(|m| m.access_token_format);
        assert_eq!(format(json!({})).unwrap(), AccessTokenFormat::Opaque);
        assert_eq!(
            format(json!({"access_token_format": "jwt"})).unwrap(),
            AccessTokenFormat::Jwt
        );
        for bad in [json!("JWT"), json!("paseto"), json!(1)] {
            let e = poll(json!({"access_token_format": bad})).unwrap_err();
            assert_eq!(e.code(), "invalid_client_metadata");
        }
    }
}
