//! Token issuance: the ID token's claims, push-mode token values, hashes only in the store.

use ciba_shared::config::Config;
use ciba_shared::domain::{AccessTokenFormat, DeliveryMode, TokenKind};
use ciba_shared::jose;
use ciba_shared::ports::{LocalSigner, OsRandom, Signer};
use ciba_shared::secret::{self, Secret};
use ciba_shared::tokens::{AT_JWT_TYP, Grant, TokenValues, mint, record_hash};
use ciba_testkit::store_suite::request;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn id_token_carries_the_ciba_claims_and_verifies_with_the_op_key() {
    let mut config = Config::new("https://op.example.com").unwrap();
    config.acr_values_supported = vec!["urn:acr:high".into(), "urn:acr:low".into()];
    let signer = LocalSigner::generate();
    let mut r = request("r1");
    r.decided_at = Some(r.created_at + 7);
    r.acr_values = Some("urn:acr:high urn:acr:low".into());
    let grant = Grant::of_request(&r, AccessTokenFormat::Opaque, &config, r.created_at + 9);
    let minted = mint(
        &grant,
        TokenValues::random(&OsRandom),
        &config,
        &signer,
        r.created_at + 9,
    )
    .await
    .unwrap();
    let keys = jose::single_key_set(signer.public_jwk()).unwrap();
    let v = jose::verify(&minted.response.id_token, &keys, &[Algorithm::ES256]).unwrap();
    let c = v.claims;
    assert_eq!(v.kid.as_deref(), Some(signer.kid()));
    assert_eq!(c["iss"], "https://op.example.com");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "c1");
    assert_eq!(c["auth_time"], r.created_at + 7);
    assert_eq!(c["acr"], "urn:acr:high");
    assert_eq!(c["urn:openid:params:jwt:claim:auth_req_id"], "r1");
    assert_eq!(
        c["at_hash"],
        secret::left_half_hash(&minted.response.access_token)
    );
    assert_eq!(
        c["urn:openid:params:jwt:claim:rt_hash"],
        secret::left_half_hash(&minted.response.refresh_token)
    );
}

#[test]
fn derived_token_values_repeat_per_request_and_differ_between_requests() {
    let key = Secret::new("k".repeat(32));
    let a = TokenValues::derived(&key, "r1");
    let again = TokenValues::derived(&key, "r1");
    let b = TokenValues::derived(&key, "r2");
    assert_eq!(a.access.expose(), again.access.expose());
    assert_eq!(a.refresh.expose(), again.refresh.expose());
    assert_ne!(a.access.expose(), b.access.expose());
    assert_ne!(a.access.expose(), a.refresh.expose());
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let config = Config::new("https://op.example.com").unwrap();
    let r = request("r1");
    let minted = mint(
        &Grant::of_request(&r, AccessTokenFormat::Opaque, &config, r.created_at),
        TokenValues::random(&OsRandom),
        &config,
        &LocalSigner::generate(),
        r.created_at,
    )
    .await
    .unwrap();
    let stored = serde_json::to_string(&minted.records).unwrap();
    assert!(!stored.contains(&minted.response.access_token));
    assert!(!stored.contains(&minted.response.refresh_token));
    assert_eq!(
        minted.records[0].hash,
        secret::hash(&minted.response.access_token)
    );
}

#[tokio::test]
async fn a_jwt_access_token_is_an_rfc_9068_token_a_library_verifies_with_the_published_keys() {
    let mut config = Config::new("https://op.example.com").unwrap();
    config.acr_values_supported = vec!["urn:acr:high".into(), "urn:acr:low".into()];
    let signer = LocalSigner::generate();
    let mut r = request("r1");
    r.decided_at = Some(r.created_at + 7);
    r.acr_values = Some("urn:acr:high".into());
    let now = r.created_at + 9;
    let grant = Grant::of_request(&r, AccessTokenFormat::Jwt, &config, now);
    let minted = mint(
        &grant,
        TokenValues::random(&OsRandom),
        &config,
        &signer,
        now,
    )
    .await
    .unwrap();
    let token = &minted.response.access_token;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(AT_JWT_TYP));
    assert_eq!(header.kid.as_deref(), Some(signer.kid()));
    // What an API does: pick the key by kid from /jwks, check signature, exp, iss and aud.
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(serde_json::json!({"keys": signer.published_jwks()})).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(signer.kid()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_issuer(&["https://op.example.com"]);
    validation.set_audience(&["https://op.example.com"]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "c1");
    assert_eq!(claims["scope"], r.scope);
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + config.access_token_ttl);
    assert_eq!(claims["auth_time"], r.created_at + 7);
    assert_eq!(claims["acr"], "urn:acr:high");
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(minted.records[0].kind, TokenKind::Access);
    assert_eq!(
        minted.records[0].hash,
        record_hash(jti, AccessTokenFormat::Jwt)
    );
    assert_ne!(
        minted.records[0].hash,
        secret::hash(jti),
        "apart from opaque values"
    );
    assert_eq!(minted.records[0].expires_at, now + config.access_token_ttl);
}

#[tokio::test]
async fn no_token_outlives_its_family() {
    let mut config = Config::new("https://op.example.com").unwrap();
    config.refresh_family_lifetime = 100;
    let r = request("r1");
    let grant = Grant::of_request(&r, AccessTokenFormat::Opaque, &config, r.created_at);
    let later = r.created_at + 90;
    let refreshed = Grant {
        issued_at: later,
        ..grant
    };
    let minted = mint(
        &refreshed,
        TokenValues::random(&OsRandom),
        &config,
        &LocalSigner::generate(),
        later,
    )
    .await
    .unwrap();
    assert!(
        minted
            .records
            .iter()
            .all(|t| t.expires_at == r.created_at + 100)
    );
    assert_eq!(minted.response.expires_in, 10);
    assert_eq!(minted.family.expires_at, r.created_at + 100);
}

#[tokio::test]
async fn push_tokens_count_as_issued_at_the_decision_so_every_attempt_stores_the_same() {
    let config = Config::new("https://op.example.com").unwrap();
    let mut r = request("r1");
    r.delivery_mode = DeliveryMode::Push;
    r.decided_at = Some(r.created_at + 5);
    let key = Secret::new("k".repeat(32));
    let signer = LocalSigner::generate();
    let at = |now| {
        let grant = Grant::of_request(&r, AccessTokenFormat::Jwt, &config, now);
        let values = TokenValues::derived(&key, "r1");
        let signer = &signer;
        let config = &config;
        async move { mint(&grant, values, config, signer, now).await.unwrap() }
    };
    let first = at(r.created_at + 6).await;
    let retry = at(r.created_at + 600).await;
    assert_eq!(first.records, retry.records);
    assert_eq!(first.family, retry.family);
}
