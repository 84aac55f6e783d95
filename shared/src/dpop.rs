//! DPoP proofs (RFC 9449): a client proves possession of a key with a JWT it signs for each
//! request (`DPoP` header), and the access tokens issued to it are bound to that key's RFC 7638
//! thumbprint (`cnf.jkt`).
//!
//! A proof is checked in the order of RFC 9449 §4.3: one `DPoP` header holding a compact JWS with
//! `typ: dpop+jwt`, an asymmetric `alg` this OP accepts and the public `jwk` it verifies with;
//! `htm` and `htu` naming this request, `iat` within the window, `ath` the hash of the access
//! token where one is presented, a `nonce` the OP handed out when it requires one
//! (`DPOP_NONCE=required`), and a `jti` used once per key.
//!
//! Nonces (RFC 9449 §8, §9) need no storage: a nonce names a 5-minute window of time and is
//! authenticated with a key derived from the OP secret, so the OP recognises its own and a
//! client cannot make one for a window to come. A nonce is good in its window and the next
//! (5 to 10 minutes); every answer of `/token` and `/userinfo` carries the current one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use lambda_http::http::{HeaderMap, HeaderValue, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::context::Ctx;
use crate::ident::Ident;
use crate::jose;
use crate::store::{JtiUse, StoreError};

/// The algorithms a proof may be signed with (`dpop_signing_alg_values_supported`).
pub const ALGORITHMS: &[&str] = &["ES256", "PS256"];
/// How old a proof's `iat` may be, seconds: a proof is made for one request, just before it.
pub const MAX_AGE: i64 = 300;
/// Longer than any proof a client needs to send.
const MAX_PROOF: usize = 8192;
/// How long one nonce is handed out, seconds; it is accepted for one window more.
pub const NONCE_WINDOW: i64 = 300;
/// JWK members holding private key material (RFC 7518 §6.2.2, §6.3.2) or a symmetric key.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof that checked out: the thumbprint of the key that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
}

#[derive(Debug)]
pub enum DpopError {
    /// `invalid_dpop_proof`, with what is wrong.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks the nonce the OP requires, or its nonce is stale.
    UseNonce(String),
    Store(StoreError),
}

fn invalid(what: impl Into<String>) -> DpopError {
    DpopError::Invalid(what.into())
}

/// The request a proof must be made for.
pub struct Target<'a> {
    /// `htm`: the HTTP method.
    pub method: &'a str,
    /// The path of the endpoint; `htu` must be this OP's URL of it.
    pub path: &'a str,
    /// The access token presented with the proof, whose hash `ath` must be.
    pub access_token: Option<&'a str>,
}

/// The proof in `headers` for `target`, checked, its `jti` spent; `None` when there is no `DPoP`
/// header.
pub async fn verify(
    ctx: &Ctx,
    headers: &HeaderMap,
    target: &Target<'_>,
) -> Result<Option<Proof>, DpopError> {
    let (config, now) = (ctx.config.as_ref(), ctx.clock.now());
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let proof = value
        .to_str()
        .ok()
        .filter(|p| !p.is_empty() && p.len() <= MAX_PROOF)
        .ok_or_else(|| invalid("the DPoP header is not a compact JWS"))?;
    let (jkt, claims) = signed_claims(proof)?;
    check_claims(&claims, target, config, now)?;
    check_nonce(ctx, &claims, now)?;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the DPoP proof has no jti"))?;
    if let Some(fault) = Ident::Jti.fault(jti) {
        return Err(invalid(format!("the DPoP proof's jti {fault}")));
    }
    let iat = jose::numeric_date(&claims, "iat").unwrap_or(now);
    let first_use = ctx
        .store
        .jtis()
        .use_jti(
            &JtiUse {
                scope: format!("dpop:{jkt}"),
                jti: jti.to_owned(),
                expires_at: iat + MAX_AGE + config.clock_skew,
            },
            now,
        )
        .await
        .map_err(DpopError::Store)?;
    if !first_use {
        return Err(invalid("the DPoP proof was used before"));
    }
    Ok(Some(Proof { jkt }))
}

/// The nonce proofs must carry now (the `DPoP-Nonce` header of every answer), when the OP
/// requires one.
pub fn current_nonce(ctx: &Ctx) -> Option<String> {
    let key = nonce_key(ctx)?;
    Some(nonce_of(key, ctx.clock.now().div_euclid(NONCE_WINDOW)))
}

/// `response` with the current nonce in its `DPoP-Nonce` header (RFC 9449 §8.2, §9), when the
/// OP requires nonces: the client's next proof carries it.
pub fn with_nonce<B>(ctx: &Ctx, mut response: Response<B>) -> Response<B> {
    if let Some(value) = current_nonce(ctx).and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

fn nonce_key(ctx: &Ctx) -> Option<&crate::secret::Secret> {
    if !ctx.config.dpop_nonce_required {
        return None;
    }
    ctx.keys.as_deref().map(|keys| &keys.dpop_nonce)
}

/// The nonce of a window: its number and a MAC of it, base64url.
fn nonce_of(key: &crate::secret::Secret, window: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(&window.to_be_bytes());
    let mut nonce = window.to_be_bytes().to_vec();
    nonce.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    URL_SAFE_NO_PAD.encode(nonce)
}

/// A required nonce: the one of this window or the one before. Compared in constant time, as
/// the MAC it is.
fn check_nonce(ctx: &Ctx, claims: &jose::Claims, now: i64) -> Result<(), DpopError> {
    if !ctx.config.dpop_nonce_required {
        return Ok(());
    }
    // Required but not loadable: the function refused to start (`Ctx::from_env_for_dpop`);
    // should it be reached all the same, no proof passes.
    let key = nonce_key(ctx).ok_or_else(|| {
        DpopError::UseNonce("the OP cannot check DPoP nonces at the moment".into())
    })?;
    let Some(presented) = claims.get("nonce").and_then(Value::as_str) else {
        return Err(DpopError::UseNonce(
            "the DPoP proof must carry the nonce of the DPoP-Nonce header".into(),
        ));
    };
    let window = now.div_euclid(NONCE_WINDOW);
    let fresh = [window, window - 1].iter().any(|w| {
        subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), nonce_of(key, *w).as_bytes()).into()
    });
    if !fresh {
        return Err(DpopError::UseNonce(
            "the DPoP proof's nonce is unknown or stale: use the one of the DPoP-Nonce header"
                .into(),
        ));
    }
    Ok(())
}

