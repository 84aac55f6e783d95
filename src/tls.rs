//! The local API's mutual-TLS listener, configured as API Gateway configures an mTLS custom
//! domain: every client presents a certificate, accepted when the truststore vouches for it.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

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
    for cert in certificates("--tls-client-ca", &files.client_ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("--tls-client-ca {}: {e}", files.client_ca))?;
    }
    // A self-signed client certificate listed in the truststore is its own trust anchor: webpki
    // finds its issuer (itself) among the anchors and checks its signature with its own key, so
    // the truststore pins it exactly as API Gateway's does.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("--tls-client-ca {}: {e}", files.client_ca))?;
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
