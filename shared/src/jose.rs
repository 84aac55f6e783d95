//! JWS verification against a registered JWK Set (request objects, client assertions, device
//! decisions, `id_token_hint`) and compact JWS signing with the OP's signer.
//!
//! Only asymmetric algorithms are accepted. Keys are only ever taken from the set registered for
//! the sender: the `jku`, `x5u` and `jwk` headers are ignored, so a token cannot bring its own key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::ports::{Signer, SignerError};

pub type Claims = Map<String, Value>;

#[derive(Debug, PartialEq, Eq)]
pub enum JwsError {
    /// Not three base64url parts with a JSON header and payload.
    Malformed,
    /// `alg` missing, `none`, symmetric, or not one this use allows.
    AlgorithmNotAllowed,
    /// No registered key fits the header (`kid`, key type, `use`).
    NoMatchingKey,
    BadSignature,
    /// A `crit` header: it names extensions that must be understood, and this OP understands
    /// none (RFC 7515 §4.1.11).
    CriticalHeader,
    /// The header or the claims repeat a member name (RFC 7515 §5.2, RFC 7493 §2.3).
    RepeatedMember,
}

impl JwsError {
    pub fn describe(&self) -> &'static str {
        match self {
            JwsError::Malformed => "the JWT is malformed",
            JwsError::AlgorithmNotAllowed => "the JWT's signing algorithm is not allowed",
            JwsError::NoMatchingKey => "no registered key matches the JWT",
            JwsError::BadSignature => "the JWT's signature does not verify",
            JwsError::CriticalHeader => {
                "the JWT's crit header names extensions this OP does not understand"
            }
            JwsError::RepeatedMember => "the JWT's header or claims repeat a member name",
        }
    }
}

/// A JWT whose signature verified; its claims are not yet checked.
#[derive(Debug)]
pub struct Verified {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub claims: Claims,
}

/// The `alg` and `kid` of a compact JWS, read without verifying it.
pub fn peek_header(token: &str) -> Result<(Algorithm, Option<String>), JwsError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => JwsError::AlgorithmNotAllowed,
        _ => {
            if header_alg_is_unsupported(token) {
                JwsError::AlgorithmNotAllowed
            } else {
                JwsError::Malformed
            }
        }
    })?;
    if header_has_crit(token) {
        return Err(JwsError::CriticalHeader);
    }
    Ok((header.alg, header.kid))
}

/// Whether the protected header has a `crit` member (which jsonwebtoken does not read).
fn header_has_crit(token: &str) -> bool {
    token
        .split('.')
        .next()
        .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
        .and_then(|bytes| serde_json::from_slice::<Claims>(&bytes).ok())
        .is_some_and(|h| h.contains_key("crit"))
}

/// A string claim of a compact JWS, read without verifying it: only to start a read early,
/// never to decide anything (the verified claims decide).
pub fn peek_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims = serde_json::from_slice::<Claims>(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

/// `alg: none` and unknown algorithms fail header parsing in jsonwebtoken; tell them apart from
/// garbage so the error says what is wrong.
fn header_alg_is_unsupported(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Claims>(&bytes).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

fn key_fits(jwk: &Jwk, alg: Algorithm, kid: Option<&str>) -> bool {
    // A header `kid` selects among keys that have one; a key without `kid` may match any.
    if let (Some(wanted), Some(have)) = (kid, jwk.common.key_id.as_deref())
        && wanted != have
    {
        return false;
    }
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return false;
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg.to_string() != format!("{alg:?}")
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::RSA(_), Algorithm::PS256 | Algorithm::RS256) => true,
        _ => false,
    }
}

/// Verifies `token` with a key of `keys` under one of the `allowed` algorithms.
pub fn verify(token: &str, keys: &JwkSet, allowed: &[Algorithm]) -> Result<Verified, JwsError> {
    let (alg, kid) = peek_header(token)?;
    // serde_json keeps the last of repeated members, another parser the first: refused.
    let repeats = token.split('.').take(2).any(|part| {
        URL_SAFE_NO_PAD
            .decode(part)
            .is_ok_and(|bytes| crate::ijson::repeated_member(&bytes).is_some())
    });
    if repeats {
        return Err(JwsError::RepeatedMember);
    }
    if !allowed.contains(&alg) {
        return Err(JwsError::AlgorithmNotAllowed);
    }
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();

    let mut candidates = keys
        .keys
        .iter()
        .filter(|k| key_fits(k, alg, kid.as_deref()))
        .peekable();
    if candidates.peek().is_none() {
        return Err(JwsError::NoMatchingKey);
    }
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => {
                return Ok(Verified {
                    kid,
                    alg,
                    claims: data.claims,
                });
            }
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_) => continue,
                _ => return Err(JwsError::Malformed),
            },
        }
    }
    Err(JwsError::BadSignature)
}

/// A JWK Set holding one JWK given as JSON (a device key, the OP's own key). Its `kid` is
/// dropped: with one key there is nothing to select, and a device's JWS names the device in `kid`.
pub fn single_key_set(jwk: &Value) -> Option<JwkSet> {
    let mut jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    jwk.common.key_id = None;
    Some(JwkSet { keys: vec![jwk] })
}

/// Signs `claims` as a compact ES256 JWS with the OP's key, `kid` in the header.
pub async fn sign_es256(
    signer: &dyn Signer,
    typ: &str,
    claims: &Value,
) -> Result<String, SignerError> {
    let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": signer.kid()});
    let mut out = String::with_capacity(512);
    URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut out);
    let signature = signer.sign(out.as_bytes()).await?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut out);
    Ok(out)
}

