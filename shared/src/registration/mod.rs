//! The rules of dynamic client registration (RFC 7591 §2) with the CIBA client metadata (CIBA
//! Core §4): every field this OP registers is checked, the client's keys above all.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use serde_json::{Map, Value};
use url::Url;

mod tls;

use crate::authorization_details;
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
    /// `authorization_details_types` (RFC 9396 §10): the types it may request, each one the OP
    /// has a schema for.
    pub authorization_details_types: Option<Vec<String>>,
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
            authorization_details_types: authorization_details_types(body)?,
            tls,
        })
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
        let url = Url::parse(endpoint).map_err(|_| {
            invalid_metadata("backchannel_client_notification_endpoint must be an absolute URL")
        })?;
        let host = if local_op {
            // Loopback is what a local OP exempts: a loopback name is not looked up, and an IP
            // literal was checked by `validate`.
            match url.host() {
                Some(url::Host::Domain(_)) if is_loopback(&url) => return Ok(()),
                Some(url::Host::Domain(name)) => name,
                _ => return Ok(()),
            }
        } else {
            callback_policy::registrable_host(&url).map_err(invalid_metadata)?
        };
        let policy = callback_policy::AddressPolicy::for_op(local_op);
        if callback_policy::resolves_outside(resolver, host, policy).await {
            return Err(invalid_metadata(RESOLVES_INTERNALLY));
        }
        Ok(())
    }
}

/// `authorization_details_types`: a non-empty array of distinct names of types the OP has a
/// schema for (`authorization_details::TYPES`).
fn authorization_details_types(
    body: &Map<String, Value>,
) -> Result<Option<Vec<String>>, RegistrationError> {
    let Some(value) = member(body, "authorization_details_types") else {
        return Ok(None);
    };
    let malformed = || {
        invalid_metadata(format!(
            "authorization_details_types must be a non-empty array of distinct type names, each one \
             of: {}",
            authorization_details::TYPES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let names = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(malformed)?;
    let mut types: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name
            .as_str()
            .filter(|n| authorization_details::known(n))
            .ok_or_else(malformed)?;
        if types.iter().any(|t| t == name) {
            return Err(malformed());
        }
        types.push(name.to_owned());
    }
    Ok(Some(types))
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
    } else if let Some(ip) = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    } && !callback_policy::AddressPolicy::AllowLoopback.admits(ip)
    {
        // A local OP exempts loopback only: private, link-local and metadata addresses are
        // refused as a public OP refuses them.
        return Err(invalid_metadata(RESOLVES_INTERNALLY));
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
mod tests;