/// The thumbprint of the header's key and the claims it verified.
fn signed_claims(proof: &str) -> Result<(String, jose::Claims), DpopError> {
    let header: Value = proof
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("the DPoP proof's header is not base64url JSON"))?;
    if !header["typ"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    let alg = header["alg"]
        .as_str()
        .filter(|alg| ALGORITHMS.contains(alg))
        .ok_or_else(|| invalid("the DPoP proof must be signed with ES256 or PS256"))?;
    let key = header
        .get("jwk")
        .filter(|k| k.is_object())
        .ok_or_else(|| invalid("the DPoP proof's header has no jwk"))?;
    if PRIVATE_MEMBERS.iter().any(|m| key.get(*m).is_some()) {
        return Err(invalid("the DPoP proof's jwk must be a public key"));
    }
    let jkt = thumbprint(key)
        .ok_or_else(|| invalid("the DPoP proof's jwk is not an EC or RSA public key"))?;
    let mut jwk: Jwk = serde_json::from_value(key.clone())
        .map_err(|_| invalid("the DPoP proof's jwk is not an EC or RSA public key"))?;
    // The key signs this proof only: whatever it says of itself, `kid` selects nothing.
    jwk.common.key_id = None;
    let algorithm = if alg == "ES256" {
        Algorithm::ES256
    } else {
        Algorithm::PS256
    };
    let verified = jose::verify(proof, &JwkSet { keys: vec![jwk] }, &[algorithm])
        .map_err(|e| invalid(format!("DPoP proof: {}", e.describe())))?;
    Ok((jkt, verified.claims))
}

fn check_claims(
    claims: &jose::Claims,
    target: &Target<'_>,
    config: &Config,
    now: i64,
) -> Result<(), DpopError> {
    if claims.get("htm").and_then(Value::as_str) != Some(target.method) {
        return Err(invalid(format!(
            "the DPoP proof's htm must be {}",
            target.method
        )));
    }
    let expected = config.endpoint(target.path);
    let alias = config.mtls_endpoint(target.path);
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u
        });
    // The endpoint at the issuer, or its mutual TLS alias (RFC 8705 §5) the client called.
    let names = |url: &str| {
        url::Url::parse(url)
            .ok()
            .zip(htu.as_ref())
            .is_some_and(|(endpoint, htu)| endpoint.as_str() == htu.as_str())
    };
    if !names(&expected) && !alias.as_deref().is_some_and(names) {
        return Err(invalid(format!("the DPoP proof's htu must be {expected}")));
    }
    let iat =
        jose::numeric_date(claims, "iat").ok_or_else(|| invalid("the DPoP proof has no iat"))?;
    if iat > now + config.clock_skew || iat < now - MAX_AGE {
        return Err(invalid(format!(
            "the DPoP proof's iat must be within the last {MAX_AGE} seconds"
        )));
    }
    if let Some(token) = target.access_token {
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        if claims.get("ath").and_then(Value::as_str) != Some(ath.as_str()) {
            return Err(invalid(
                "the DPoP proof's ath must be the hash of the access token",
            ));
        }
    }
    Ok(())
}

/// The RFC 7638 SHA-256 thumbprint of an EC P-256 or RSA public JWK.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let canonical = match member("kty")? {
        "EC" => {
            let (crv, x, y) = (member("crv")?, member("x")?, member("y")?);
            serde_json::json!({"crv": crv, "kty": "EC", "x": x, "y": y})
        }
        "RSA" => {
            let (e, n) = (member("e")?, member("n")?);
            serde_json::json!({"e": e, "kty": "RSA", "n": n})
        }
        _ => return None,
    };
    // serde_json's map keeps keys sorted: the members in RFC 7638's lexicographic order.
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8705 §5 with RFC 9449 §4.3: a client calling the mutual TLS alias of `/token` signs
    /// that URL as `htu`; any other host is refused.
    #[test]
    fn htu_names_the_endpoint_at_the_issuer_or_at_its_mutual_tls_alias() {
        let mut config = Config::new("https://op.example").unwrap();
        let target = Target {
            method: "POST",
            path: "/token",
            access_token: None,
        };
        let claims = |htu: &str| {
            serde_json::from_value::<jose::Claims>(
                serde_json::json!({"htm": "POST", "htu": htu, "iat": 1000}),
            )
            .unwrap()
        };
        let check = |config: &Config, htu: &str| check_claims(&claims(htu), &target, config, 1000);
        assert!(check(&config, "https://op.example/token").is_ok());
        assert!(check(&config, "https://mtls.op.example/token").is_err());
        config.mtls_base_url = Some("https://mtls.op.example".into());
        assert!(check(&config, "https://mtls.op.example/token").is_ok());
        assert!(check(&config, "https://op.example/token").is_ok());
        assert!(check(&config, "https://other.example/token").is_err());
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1's example key and thumbprint.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(
            thumbprint(&serde_json::json!({"kty": "oct", "k": "x"})),
            None
        );
    }
}