/// Signs `claims` as a compact ES256 JWS with a P-256 key held here (device and RP tooling,
/// tests); `header` must carry `alg: ES256` and whatever `kid` the verifier looks up.
pub fn sign_with_key(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer as _;
    let mut out = String::with_capacity(512);
    URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut out);
    let signature: p256::ecdsa::Signature = key.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut out);
    out
}

/// Checks a device's public key: an EC JWK on P-256 whose `x`, `y` are a point on the curve, with
/// no private part. Answers the bare public JWK (`kty`, `crv`, `x`, `y`) to store.
pub fn p256_public_jwk(jwk: &Value) -> Result<Value, &'static str> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if !jwk.is_object() {
        return Err("public_key must be a JWK object");
    }
    if jwk.get("d").is_some() {
        return Err("public_key must not contain the private key");
    }
    if field("kty") != Some("EC") || field("crv") != Some("P-256") {
        return Err("public_key must be an EC key on P-256");
    }
    let coordinate = |name: &str| {
        field(name)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|bytes| bytes.len() == 32)
    };
    let (Some(x), Some(y)) = (coordinate("x"), coordinate("y")) else {
        return Err("public_key x and y must be 32-byte base64url coordinates");
    };
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| "public_key is not a point on P-256")?;
    Ok(serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": field("x"), "y": field("y")
    }))
}

/// `aud` as a string or an array of strings (RFC 7519 §4.1.3).
pub fn audiences(claims: &Claims) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A NumericDate claim (whole or fractional seconds), `None` when absent or not a number.
pub fn numeric_date(claims: &Claims, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LocalSigner;

    fn keyset(signer: &LocalSigner) -> JwkSet {
        single_key_set(signer.public_jwk()).unwrap()
    }

    #[tokio::test]
    async fn own_signature_verifies() {
        let signer = LocalSigner::generate();
        let jwt = sign_es256(&signer, "JWT", &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        let v = verify(&jwt, &keyset(&signer), &[Algorithm::ES256]).unwrap();
        assert_eq!(v.claims["a"], 1);
        assert_eq!(v.kid.as_deref(), Some(signer.kid()));
    }

    #[tokio::test]
    async fn signature_by_another_key_is_refused() {
        let signer = LocalSigner::generate();
        let other = LocalSigner::generate();
        let jwt = sign_es256(&signer, "JWT", &serde_json::json!({}))
            .await
            .unwrap();
        let mut set = keyset(&other);
        set.keys[0].common.key_id = Some(signer.kid().into());
        assert_eq!(
            verify(&jwt, &set, &[Algorithm::ES256]).unwrap_err(),
            JwsError::BadSignature
        );
    }

    #[tokio::test]
    async fn unknown_kid_has_no_matching_key() {
        let signer = LocalSigner::generate();
        let jwt = sign_es256(&signer, "JWT", &serde_json::json!({}))
            .await
            .unwrap();
        let other = LocalSigner::generate();
        let with_kid: JwkSet =
            serde_json::from_value(serde_json::json!({"keys": [other.public_jwk()]})).unwrap();
        assert_eq!(
            verify(&jwt, &with_kid, &[Algorithm::ES256]).unwrap_err(),
            JwsError::NoMatchingKey
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
        let token = format!("{header}.{payload}.");
        let signer = LocalSigner::generate();
        assert_eq!(
            verify(&token, &keyset(&signer), &[Algorithm::ES256]).unwrap_err(),
            JwsError::AlgorithmNotAllowed
        );
    }

    #[test]
    fn hmac_is_refused() {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "x"}),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        let signer = LocalSigner::generate();
        assert_eq!(
            verify(
                &token,
                &keyset(&signer),
                &[Algorithm::ES256, Algorithm::PS256]
            )
            .unwrap_err(),
            JwsError::AlgorithmNotAllowed
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let signer = LocalSigner::generate();
        assert_eq!(
            verify("a.b.c", &keyset(&signer), &[Algorithm::ES256]).unwrap_err(),
            JwsError::Malformed
        );
    }

    #[test]
    fn device_key_on_the_curve_is_accepted_without_extras() {
        let signer = LocalSigner::generate();
        let jwk = p256_public_jwk(signer.public_jwk()).unwrap();
        assert_eq!(jwk["x"], signer.public_jwk()["x"]);
        assert!(jwk.get("kid").is_none());
    }

    #[test]
    fn device_key_off_the_curve_is_refused() {
        let mut jwk = LocalSigner::generate().public_jwk().clone();
        jwk["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        assert_eq!(
            p256_public_jwk(&jwk),
            Err("public_key is not a point on P-256")
        );
    }

    #[test]
    fn device_key_with_private_part_or_wrong_curve_is_refused() {
        let mut jwk = LocalSigner::generate().public_jwk().clone();
        jwk["d"] = "secret".into();
        assert!(p256_public_jwk(&jwk).is_err());
        let mut jwk = LocalSigner::generate().public_jwk().clone();
        jwk["crv"] = "P-384".into();
        assert!(p256_public_jwk(&jwk).is_err());
        assert!(p256_public_jwk(&serde_json::json!("EC")).is_err());
    }

    #[test]
    fn aud_may_be_string_or_array() {
        let c: Claims = serde_json::from_value(serde_json::json!({"aud": ["a", "b"]})).unwrap();
        assert_eq!(audiences(&c), ["a", "b"]);
        let c: Claims = serde_json::from_value(serde_json::json!({"aud": "a"})).unwrap();
        assert_eq!(audiences(&c), ["a"]);
    }
}
