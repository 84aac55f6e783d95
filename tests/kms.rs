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
use ciba_shared::jose;
use ciba_shared::kms::KmsSigner;
use ciba_shared::ports::Signer;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
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
