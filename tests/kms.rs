//! The KMS signer against moto's KMS (`CIBA_KMS_ENDPOINT`, started by tests/run), and the
//! envelope signer against it and DynamoDB Local (`CIBA_DYNAMODB_ENDPOINT`). Without those
//! variables the emulator tests skip, or fail when `CIBA_REQUIRE_KMS=1` / `CIBA_REQUIRE_DYNAMODB=1`.
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

use std::process::{Command, Output};

use ciba_shared::config::ConfigError;
use ciba_shared::context::SignerSource;
use ciba_shared::envelope;
use ciba_shared::jose;
use ciba_shared::key_ring::KeyRing;
use ciba_shared::kms::KmsSigner;
use ciba_shared::ports::{LocalSigner, Signer};
use ciba_shared::store::DynamoStore;
use ciba_shared::store::dynamodb::SigningKeyItem;
use ciba_testkit::dynamodb::LocalTable;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
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

// ---- the envelope mode: a local key decrypted once per cold start -----------------------------

async fn create_symmetric_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .key_spec(KeySpec::SymmetricDefault)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .description("ciba test envelope key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("KeyMetadata")
        .key_id
}

/// KMS and a fresh DynamoDB Local table, or `None` (skip) when either emulator is not there.
async fn envelope_setup() -> Option<(String, String, aws_sdk_kms::Client, LocalTable, String)> {
    let kms_endpoint = endpoint()?;
    let dynamodb_endpoint = common::emulator::endpoint("DYNAMODB")?;
    let kms = client(&kms_endpoint).await;
    let table = ciba_testkit::dynamodb::table_from_env().await?;
    let wrapping = create_symmetric_key(&kms).await;
    Some((kms_endpoint, dynamodb_endpoint, kms, table, wrapping))
}

/// The plaintext PKCS#8 DER of a stored envelope key, decrypted here as the test's own check.
async fn decrypt_item(kms: &aws_sdk_kms::Client, item: &SigningKeyItem) -> Vec<u8> {
    kms.decrypt()
        .ciphertext_blob(Blob::new(item.ciphertext.clone()))
        .encryption_context("purpose", envelope::PURPOSE)
        .encryption_context("kid", &item.kid)
        .send()
        .await
        .expect("Decrypt")
        .plaintext
        .expect("Plaintext")
        .into_inner()
}

/// Every text form of the private key that could leak: its DER and scalar in base64, base64url
/// and hex, and its PEM body.
fn leak_forms(der: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::STANDARD;
    let key = p256::SecretKey::from_pkcs8_der(der).expect("PKCS#8 P-256");
    let scalar = key.to_bytes();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    vec![
        STANDARD.encode(der)[..40].to_owned(),
        URL_SAFE_NO_PAD.encode(der)[..40].to_owned(),
        URL_SAFE_NO_PAD.encode(scalar)[..40].to_owned(),
        STANDARD.encode(scalar)[..40].to_owned(),
        hex(&scalar[..])[..40].to_owned(),
        hex(&scalar[..]).to_uppercase()[..40].to_owned(),
    ]
}

