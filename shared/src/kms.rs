//! The OP's signing key in AWS KMS: an asymmetric `ECC_NIST_P256` / `SIGN_VERIFY` key whose
//! private half never leaves KMS.
//!
//! The public key is read once (`GetPublicKey`, at cold start) and published as the same JWK and
//! RFC 7638 `kid` as a [`LocalSigner`](crate::ports::LocalSigner) would, so `/jwks`, ID token
//! headers and verifiers agree. Each signature is one `Sign` call over the SHA-256 digest of the
//! signing input; KMS answers DER, which becomes the 64-byte low-S `r‖s` form of JWS ES256.
//!
//! Error texts name the KMS operation, the error code and the service's (shortened) message,
//! never key material. Throttling, server-side errors, timeouts and connection failures are
//! marked `(retryable)`; a handler answers every signer error with 503 anyway.

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use p256::ecdsa::Signature;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::aws_error::{chain, is_transient};
use crate::ports::{Signer, SignerError, public_jwk_with_kid};

/// An ES256 signer whose private key is a KMS key.
#[derive(Clone, Debug)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
    jwk: serde_json::Value,
    raw_messages: bool,
}

/// The largest message KMS accepts with `MessageType::RAW`.
const RAW_MESSAGE_MAX: usize = 4096;

impl KmsSigner {
    /// Reads the public key of `key_id` (key id, key ARN, alias name or alias ARN) and checks
    /// that it is a P-256 signing key. One `GetPublicKey` call; meant for cold start.
    pub async fn new(
        client: aws_sdk_kms::Client,
        key_id: impl Into<String>,
    ) -> Result<Self, SignerError> {
        let key_id = key_id.into();
        let (kid, jwk) = public_jwk(&client, &key_id).await?;
        tracing::info!(key_id = %key_id, kid = %kid, "KMS signing key loaded");
        Ok(Self {
            client,
            key_id,
            kid,
            jwk,
            raw_messages: false,
        })
    }

    /// The signer of the first of `key_ids` and the public JWKs of the others (the keys it
    /// replaced, published so that tokens they signed still verify), each checked as
    /// [`KmsSigner::new`] checks the signing key. The `GetPublicKey` calls run concurrently,
    /// so a cold start waits for one round trip however many keys are listed.
    pub async fn load_ring(
        client: aws_sdk_kms::Client,
        key_ids: &[&str],
    ) -> Result<(Self, Vec<serde_json::Value>), SignerError> {
        let Some((active, retired)) = key_ids.split_first() else {
            return Err(SignerError("no KMS key id".into()));
        };
        let retired = retired.iter().map(|key_id| {
            let client = &client;
            async move {
                let (kid, jwk) = public_jwk(client, key_id).await?;
                tracing::info!(key_id = %key_id, kid = %kid, "KMS retired key loaded (published, not signing)");
                Ok::<_, SignerError>(jwk)
            }
        });
        futures_util::future::try_join(
            Self::new(client.clone(), *active),
            futures_util::future::try_join_all(retired),
        )
        .await
    }

    /// Sends signing inputs of at most 4096 bytes as they are (`MessageType::RAW`, KMS hashes
    /// them) instead of their SHA-256 digest; longer ones still go as a digest. On AWS both
    /// modes sign the same thing. Only for emulators that ignore `MessageType::DIGEST` and hash the digest again
    /// (moto up to at least 5.2.5); the deployed signer sends digests.
    pub fn with_raw_messages(mut self) -> Self {
        self.raw_messages = true;
        self
    }

    /// The KMS key as configured (`KMS_KEY_ID`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

#[async_trait]
impl Signer for KmsSigner {
    fn kid(&self) -> &str {
        &self.kid
    }

    fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    async fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignerError> {
        let request = self
            .client
            .sign()
            .key_id(&self.key_id)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256);
        let request = if self.raw_messages && !input.is_empty() && input.len() <= RAW_MESSAGE_MAX {
            request
                .message(Blob::new(input))
                .message_type(MessageType::Raw)
        } else {
            request
                .message(Blob::new(Sha256::digest(input).to_vec()))
                .message_type(MessageType::Digest)
        };
        let out = request.send().await.map_err(|e| sdk_error("Sign", &e))?;
        let der = out
            .signature()
            .ok_or_else(|| SignerError("KMS Sign answered no signature".into()))?;
        der_to_jws(der.as_ref())
    }
}

/// The kid and public JWK of the KMS key `key_id`, refused unless it is an `ECC_NIST_P256`,
/// `SIGN_VERIFY` key that allows `ECDSA_SHA_256`.
async fn public_jwk(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<(String, serde_json::Value), SignerError> {
    let out = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| sdk_error("GetPublicKey", &e))?;
    // `KeySpec`, or the deprecated `CustomerMasterKeySpec` that AWS still sends beside it
    // (and emulators such as moto send alone).
    #[allow(deprecated)]
    let spec = out.key_spec().map(KeySpec::as_str).or_else(|| {
        out.customer_master_key_spec()
            .map(aws_sdk_kms::types::CustomerMasterKeySpec::as_str)
    });
    if spec != Some(KeySpec::EccNistP256.as_str()) {
        return Err(SignerError(format!(
            "KMS key {key_id} has key spec {}, not ECC_NIST_P256",
            spec.unwrap_or("(none)")
        )));
    }
    if out.key_usage() != Some(&KeyUsageType::SignVerify) {
        return Err(SignerError(format!(
            "KMS key {key_id} has key usage {}, not SIGN_VERIFY",
            out.key_usage().map_or("(none)", KeyUsageType::as_str)
        )));
    }
    if !out.signing_algorithms().is_empty()
        && !out
            .signing_algorithms()
            .contains(&SigningAlgorithmSpec::EcdsaSha256)
    {
        return Err(SignerError(format!(
            "KMS key {key_id} does not allow ECDSA_SHA_256"
        )));
    }
    let der = out.public_key().ok_or_else(|| {
        SignerError(format!(
            "KMS GetPublicKey for {key_id} answered no public key"
        ))
    })?;
    let public = p256::PublicKey::from_public_key_der(der.as_ref()).map_err(|_| {
        SignerError(format!(
            "KMS key {key_id}: the public key is not a P-256 SubjectPublicKeyInfo"
        ))
    })?;
    Ok(public_jwk_with_kid(&public))
}

/// An ECDSA P-256 signature in DER (as KMS answers it) as the 64-byte `r‖s` of JWS ES256, with
/// `s` normalised to the lower half of the group order.
pub fn der_to_jws(der: &[u8]) -> Result<[u8; 64], SignerError> {
    let signature = Signature::from_der(der)
        .map_err(|_| SignerError("KMS Sign answered a malformed DER ECDSA signature".into()))?;
    let signature = signature.normalize_s().unwrap_or(signature);
    Ok(signature.to_bytes().into())
}

/// KMS's own throttling and server-side codes (besides those every AWS service shares).
const TRANSIENT_CODES: &[&str] = &[
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
];

/// KMS errors as `SignerError` text: throttling, 5xx, timeouts and connection failures carry
/// `(retryable)`.
pub(crate) fn sdk_error<E>(op: &str, err: &SdkError<E>) -> SignerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mark = if is_transient(err, TRANSIENT_CODES) {
        " (retryable)"
    } else {
        ""
    };
    let text = match err {
        SdkError::TimeoutError(_) => format!("KMS {op}: timeout{mark}"),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            format!("KMS {op}: unavailable{mark}: {}", chain(err))
        }
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("unknown");
            let message = e.err().message().unwrap_or("");
            format!("KMS {op}: {code}{mark}: {message}")
        }
        _ => format!("KMS {op}: {}", chain(err)),
    };
    SignerError(short(&text))
}

