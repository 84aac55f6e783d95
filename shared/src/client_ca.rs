//! The certificate authorities a `tls_client_auth` client's certificate must be issued by
//! (RFC 8705 §2.1: "the client is identified by a certificate issued by a trusted CA").
//!
//! The TLS terminator (API Gateway's custom domain, the local API's TLS port) verified the chain
//! against its truststore before the function runs, but a truststore also holds the pinned
//! self-signed certificates of `self_signed_tls_client_auth` clients, and a terminator that takes
//! every certificate of its truststore as a trust anchor lets such a client issue a certificate
//! with another client's subject. So the OP checks itself: a PKI client's certificate is accepted
//! only when one of the configured CA certificates (`MTLS_CLIENT_CA_CERTS`) issued it, by name
//! and by signature, and only a real CA certificate (basicConstraints CA:TRUE, keyCertSign when
//! keyUsage is present) can be configured. The certificate is the leaf the event carries: a
//! client certificate issued by an intermediate is accepted when that intermediate is listed.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

/// The environment variable: CA certificates as a PEM bundle, or base64 DER separated by commas.
pub const SETTING: &str = "MTLS_CLIENT_CA_CERTS";

/// The configured CAs; none by default, so that no certificate authenticates a PKI client until
/// the operator names who issues them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientCas(Vec<Certificate>);

