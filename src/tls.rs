//! The local API's mutual-TLS listener, configured as API Gateway configures an mTLS custom
//! domain: every client presents a certificate, accepted when the truststore vouches for it.
//!
//! The truststore holds two kinds of certificate, kept apart (RFC 8705 §2.1 and §2.2): CA
//! certificates (basicConstraints CA:TRUE, keyCertSign) are trust anchors, whose issued
//! certificates are verified by webpki; a pinned self-signed client certificate is accepted as
//! itself, byte for byte, and vouches for no other certificate. (Taking every truststore
//! certificate as an anchor would let a self-signed client sign a certificate with another
//! client's subject.)

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use x509_cert::der::{Decode, Encode};

/// The three files the TLS port is configured from.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first (PEM).
    pub cert: String,
    /// The server's private key (PKCS#8 or SEC1 PEM).
    pub key: String,
    /// The truststore: CA certificates and self-signed client certificates (PEM bundle).
    pub client_ca: String,
}

/// The rustls server configuration for `files`, or what is wrong with one of them, naming it.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("--tls-cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("--tls-key {}: no usable private key ({e})", files.key))?;
    let mut roots = RootCertStore::empty();
    let mut pinned = Vec::new();
    for cert in certificates("--tls-client-ca", &files.client_ca)? {
        if ciba_shared::client_ca::is_ca_certificate(&cert) {
            roots
                .add(cert)
                .map_err(|e| format!("--tls-client-ca {}: {e}", files.client_ca))?;
        } else {
            pinned.push(cert);
        }
    }
    let ca = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", files.client_ca))?,
        )
    };
    let verifier = Arc::new(PinnedOrIssued::new(
        pinned,
        ca,
        provider.signature_verification_algorithms,
    ));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "--tls-cert {} with --tls-key {}: {e}",
                files.cert, files.key
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client certificates accepted as pinned self-signed certificates, byte for byte, or as issued
/// by one of the truststore's CAs.
#[derive(Debug)]
struct PinnedOrIssued {
    pinned: Vec<CertificateDer<'static>>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl PinnedOrIssued {
    fn new(
        pinned: Vec<CertificateDer<'static>>,
        ca: Option<Arc<dyn ClientCertVerifier>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        // The CAs' subjects and each pinned certificate's own (its issuer): what a client
        // picks its certificate by.
        let mut hints: Vec<DistinguishedName> = ca
            .as_ref()
            .map(|ca| ca.root_hint_subjects().to_vec())
            .unwrap_or_default();
        for cert in &pinned {
            if let Ok(parsed) = x509_cert::Certificate::from_der(cert)
                && let Ok(subject) = parsed.tbs_certificate.subject.to_der()
            {
                hints.push(DistinguishedName::from(subject));
            }
        }
        Self {
            pinned,
            ca,
            algorithms,
            hints,
        }
    }
}

impl ClientCertVerifier for PinnedOrIssued {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if !ciba_shared::client_ca::is_valid_at(end_entity, now) {
                return Err(Error::InvalidCertificate(CertificateError::Expired));
            }
            return Ok(ClientCertVerified::assertion());
        }
        match &self.ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Every certificate of the PEM file at `path`; at least one.
fn certificates(flag: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{flag} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki(name: &str) -> String {
        format!("{}/tests/keys/pki/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn demo() -> TlsFiles {
        TlsFiles {
            cert: pki("localhost.crt"),
            key: pki("localhost.pem"),
            client_ca: pki("truststore.pem"),
        }
    }

    #[test]
    fn a_missing_or_wrong_file_is_named_in_the_error() {
        assert!(server_config(&demo()).is_ok());
        let missing = TlsFiles {
            client_ca: pki("absent.pem"),
            ..demo()
        };
        let error = server_config(&missing).unwrap_err();
        assert!(
            error.starts_with("--tls-client-ca ") && error.contains("absent.pem"),
            "{error}"
        );
        let key_as_cert = TlsFiles {
            cert: pki("localhost.pem"),
            ..demo()
        };
        let error = server_config(&key_as_cert).unwrap_err();
        assert!(error.contains("no PEM certificate"), "{error}");
        let cert_as_key = TlsFiles {
            key: pki("localhost.crt"),
            ..demo()
        };
        let error = server_config(&cert_as_key).unwrap_err();
        assert!(error.starts_with("--tls-key "), "{error}");
        let wrong_key = TlsFiles {
            key: pki("demo-ca.pem"),
            ..demo()
        };
        let error = server_config(&wrong_key).unwrap_err();
        assert!(error.starts_with("--tls-cert "), "{error}");
    }
}