fn admin_signing_key(
    kms_endpoint: &str,
    dynamodb_endpoint: &str,
    table: &str,
    key: &str,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciba-admin"))
        .args(["signing-key", "--table", table, "--kms-key-id", key])
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
        .env("AWS_ENDPOINT_URL_KMS", kms_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .output()
        .expect("ciba-admin runs")
}

/// The ring a cold start builds from `SIGNING_KEY_ENVELOPE=<kids>` and `TABLE_NAME`.
async fn envelope_ring(
    kms: &aws_sdk_kms::Client,
    table: &LocalTable,
    kids: &str,
) -> Result<KeyRing, ConfigError> {
    let source = SignerSource::from_vars(|name| match name {
        "SIGNING_KEY_ENVELOPE" => Some(kids.to_owned()),
        "TABLE_NAME" => Some(table.table.clone()),
        _ => None,
    })?;
    let SignerSource::Envelope { kids, table: name } = source else {
        panic!("SIGNING_KEY_ENVELOPE did not choose the envelope mode");
    };
    let store = DynamoStore::new(table.client.clone(), name);
    envelope::load_ring(kms, &store, &kids).await
}

#[tokio::test]
async fn envelope_key_made_by_ciba_admin_signs_id_tokens_that_verify_against_jwks() {
    let Some((kms_endpoint, dynamodb_endpoint, kms, table, wrapping)) = envelope_setup().await
    else {
        return;
    };

    let out = admin_signing_key(&kms_endpoint, &dynamodb_endpoint, &table.table, &wrapping);

    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let kid = stdout.trim_end_matches('\n');
    assert_eq!(kid.len(), 43, "an RFC 7638 SHA-256 thumbprint: {stdout:?}");
    assert!(stderr.contains("EnvelopeSigningKids="), "{stderr}");
    let item = table
        .store
        .get_signing_key(kid)
        .await
        .unwrap()
        .expect("stored");
    let der = decrypt_item(&kms, &item).await;
    for form in leak_forms(&der) {
        assert!(
            !stdout.contains(&form) && !stderr.contains(&form),
            "the private key was shown"
        );
    }
    let scalar = p256::SecretKey::from_pkcs8_der(&der).unwrap().to_bytes();
    assert!(
        !item.ciphertext.windows(32).any(|w| w == &scalar[..]),
        "the private key is stored only encrypted"
    );
    let public: Value = serde_json::from_str(&item.public_jwk).unwrap();
    assert_eq!(public["kid"], kid);
    assert!(public.get("d").is_none());

    let ring = envelope_ring(&kms, &table, kid).await.unwrap();

    assert_eq!(ring.kid(), kid);
    let key_set = jwks::key_set(&ring);
    assert_eq!(key_set, json!({ "keys": [public] }));
    let claims = json!({"iss": "https://op.example.com", "sub": "alice", "aud": "client-1"});
    let token = jose::sign_es256(&ring, "JWT", &claims).await.unwrap();
    assert_eq!(jose::peek_header(&token).unwrap().1.as_deref(), Some(kid));
    assert_eq!(verify_with_key_set(&token, &key_set), Some(claims));
}

#[tokio::test]
async fn envelope_rotation_publishes_both_keys_and_signs_with_the_new_one() {
    let Some((_, _, kms, table, wrapping)) = envelope_setup().await else {
        return;
    };
    let old = envelope::create_key(&kms, &table.store, &wrapping, 1)
        .await
        .unwrap();
    let new = envelope::create_key(&kms, &table.store, &wrapping, 2)
        .await
        .unwrap();
    let claims = json!({"iss": "https://op.example.com", "sub": "alice", "aud": "client-1"});
    let before = envelope_ring(&kms, &table, &old).await.unwrap();
    let old_token = jose::sign_es256(&before, "JWT", &claims).await.unwrap();

    // The rotation: the new kid first, the old one kept in the list.
    let after = envelope_ring(&kms, &table, &format!("{new}, {old}"))
        .await
        .unwrap();

    let key_set = jwks::key_set(&after);
    let kids: Vec<&Value> = key_set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, [&new, &old], "the signing key first");
    let new_token = jose::sign_es256(&after, "JWT", &claims).await.unwrap();
    assert_eq!(
        jose::peek_header(&new_token).unwrap().1.as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        verify_with_key_set(&new_token, &key_set),
        Some(claims.clone())
    );
    assert_eq!(verify_with_key_set(&old_token, &key_set), Some(claims));
    let new_only = envelope_ring(&kms, &table, &new).await.unwrap();
    assert_eq!(
        verify_with_key_set(&old_token, &jwks::key_set(&new_only)),
        None
    );
}

