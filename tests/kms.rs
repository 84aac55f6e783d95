//! The KMS signer against moto's KMS (`CIBA_KMS_ENDPOINT`, started by tests/run). Without that
//! variable the emulator tests skip, or fail when `CIBA_REQUIRE_KMS=1`.
//!
//! moto (up to at least 5.2.5) ignores `MessageType=DIGEST` and hashes the digest again, so a
//! digest signature from moto verifies over SHA-256(digest) rather than the signing input. Each
//! test that needs a verifiable JWS probes the emulator first and, where it hashes again, signs
//! through [`KmsSigner::with_raw_messages`]; the digest path itself is checked by
//! `kms_signs_the_sha256_digest_of_the_signing_input`, against either behaviour.

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use ciba_shared::jose;
use ciba_shared::key_ring::KeyRing;
use ciba_shared::kms::KmsSigner;
use ciba_shared::ports::Signer;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use p256::pkcs8::DecodePublicKey;
use serde_json::{Value, json};

/// SHA-256 of `text` (`secret::hash` is its base64url).
fn sha256(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(ciba_shared::secret::hash(text))
        .expect("base64url")
}

fn endpoint() -> Option<String> {
    common::emulator::endpoint("KMS")
}

async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&common::emulator::config(endpoint).await)
}

async fn create_key(client: &aws_sdk_kms::Client, spec: KeySpec) -> String {
    client
        .create_key()
        .key_spec(spec)
        .key_usage(KeyUsageType::SignVerify)
        .description("ciba test signing key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("KeyMetadata")
        .key_id
}

/// The key's public half straight from `GetPublicKey`, independent of `KmsSigner`.
async fn kms_public_key(client: &aws_sdk_kms::Client, key_id: &str) -> p256::PublicKey {
    let out = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .expect("GetPublicKey");
    p256::PublicKey::from_public_key_der(out.public_key().expect("PublicKey").as_ref())
        .expect("a P-256 SubjectPublicKeyInfo")
}

/// Whether the emulator signs a `DIGEST` message as the digest (as AWS does) or hashes it again
/// (moto ≤ 5.2.5). Panics if the signature fits neither.
async fn honours_digest(client: &aws_sdk_kms::Client, key_id: &str) -> bool {
    let digest = sha256("probe");
    let der = client
        .sign()
        .key_id(key_id)
        .message(Blob::new(digest.clone()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .expect("Sign")
        .signature
        .expect("Signature");
    let signature = Signature::from_der(der.as_ref()).expect("a DER ECDSA signature");
    let public = VerifyingKey::from(kms_public_key(client, key_id).await);
    if public.verify_prehash(&digest, &signature).is_ok() {
        return true;
    }
    public
        .verify(&digest[..], &signature)
        .expect("a DIGEST signature verifies over the digest or over its SHA-256");
    false
}

/// A `KmsSigner` for a fresh P-256 key whose signatures verify over the signing input on this
/// emulator: digests where it honours `DIGEST`, else raw messages.
async fn signer(client: &aws_sdk_kms::Client) -> (String, KmsSigner) {
    let key_id = create_key(client, KeySpec::EccNistP256).await;
    let signer = KmsSigner::new(client.clone(), &key_id)
        .await
        .expect("KmsSigner::new");
    if honours_digest(client, &key_id).await {
        (key_id, signer)
    } else {
        eprintln!("the emulator hashes DIGEST messages again: signing raw messages");
        (key_id, signer.with_raw_messages())
    }
}

fn verifying_key(jwk: &Value) -> VerifyingKey {
    let bare = json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]});
    VerifyingKey::from(p256::PublicKey::from_jwk_str(&bare.to_string()).expect("a P-256 JWK"))
}

/// The signing input and the 64-byte r‖s signature of a compact JWS.
fn split_jws(token: &str) -> (&str, Signature) {
    let (input, signature) = token.rsplit_once('.').expect("a compact JWS");
    let bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    assert_eq!(bytes.len(), 64, "ES256 signatures are r‖s, not DER");
    (input, Signature::from_slice(&bytes).expect("r‖s"))
}