/// At most 300 characters.
fn short(text: &str) -> String {
    let text = text.trim_end_matches([' ', ':']);
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::sign::SignError;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{SigningKey, VerifyingKey};
    use p256::elliptic_curve::rand_core::OsRng;
    use p256::elliptic_curve::scalar::IsHigh;

    /// A signature made here, low-S (p256 0.13 itself signs high-S about half the time).
    fn local_signature(key: &SigningKey, msg: &[u8]) -> Signature {
        use p256::ecdsa::signature::Signer as _;
        let sig: Signature = key.sign(msg);
        sig.normalize_s().unwrap_or(sig)
    }

    /// The same signature with `s` replaced by `n - s` (equally valid ECDSA, high-S).
    fn high_s(sig: &Signature) -> Signature {
        let (r, s) = sig.split_scalars();
        Signature::from_scalars(r, -*s).unwrap()
    }

    #[test]
    fn der_signature_becomes_64_byte_r_s_that_verifies() {
        let key = SigningKey::random(&mut OsRng);
        let sig = local_signature(&key, b"header.payload");
        let der = sig.to_der();

        let jws = der_to_jws(der.as_bytes()).unwrap();

        assert_eq!(jws, <[u8; 64]>::from(sig.to_bytes()));
        let parsed = Signature::from_slice(&jws).unwrap();
        VerifyingKey::from(&key)
            .verify(b"header.payload", &parsed)
            .unwrap();
    }

    #[test]
    fn high_s_der_signature_is_normalised_to_low_s() {
        let key = SigningKey::random(&mut OsRng);
        for i in 0..8u8 {
            let msg = [b'm', i];
            let low = local_signature(&key, &msg);
            assert!(!bool::from(low.s().is_high()));
            let high = high_s(&low);
            assert!(bool::from(high.s().is_high()));

            let jws = der_to_jws(high.to_der().as_bytes()).unwrap();

            let parsed = Signature::from_slice(&jws).unwrap();
            assert!(!bool::from(parsed.s().is_high()));
            assert_eq!(parsed, low);
            assert_eq!(&jws[..32], &high.to_bytes()[..32], "r is kept");
            VerifyingKey::from(&key).verify(&msg, &parsed).unwrap();
        }
    }

    #[test]
    fn malformed_der_is_an_error() {
        assert!(der_to_jws(b"").is_err());
        assert!(der_to_jws(&[0x30, 0x02, 0x02, 0x00]).is_err());
        // The raw r‖s form is not DER.
        let key = SigningKey::random(&mut OsRng);
        let sig = local_signature(&key, b"x");
        assert!(der_to_jws(&sig.to_bytes()).is_err());
    }

    fn service_error(status: u16, code: &str) -> SdkError<SignError> {
        use aws_sdk_kms::config::http::HttpResponse;
        use aws_sdk_kms::error::ErrorMetadata;
        let raw = lambda_http::http::Response::builder()
            .status(status)
            .body(String::new().into())
            .unwrap();
        SdkError::service_error(
            SignError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("something happened")
                    .build(),
            ),
            HttpResponse::try_from(raw).unwrap(),
        )
    }

    #[test]
    fn throttling_server_errors_and_timeouts_are_retryable() {
        for err in [
            service_error(400, "ThrottlingException"),
            service_error(500, "KMSInternalException"),
            service_error(503, "SomethingNew"),
            SdkError::timeout_error("too slow"),
        ] {
            let SignerError(text) = sdk_error("Sign", &err);
            assert!(text.contains("(retryable)"), "{text}");
            assert!(text.starts_with("KMS Sign: "), "{text}");
        }
    }

    #[test]
    fn client_errors_are_not_retryable() {
        for code in [
            "AccessDeniedException",
            "NotFoundException",
            "DisabledException",
        ] {
            let SignerError(text) = sdk_error("Sign", &service_error(400, code));
            assert!(!text.contains("retryable"), "{text}");
            assert!(text.contains(code), "{text}");
        }
    }
}
