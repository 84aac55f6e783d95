//! Signed authentication request objects (CIBA Core §7.1.1, FAPI-CIBA §5.2.2).

use jsonwebtoken::Algorithm;

use super::params::AuthnParams;
use crate::config::Config;
use crate::domain::Client;
use crate::error::AuthnError;
use crate::jose::JwsError;
use crate::jwt::{Expect, JwtError};
use crate::store::JtiUse;

fn invalid(description: impl Into<String>) -> AuthnError {
    AuthnError::InvalidRequest(description.into().into())
}

/// Verifies a request object of `client` at time `now` (epoch seconds) and answers the
/// authentication parameters it carries and the `jti` to consume with the request.
pub fn verify(
    jwt: &str,
    client: &Client,
    config: &Config,
    now: i64,
) -> Result<(AuthnParams, JtiUse), AuthnError> {
    let keys = client
        .jwks
        .as_ref()
        .ok_or_else(|| invalid("the client has no registered keys to verify a request object"))?;
    let allowed: &[Algorithm] = match client
        .backchannel_authentication_request_signing_alg
        .as_deref()
    {
        Some("ES256") => &[Algorithm::ES256],
        Some("PS256") => &[Algorithm::PS256],
        _ => &[Algorithm::ES256, Algorithm::PS256],
    };
    let op = |aud: &str| aud == config.issuer;
    let expect = Expect::new("request object", config.clock_skew)
        .issuer(&client.client_id)
        .audience(&op)
        .expires_within(config.request_object_max_exp)
        .iat_within(config.request_object_max_age)
        .nbf_required()
        .nbf_within(config.request_object_max_age)
        .jti(format!("request#{}", client.client_id));
    let what = expect.what();
    let checked = expect
        .verify(jwt, keys, allowed, now)
        .map_err(|e| match e {
            JwtError::Signature(JwsError::AlgorithmNotAllowed) => {
                invalid("the request object must be signed with ES256 or PS256 as registered")
            }
            JwtError::WrongIssuer => invalid("request object iss must be the client_id"),
            JwtError::WrongAudience => invalid("request object aud must name the OP's issuer"),
            other => invalid(other.describe(what)),
        })?;
    let params = AuthnParams::from_claims(&checked.claims)?;
    let jti = checked
        .jti
        .ok_or_else(|| invalid("request object must carry jti"))?;
    Ok((params, jti))
}