/// The ring `KMS_KEY_ID=<key_ids>` makes at cold start, signing verifiably on this emulator (see
/// [`signer`]).
async fn ring(client: &aws_sdk_kms::Client, key_ids: &[&str]) -> KeyRing {
    let (signer, retired) = KmsSigner::load_ring(client.clone(), key_ids)
        .await
        .expect("KmsSigner::load_ring");
    let signer = if honours_digest(client, key_ids[0]).await {
        signer
    } else {
        signer.with_raw_messages()
    };
    KeyRing::new(Arc::new(signer), retired)
}

/// The claims of `token` verified as an RP verifies an ID token: with `jsonwebtoken`, by the key
/// of the JWK Set that its header's `kid` names; `None` when the set has no such key.
fn verify_with_key_set(token: &str, key_set: &Value) -> Option<Value> {
    let set: JwkSet = serde_json::from_value(key_set.clone()).expect("a JWK Set");
    let kid = jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid");
    let key = DecodingKey::from_jwk(set.find(&kid)?).expect("an EC JWK");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("verifies");
    Some(verified.claims)
}

#[tokio::test]
async fn token_signed_by_the_previous_key_still_verifies_against_jwks_after_rotation() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let old_key = create_key(&client, KeySpec::EccNistP256).await;
    let new_key = create_key(&client, KeySpec::EccNistP256).await;
    let claims = json!({"iss": "https://op.example.com", "sub": "alice", "aud": "client-1"});
    let before = ring(&client, &[&old_key]).await;
    let old_token = jose::sign_es256(&before, "JWT", &claims).await.unwrap();

    // The rotation: the new key first, the old one kept in the list.
    let after = ring(&client, &[&new_key, &old_key]).await;
    let key_set = jwks::key_set(&after);
    let new_token = jose::sign_es256(&after, "JWT", &claims).await.unwrap();

    let kids: Vec<&Value> = key_set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, [after.kid(), before.kid()], "the signing key first");
    assert_ne!(after.kid(), before.kid());
    assert_eq!(
        verify_with_key_set(&old_token, &key_set),
        Some(claims.clone())
    );
    assert_eq!(
        jose::peek_header(&new_token).unwrap().1.as_deref(),
        Some(after.kid()),
        "new tokens name the new key"
    );
    assert_eq!(verify_with_key_set(&new_token, &key_set), Some(claims));
    // Without the old key in the list, its tokens would no longer verify.
    let new_only = ring(&client, &[&new_key]).await;
    assert_eq!(
        verify_with_key_set(&old_token, &jwks::key_set(&new_only)),
        None
    );
}

#[tokio::test]
async fn retired_kms_key_is_checked_like_the_signing_key() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let signing = create_key(&client, KeySpec::EccNistP256).await;
    let retired = create_key(&client, KeySpec::Rsa2048).await;

    let err = KmsSigner::load_ring(client, &[&signing, &retired])
        .await
        .unwrap_err();

    assert!(err.0.contains(&retired), "{}", err.0);
    assert!(err.0.contains("RSA_2048"), "{}", err.0);
}

#[tokio::test]
async fn kms_public_key_becomes_the_published_jwk() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let key_id = create_key(&client, KeySpec::EccNistP256).await;

    let signer = KmsSigner::new(client.clone(), &key_id).await.unwrap();

    let jwk = signer.public_jwk();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "ES256");
    assert!(jwk.get("d").is_none(), "never a private part");
    assert_eq!(jwk["kid"], signer.kid());
    let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    assert_eq!(
        signer.kid(),
        parsed.thumbprint(ThumbprintHash::SHA256).unwrap(),
        "kid is the RFC 7638 thumbprint"
    );
    assert_eq!(
        p256::PublicKey::from(verifying_key(jwk)),
        kms_public_key(&client, &key_id).await,
        "the JWK is the KMS key's public half"
    );
    assert_eq!(signer.key_id(), key_id);
    assert_eq!(jwks::key_set(&signer), json!({ "keys": [jwk] }));
}

