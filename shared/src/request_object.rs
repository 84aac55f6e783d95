//! Signed authentication request objects (CIBA Core §7.1.1, FAPI-CIBA §5.2.2).

use jsonwebtoken::Algorithm;

use crate::authn::AuthnParams;
use crate::config::Config;
use crate::domain::Client;
use crate::error::AuthnError;
use crate::jose::{self, JwsError};
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
    let verified = jose::verify(jwt, keys, allowed).map_err(|e| match e {
        JwsError::AlgorithmNotAllowed => {
            invalid("the request object must be signed with ES256 or PS256 as registered")
        }
        other => invalid(format!("request object: {}", other.describe())),
    })?;
    let claims = &verified.claims;

    if claims.get("iss").and_then(|v| v.as_str()) != Some(client.client_id.as_str()) {
        return Err(invalid("request object iss must be the client_id"));
    }
    if !jose::audiences(claims).contains(&config.issuer.as_str()) {
        return Err(invalid("request object aud must name the OP's issuer"));
    }
    let exp = jose::numeric_date(claims, "exp")
        .ok_or_else(|| invalid("request object exp is required"))?;
    if exp <= now {
        return Err(invalid("request object has expired"));
    }
    if exp > now + config.request_object_max_exp {
        return Err(invalid("request object exp is too far in the future"));
    }
    let iat = jose::numeric_date(claims, "iat")
        .ok_or_else(|| invalid("request object iat is required"))?;
    if iat > now + config.clock_skew {
        return Err(invalid("request object iat is in the future"));
    }
    if claims.contains_key("nbf") {
        let nbf = jose::numeric_date(claims, "nbf")
            .ok_or_else(|| invalid("request object nbf is not a number"))?;
        if nbf > now + config.clock_skew {
            return Err(invalid("request object is not yet valid (nbf)"));
        }
        if nbf < now - config.request_object_max_age {
            return Err(invalid("request object nbf is too old"));
        }
        if exp - nbf > config.request_object_max_age {
            return Err(invalid("request object lifetime (exp - nbf) is too long"));
        }
    }
    let jti = claims
        .get("jti")
        .and_then(|v| v.as_str())
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("request object jti is required"))?;
    let params = AuthnParams::from_claims(claims)?;
    let jti = JtiUse {
        scope: format!("request#{}", client.client_id),
        jti: jti.into(),
        expires_at: exp,
    };
    Ok((params, jti))
}