/// An item whose ciphertext is `der` encrypted under `wrapping` with `context`, for `kid` with
/// `public_jwk` (not stored yet).
async fn envelope_item(
    kms: &aws_sdk_kms::Client,
    wrapping: &str,
    der: &[u8],
    context: [(&str, &str); 2],
    kid: &str,
    public_jwk: &Value,
) -> SigningKeyItem {
    let mut request = kms.encrypt().key_id(wrapping).plaintext(Blob::new(der));
    for (name, value) in context {
        request = request.encryption_context(name, value);
    }
    let out = request.send().await.expect("Encrypt");
    SigningKeyItem {
        kid: kid.to_owned(),
        ciphertext: out.ciphertext_blob.expect("CiphertextBlob").into_inner(),
        public_jwk: public_jwk.to_string(),
        kms_key_id: out.key_id.expect("KeyId"),
        created_at: 0,
    }
}

fn pkcs8_der(signer: &LocalSigner) -> Vec<u8> {
    p256::SecretKey::from_pkcs8_pem(&signer.to_pkcs8_pem())
        .unwrap()
        .to_pkcs8_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// Each way an envelope key can fail to load stops the cold start with an error that names the
/// setting and the kid, and shows no key material.
#[tokio::test]
async fn envelope_key_that_cannot_be_loaded_is_a_cold_start_error_naming_the_setting() {
    let Some((_, _, kms, table, wrapping)) = envelope_setup().await else {
        return;
    };
    let signer = LocalSigner::generate();
    let der = pkcs8_der(&signer);
    let other = LocalSigner::generate();
    let purpose = envelope::PURPOSE;
    let mut cases: Vec<(&str, SigningKeyItem)> = Vec::new();

    let item =
        |der: Vec<u8>, context_kid: String, context_purpose: &'static str, signer: &LocalSigner| {
            let kms = kms.clone();
            let wrapping = wrapping.clone();
            let (kid, jwk) = (signer.kid().to_owned(), signer.public_jwk().clone());
            async move {
                envelope_item(
                    &kms,
                    &wrapping,
                    &der,
                    [("purpose", context_purpose), ("kid", context_kid.as_str())],
                    &kid,
                    &jwk,
                )
                .await
            }
        };

    // Encrypted for another kid's item, then stored under its own.
    let wrong_kid = item(der.clone(), other.kid().to_owned(), purpose, &signer).await;
    cases.push(("another kid's encryption context", wrong_kid));

    let third = LocalSigner::generate();
    let wrong_purpose = item(pkcs8_der(&third), third.kid().to_owned(), "backup", &third).await;
    cases.push(("another purpose", wrong_purpose));

    let fourth = LocalSigner::generate();
    let mut tampered = item(
        pkcs8_der(&fourth),
        fourth.kid().to_owned(),
        purpose,
        &fourth,
    )
    .await;
    let last = tampered.ciphertext.len() - 1;
    tampered.ciphertext[last] ^= 1;
    cases.push(("tampered ciphertext", tampered));

    // The right context for `other`'s item, but the ciphertext is this key's.
    let swapped = item(der.clone(), other.kid().to_owned(), purpose, &other).await;
    cases.push(("a ciphertext of another key", swapped));

    let leaks = leak_forms(&der);
    for (case, bad) in cases {
        assert!(
            table.store.create_signing_key(&bad).await.unwrap(),
            "{case}"
        );
        let bad_kid = &bad.kid;
        let ConfigError(text) = envelope_ring(&kms, &table, bad_kid).await.unwrap_err();
        assert!(
            text.starts_with(&format!("SIGNING_KEY_ENVELOPE: key {bad_kid}")),
            "{case}: {text}"
        );
        assert!(
            leaks.iter().all(|l| !text.contains(l)),
            "{case}: key material in {text}"
        );
        eprintln!("{case}: {text}");
    }
    // A kid that is not stored, signing or retired, stops the cold start too.
    let fine = envelope::create_key(&kms, &table.store, &wrapping, 0)
        .await
        .unwrap();
    let missing = URL_SAFE_NO_PAD.encode([8u8; 32]);
    for kids in [missing.clone(), format!("{fine},{missing}")] {
        let ConfigError(text) = envelope_ring(&kms, &table, &kids).await.unwrap_err();
        assert!(
            text.starts_with(&format!(
                "SIGNING_KEY_ENVELOPE: key {missing} is not in table"
            )),
            "{kids}: {text}"
        );
    }
}
