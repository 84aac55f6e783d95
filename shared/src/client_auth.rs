//! Client authentication at the token and backchannel authentication endpoints:
//! `client_secret_basic`, `client_secret_post` (RFC 6749 §2.3.1), `private_key_jwt`
//! (OIDC Core §9, RFC 7523), and by the request's client certificate `tls_client_auth` and
//! `self_signed_tls_client_auth` (RFC 8705 §2). A client must use the method it registered.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use lambda_http::http::HeaderMap;

use crate::config::Config;
use crate::domain::{AuthMethod, Client};
use crate::error::ClientAuthError;
use crate::http::Form;
use crate::ident::Ident;
use crate::jose::Claims;
use crate::jwt::Expect;
use crate::mtls::{self, ClientCert};
use crate::secret;
use crate::store::Store;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The parameters that belong to client authentication, not to the request itself.
pub const CLIENT_AUTH_PARAMS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// The credentials a request presents, before any lookup.
#[derive(Debug)]
enum Presented {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: String,
        secret: String,
    },
    Assertion {
        id: String,
        assertion: String,
    },
    /// Only a `client_id`, over mutual TLS: the certificate is the credential (RFC 8705 §2).
    Certificate {
        id: String,
    },
}

fn invalid(description: &'static str, basic: bool) -> ClientAuthError {
    ClientAuthError::InvalidClient {
        description: description.into(),
        basic,
    }
}

fn bad_request(description: &'static str) -> ClientAuthError {
    ClientAuthError::InvalidRequest(description.into())
}

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ClientAuthError>> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let malformed = || invalid("malformed Basic credentials", true);
    let parsed = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            // RFC 6749 §2.3.1: both halves are form-urlencoded before base64.
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        })
        .ok_or_else(malformed);
    Some(parsed)
}

fn presented(
    headers: &HeaderMap,
    form: &Form,
    cert: Option<&ClientCert>,
) -> Result<Presented, ClientAuthError> {
    let basic = basic_credentials(headers).transpose()?;
    let post = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let methods = usize::from(basic.is_some())
        + usize::from(post.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(bad_request("use exactly one client authentication method"));
    }
    let form_id = form.get("client_id");
    if let Some((id, secret)) = basic {
        if form_id.is_some_and(|f| f != id) {
            return Err(bad_request(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(Presented::Basic { id, secret });
    }
    if let Some(secret) = post {
        let id = form_id.ok_or_else(|| bad_request("client_secret needs client_id"))?;
        return Ok(Presented::Post {
            id: id.into(),
            secret: secret.into(),
        });
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(bad_request("client_assertion_type must be jwt-bearer"));
        }
        let id = unverified_issuer(assertion)
            .ok_or_else(|| invalid("client_assertion is malformed", false))?;
        if form_id.is_some_and(|f| f != id) {
            return Err(bad_request("client_id does not match the client assertion"));
        }
        return Ok(Presented::Assertion {
            id,
            assertion: assertion.into(),
        });
    }
    match form_id {
        Some(id) if cert.is_some() => Ok(Presented::Certificate { id: id.into() }),
        _ => Err(invalid("client authentication is required", false)),
    }
}

/// The `iss` of an assertion, read before verification only to find the client's keys.
fn unverified_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// What a request authenticates its client with: its headers and form, and the client
/// certificate of its TLS connection when it came over mutual TLS (`mtls::from_request`).
pub struct Credentials<'a> {
    pub headers: &'a HeaderMap,
    pub form: &'a Form,
    pub cert: Option<&'a ClientCert>,
}

/// Authenticates the client of a request, answering the registered client.
pub async fn authenticate(
    credentials: Credentials<'_>,
    store: &dyn Store,
    config: &Config,
    now: i64,
) -> Result<Client, ClientAuthError> {
    let Credentials {
        headers,
        form,
        cert,
    } = credentials;
    let presented = presented(headers, form, cert)?;
    let (id, basic) = match &presented {
        Presented::Basic { id, .. } => (id, true),
        Presented::Post { id, .. } | Presented::Assertion { id, .. } => (id, false),
        Presented::Certificate { id } => (id, false),
    };
    if !Ident::ClientId.accepts(id) {
        return Err(invalid("client authentication failed", basic));
    }
    let client = store
        .clients()
        .get_client(id)
        .await?
        .ok_or_else(|| invalid("client authentication failed", basic))?;
    let registered = client.token_endpoint_auth_method;
    let method_fits = match &presented {
        Presented::Basic { .. } => registered == AuthMethod::ClientSecretBasic,
        Presented::Post { .. } => registered == AuthMethod::ClientSecretPost,
        Presented::Assertion { .. } => registered == AuthMethod::PrivateKeyJwt,
        Presented::Certificate { .. } => matches!(
            registered,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        ),
    };
    if !method_fits {
        return Err(invalid("client authentication failed", basic));
    }
    match presented {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            let ok = client
                .client_secret_hash
                .as_deref()
                .is_some_and(|stored| secret::matches(&secret, stored));
            if !ok {
                return Err(invalid("client authentication failed", basic));
            }
        }
        Presented::Assertion { assertion, .. } => {
            verify_assertion(&assertion, &client, store, config, now).await?;
        }
        Presented::Certificate { .. } => {
            let recognised = cert.is_some_and(|cert| {
                cert.is_valid_at(now)
                    && match registered {
                        // Issued by a configured CA, whatever the TLS terminator's truststore
                        // took as an anchor, and naming the registered identity.
                        AuthMethod::TlsClientAuth => {
                            config.mtls_client_cas.issued(cert.certificate(), now)
                                && mtls::registered_identity(&client)
                                    .is_some_and(|identity| identity.matches(cert))
                        }
                        _ => client
                            .jwks
                            .as_ref()
                            .is_some_and(|keys| mtls::matches_registered_keys(cert, keys)),
                    }
            });
            if !recognised {
                return Err(invalid("client authentication failed", false));
            }
        }
    }
    // Checked once the client proved who it is, so that a failed attempt tells nothing of it.
    if crate::fapi::applies(&client, config)
        && !crate::fapi::AUTH_METHODS.contains(&client.token_endpoint_auth_method)
    {
        return Err(invalid(crate::fapi::AUTH_METHODS_RULE, basic));
    }
    Ok(client)
}

async fn verify_assertion(
    assertion: &str,
    client: &Client,
    store: &dyn Store,
    config: &Config,
    now: i64,
) -> Result<(), ClientAuthError> {
    let failed = || invalid("client assertion is invalid", false);
    let keys = client.jwks.as_ref().ok_or_else(failed)?;
    let id = client.client_id.as_str();
    let ours = |aud: &str| config.accepts_audience(aud);
    let checked = Expect::new("client assertion", config.clock_skew)
        .issuer(id)
        .subject(id)
        .audience_only(&ours)
        .expires_within(config.request_object_max_age)
        .jti(format!("assertion#{id}"))
        .verify(assertion, keys, &[Algorithm::ES256, Algorithm::PS256], now)
        .map_err(|_| failed())?;
    let jti = checked.jti.ok_or_else(failed)?;
    if !store.jtis().use_jti(&jti, now).await? {
        return Err(invalid("client assertion was already used", false));
    }
    Ok(())
}