#[tokio::test]
async fn id_token_signed_through_kms_verifies_with_the_published_key() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let (_, signer) = signer(&client).await;
    let claims = json!({
        "iss": "https://op.example.com",
        "sub": "alice",
        "aud": "client-1",
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
        "auth_req_id": "not-really",
    });

    let token = jose::sign_es256(&signer, "JWT", &claims).await.unwrap();

    let (alg, kid) = jose::peek_header(&token).unwrap();
    assert_eq!(alg, Algorithm::ES256);
    assert_eq!(kid.as_deref(), Some(signer.kid()));
    let keys = jose::single_key_set(signer.public_jwk()).unwrap();
    let verified = jose::verify(&token, &keys, &[Algorithm::ES256]).unwrap();
    assert_eq!(Value::Object(verified.claims), claims);

    let (input, signature) = split_jws(&token);
    let public = verifying_key(signer.public_jwk());
    public.verify(input.as_bytes(), &signature).unwrap();
    assert!(!bool::from(signature.s().is_high()), "low-S");

    // A tampered payload does not verify.
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory"}).to_string());
    parts[1] = &other;
    assert_eq!(
        jose::verify(&parts.join("."), &keys, &[Algorithm::ES256]).unwrap_err(),
        jose::JwsError::BadSignature
    );
}

#[tokio::test]
async fn kms_signs_the_sha256_digest_of_the_signing_input() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let key_id = create_key(&client, KeySpec::EccNistP256).await;
    // The deployed configuration: digests, whatever the emulator does with them.
    let signer = KmsSigner::new(client.clone(), &key_id).await.unwrap();
    let honours = honours_digest(&client, &key_id).await;
    let public = verifying_key(signer.public_jwk());

    // ECDSA signatures from KMS (and moto) are high-S about half the time: enough rounds that
    // normalisation is exercised.
    for i in 0..16 {
        let input = format!("eyJhbGciOiJFUzI1NiJ9.{i}");
        let signature = Signature::from_slice(&signer.sign(input.as_bytes()).await.unwrap())
            .expect("64-byte r‖s");
        assert!(!bool::from(signature.s().is_high()), "low-S");
        if honours {
            public.verify(input.as_bytes(), &signature).unwrap();
        } else {
            // moto signed SHA-256(the digest we sent): that digest was SHA-256(input).
            let digest = sha256(&input);
            public.verify(&digest[..], &signature).unwrap();
        }
    }
}

#[tokio::test]
async fn raw_mode_falls_back_to_digests_for_long_inputs() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let key_id = create_key(&client, KeySpec::EccNistP256).await;
    let signer = KmsSigner::new(client.clone(), &key_id)
        .await
        .unwrap()
        .with_raw_messages();
    let public = verifying_key(signer.public_jwk());
    let honours = honours_digest(&client, &key_id).await;

    // Over KMS's 4096-byte RAW limit: sent as a digest, not refused.
    let input = "a".repeat(5000);
    let signature = Signature::from_slice(&signer.sign(input.as_bytes()).await.unwrap()).unwrap();
    let digest = sha256(&input);
    if honours {
        public.verify(input.as_bytes(), &signature).unwrap();
    } else {
        public.verify(&digest[..], &signature).unwrap();
    }
}

#[tokio::test]
async fn rsa_kms_key_is_refused() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let key_id = create_key(&client, KeySpec::Rsa2048).await;

    let err = KmsSigner::new(client, &key_id).await.unwrap_err();

    assert!(err.0.contains("RSA_2048"), "{}", err.0);
    assert!(err.0.contains("ECC_NIST_P256"), "{}", err.0);
}

#[tokio::test]
async fn p384_kms_key_is_refused() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;
    let key_id = create_key(&client, KeySpec::EccNistP384).await;

    let err = KmsSigner::new(client, &key_id).await.unwrap_err();

    assert!(err.0.contains("ECC_NIST_P384"), "{}", err.0);
}

#[tokio::test]
async fn unknown_kms_key_is_an_error_that_is_not_retryable() {
    let Some(endpoint) = endpoint() else { return };
    let client = client(&endpoint).await;

    let err = KmsSigner::new(client, "11111111-2222-3333-4444-555555555555")
        .await
        .unwrap_err();

    assert!(err.0.starts_with("KMS GetPublicKey: "), "{}", err.0);
    assert!(err.0.contains("NotFoundException"), "{}", err.0);
    assert!(!err.0.contains("retryable"), "{}", err.0);
}

#[tokio::test]
async fn unreachable_kms_is_an_error() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let client = client(&format!("http://127.0.0.1:{port}")).await;

    let err = KmsSigner::new(client, "alias/ciba-signing")
        .await
        .unwrap_err();

    assert!(err.0.starts_with("KMS GetPublicKey: "), "{}", err.0);
    assert!(err.0.contains("(retryable)"), "{}", err.0);
}