impl ClientCas {
    /// The CAs of `MTLS_CLIENT_CA_CERTS`; every certificate must be a CA certificate.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut cas = Vec::new();
        for cert in certificates(text)? {
            if !is_ca(&cert) {
                return Err(format!(
                    "{SETTING}: {} is not a CA certificate (basicConstraints CA:TRUE and keyCertSign)",
                    cert.tbs_certificate.subject
                ));
            }
            cas.push(cert);
        }
        Ok(Self(cas))
    }

    /// The CAs of a truststore (what `--tls-client-ca` or API Gateway is given): its CA
    /// certificates; the pinned self-signed client certificates beside them vouch for nobody.
    pub fn from_truststore(text: &str) -> Result<Self, String> {
        Ok(Self(
            certificates(text)?.into_iter().filter(is_ca).collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one of the CAs, valid at `now`, issued `leaf` (a client's certificate): its
    /// issuer is the CA's subject and the CA's key verifies its signature. A CA certificate
    /// itself is never a client's.
    pub fn issued(&self, leaf: &Certificate, now: i64) -> bool {
        if is_ca(leaf) {
            return false;
        }
        self.0.iter().any(|ca| {
            ca.tbs_certificate.subject == leaf.tbs_certificate.issuer
                && valid_at(ca, now)
                && signed_by(leaf, ca)
        })
    }
}

/// Whether a DER certificate is a CA certificate (basicConstraints CA:TRUE, and keyCertSign
/// when it has a keyUsage): what a truststore may take as a trust anchor.
pub fn is_ca_certificate(der: &[u8]) -> bool {
    Certificate::from_der(der).is_ok_and(|cert| is_ca(&cert))
}

/// Whether `now` is within a DER certificate's validity.
pub fn is_valid_at(der: &[u8], now: i64) -> bool {
    Certificate::from_der(der).is_ok_and(|cert| valid_at(&cert, now))
}

fn certificates(text: &str) -> Result<Vec<Certificate>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |what: &str| format!("{SETTING}: {what}");
    if text.contains("-----BEGIN") {
        return Certificate::load_pem_chain(text.as_bytes())
            .map_err(|_| bad("not a PEM bundle of certificates"));
    }
    text.split(',')
        .map(|part| {
            let der = STANDARD
                .decode(part.trim())
                .map_err(|_| bad("a value is neither PEM nor base64 DER"))?;
            Certificate::from_der(&der).map_err(|_| bad("a value is not a DER certificate"))
        })
        .collect()
}

fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

fn is_ca(cert: &Certificate) -> bool {
    let ca = extension(cert, BASIC_CONSTRAINTS)
        .and_then(|der| BasicConstraints::from_der(der).ok())
        .is_some_and(|b| b.ca);
    let signs_certificates = match extension(cert, KEY_USAGE) {
        None => true,
        Some(der) => KeyUsage::from_der(der).is_ok_and(|k| k.0.contains(KeyUsages::KeyCertSign)),
    };
    ca && signs_certificates
}

fn valid_at(cert: &Certificate, now: i64) -> bool {
    let validity = &cert.tbs_certificate.validity;
    let seconds = |t: x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    seconds(validity.not_before) <= now && now <= seconds(validity.not_after)
}

/// Whether `issuer`'s public key verifies `cert`'s signature, for the signature algorithms
/// CAs use: ECDSA P-256 or P-384 with SHA-256 or SHA-384, RSA PKCS#1 v1.5 with SHA-256/384/512.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let Some(key) = spki.subject_public_key.as_bytes() else {
        return false;
    };
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|oid| oid.to_string());
    let algorithm: &dyn VerificationAlgorithm = match (
        spki.algorithm.oid.to_string().as_str(),
        curve.as_deref(),
        cert.signature_algorithm.oid.to_string().as_str(),
    ) {
        (EC_PUBLIC_KEY, Some(P256), "1.2.840.10045.4.3.2") => &signature::ECDSA_P256_SHA256_ASN1,
        (EC_PUBLIC_KEY, Some(P256), "1.2.840.10045.4.3.3") => &signature::ECDSA_P256_SHA384_ASN1,
        (EC_PUBLIC_KEY, Some(P384), "1.2.840.10045.4.3.2") => &signature::ECDSA_P384_SHA256_ASN1,
        (EC_PUBLIC_KEY, Some(P384), "1.2.840.10045.4.3.3") => &signature::ECDSA_P384_SHA384_ASN1,
        (RSA_ENCRYPTION, _, "1.2.840.113549.1.1.11") => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RSA_ENCRYPTION, _, "1.2.840.113549.1.1.12") => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RSA_ENCRYPTION, _, "1.2.840.113549.1.1.13") => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => return false,
    };
    let (Ok(tbs), Some(sig)) = (cert.tbs_certificate.to_der(), cert.signature.as_bytes()) else {
        return false;
    };
    UnparsedPublicKey::new(algorithm, key)
        .verify(&tbs, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::der::DecodePem;

    const PKI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/pki/");
    const NOW: i64 = 1_800_000_000;

    fn pem(name: &str) -> String {
        std::fs::read_to_string(format!("{PKI}{name}")).unwrap()
    }

    fn cert(name: &str) -> Certificate {
        Certificate::from_pem(pem(name).trim().as_bytes()).unwrap()
    }

    #[test]
    fn a_certificate_of_the_configured_ca_is_issued_by_it_and_no_other_is() {
        let cas = ClientCas::parse(&pem("demo-ca.crt")).unwrap();
        assert!(cas.issued(&cert("demo-mtls-rp.crt"), NOW));
        // Same subject, another CA.
        assert!(!cas.issued(&cert("stranger.crt"), NOW));
        // Same subject, signed with a self-signed client's key (the review's impersonation).
        assert!(!cas.issued(&cert("impostor.crt"), NOW));
        assert!(!cas.issued(&cert("demo-mtls-self.crt"), NOW));
        // The CA's own certificate is no client's.
        assert!(!cas.issued(&cert("demo-ca.crt"), NOW));
        assert!(!ClientCas::default().issued(&cert("demo-mtls-rp.crt"), NOW));
    }

    #[test]
    fn a_ca_outside_its_validity_issues_nothing() {
        let cas = ClientCas::parse(&pem("demo-ca.crt")).unwrap();
        assert!(!cas.issued(&cert("demo-mtls-rp.crt"), 0));
    }

    #[test]
    fn only_ca_certificates_can_be_configured_and_a_truststore_keeps_its_cas() {
        let error = ClientCas::parse(&pem("demo-mtls-self.crt")).unwrap_err();
        assert!(error.contains("is not a CA certificate"), "{error}");
        assert!(ClientCas::parse("not a certificate").is_err());
        let truststore = ClientCas::from_truststore(&pem("truststore.pem")).unwrap();
        assert_eq!(truststore.0.len(), 1);
        assert!(truststore.issued(&cert("demo-mtls-rp.crt"), NOW));
        assert!(!truststore.issued(&cert("impostor.crt"), NOW));
        assert!(ClientCas::parse("").unwrap().is_empty());
    }

    #[test]
    fn base64_der_values_separated_by_commas_are_read_like_pem() {
        let der = |name: &str| {
            STANDARD.encode(
                Certificate::from_pem(pem(name).as_bytes())
                    .unwrap()
                    .to_der()
                    .unwrap(),
            )
        };
        let cas =
            ClientCas::parse(&format!("{}, {}", der("other-ca.crt"), der("demo-ca.crt"))).unwrap();
        assert!(cas.issued(&cert("demo-mtls-rp.crt"), NOW));
        assert!(cas.issued(&cert("stranger.crt"), NOW));
    }
}
