//! Token issuance: the ID token's claims, push-mode token values, hashes only in the store.

use ciba_shared::config::Config;
use ciba_shared::jose;
use ciba_shared::ports::{LocalSigner, OsRandom, Signer};
use ciba_shared::secret::{self, Secret};
use ciba_shared::tokens::{Grant, TokenValues, mint};
use ciba_testkit::store_suite::request;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn id_token_carries_the_ciba_claims_and_verifies_with_the_op_key() {
    let config = Config::new("https://op.example.com").unwrap();
    let signer = LocalSigner::generate();
    let mut r = request("r1");
    r.decided_at = Some(r.created_at + 7);
    r.acr_values = Some("urn:acr:high urn:acr:low".into());
    let grant = Grant::of_request(&r, r.created_at + 9);
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
        &Grant::of_request(&r, r.created_at),
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
