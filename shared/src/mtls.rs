//! Mutual TLS (RFC 8705): the client certificate of a request, client authentication by it
//! (`tls_client_auth`, `self_signed_tls_client_auth`) and the thumbprint tokens are bound to.
//!
//! The TLS handshake itself happens before the function runs: API Gateway's custom domain with
//! mutual TLS in AWS, the local API's TLS port locally. Either verified the certificate chain
//! against its truststore and the client's possession of the private key, and hands the
//! certificate over in the event, at `requestContext.authentication.clientCert`. Nothing a
//! caller sends can put it there: the plain endpoint's events never have it.

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::asn1::UintRef;
use x509_cert::der::{Decode, DecodePem, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::RdnSequence;

use crate::domain::Client;

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// The client certificate of a request, as the TLS terminator verified it.
#[derive(Debug, Clone)]
pub struct ClientCert {
    der: Vec<u8>,
    cert: Certificate,
}

impl ClientCert {
    /// A PEM certificate (`clientCertPem`); `None` when it is not one.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let cert = Certificate::from_pem(pem.trim().as_bytes()).ok()?;
        let der = cert.to_der().ok()?;
        Some(Self { der, cert })
    }

    /// The parsed certificate.
    pub(crate) fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate's `x5t#S256` (RFC 8705 §3.1): what certificate-bound tokens carry in
    /// `cnf`.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    /// The subject distinguished name in RFC 4514 form.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// Whether `now` (epoch seconds) is within the certificate's validity. The TLS terminator
    /// checked it at the handshake; a connection kept open past the end is checked here.
    pub fn is_valid_at(&self, now: i64) -> bool {
        let validity = &self.cert.tbs_certificate.validity;
        let seconds = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        seconds(validity.not_before) <= now && now <= seconds(validity.not_after)
    }

    fn alt_names(&self) -> Vec<GeneralName> {
        let extensions = self.cert.tbs_certificate.extensions.iter().flatten();
        extensions
            .filter(|e| e.extn_id.to_string() == SUBJECT_ALT_NAME)
            .filter_map(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
            .flat_map(|san| san.0)
            .collect()
    }

    /// The certificate's public key as a JWK (EC P-256 or RSA), for matching registered keys.
    fn public_jwk(&self) -> Option<Value> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let key = spki.subject_public_key.as_bytes()?;
        match spki.algorithm.oid.to_string().as_str() {
            EC_PUBLIC_KEY => {
                let point = p256::PublicKey::from_sec1_bytes(key).ok()?;
                serde_json::from_str(&point.to_jwk_string()).ok()
            }
            RSA_ENCRYPTION => {
                let mut reader = SliceReader::new(key).ok()?;
                let (n, e) = reader
                    .sequence(|r| Ok((UintRef::decode(r)?, UintRef::decode(r)?)))
                    .ok()?;
                Some(serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(n.as_bytes()),
                    "e": URL_SAFE_NO_PAD.encode(e.as_bytes()),
                }))
            }
            _ => None,
        }
    }
}

/// The client certificate the request came with, if any (API Gateway payload 2.0:
/// `requestContext.authentication.clientCert.clientCertPem`).
pub fn from_request(req: &lambda_http::Request) -> Option<ClientCert> {
    let RequestContext::ApiGatewayV2(context) = req.request_context_ref()? else {
        return None;
    };
    let pem = context
        .authentication
        .as_ref()?
        .client_cert
        .as_ref()?
        .client_cert_pem
        .as_deref()?;
    let cert = ClientCert::from_pem(pem);
    if cert.is_none() {
        tracing::warn!("the event's client certificate is not a PEM certificate");
    }
    cert
}

/// What a `tls_client_auth` client registered its certificate to be identified by: exactly one
/// of these (RFC 8705 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsIdentity {
    /// `tls_client_auth_subject_dn`, kept in RFC 4514 form.
    SubjectDn(String),
    /// `tls_client_auth_san_dns`.
    SanDns(String),
    /// `tls_client_auth_san_uri`.
    SanUri(String),
    /// `tls_client_auth_san_ip`.
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`.
    SanEmail(String),
}

/// The metadata names of `TlsIdentity`, in its order.
pub const IDENTITY_METADATA: [&str; 5] = [
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
];

impl TlsIdentity {
    /// Reads the registered value of metadata `name` (one of `IDENTITY_METADATA`); `None` when
    /// the value is not of its kind.
    pub fn parse(name: &str, value: &str) -> Option<Self> {
        if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
            return None;
        }
        match name {
            "tls_client_auth_subject_dn" => normalise_dn(value).map(Self::SubjectDn),
            "tls_client_auth_san_dns" => {
                let valid = value
                    .split('.')
                    .all(|label| !label.is_empty() && label.len() <= 63)
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*'));
                valid.then(|| Self::SanDns(value.to_ascii_lowercase()))
            }
            "tls_client_auth_san_uri" => url::Url::parse(value)
                .ok()
                .map(|_| Self::SanUri(value.to_owned())),
            "tls_client_auth_san_ip" => IpAddr::from_str(value).ok().map(Self::SanIp),
            "tls_client_auth_san_email" => {
                let valid = value.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && !domain.is_empty() && !value.contains(char::is_whitespace)
                });
                valid.then(|| Self::SanEmail(value.to_owned()))
            }
            _ => None,
        }
    }

    /// The metadata name and registered value.
    pub fn metadata(&self) -> (&'static str, String) {
        match self {
            Self::SubjectDn(dn) => (IDENTITY_METADATA[0], dn.clone()),
            Self::SanDns(name) => (IDENTITY_METADATA[1], name.clone()),
            Self::SanUri(uri) => (IDENTITY_METADATA[2], uri.clone()),
            Self::SanIp(ip) => (IDENTITY_METADATA[3], ip.to_string()),
            Self::SanEmail(email) => (IDENTITY_METADATA[4], email.clone()),
        }
    }

    /// Whether `cert` is the registered one: its subject DN (compared in RFC 4514 form, attribute
    /// values ignoring ASCII case), or one of its subject alternative names of the registered
    /// kind equal to the registered value (RFC 8705 §2.1.2).
    pub fn matches(&self, cert: &ClientCert) -> bool {
        if let Self::SubjectDn(dn) = self {
            return normalise_dn(&cert.subject()).is_some_and(|s| s.eq_ignore_ascii_case(dn));
        }
        cert.alt_names().iter().any(|name| match (self, name) {
            (Self::SanDns(want), GeneralName::DnsName(got)) => {
                got.as_str().eq_ignore_ascii_case(want)
            }
            (Self::SanUri(want), GeneralName::UniformResourceIdentifier(got)) => {
                got.as_str() == want
            }
            (Self::SanEmail(want), GeneralName::Rfc822Name(got)) => got.as_str() == want,
            (Self::SanIp(want), GeneralName::IpAddress(got)) => {
                ip_of(got.as_bytes()) == Some(*want)
            }
            _ => false,
        })
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// An RFC 4514 distinguished name in the one form certificates are compared in: parsed and
/// written back, so spacing around separators and attribute type spellings (`cn`, `2.5.4.3`)
/// do not matter.
fn normalise_dn(dn: &str) -> Option<String> {
    let trimmed: Vec<String> = split_unescaped(dn)
        .into_iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((kind, value)) => format!("{}={}", kind.trim(), value.trim()),
            None => rdn.trim().to_owned(),
        })
        .collect();
    let parsed = RdnSequence::from_str(&trimmed.join(",")).ok()?;
    (!parsed.0.is_empty()).then(|| parsed.to_string())
}

/// The RDNs of a DN string: split at commas not escaped by a backslash.
fn split_unescaped(dn: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in dn.chars() {
        match c {
            ',' if !escaped => parts.push(String::new()),
            _ => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
        escaped = c == '\\' && !escaped;
    }
    parts
}

/// The registered identity of a `tls_client_auth` client.
pub fn registered_identity(client: &Client) -> Option<TlsIdentity> {
    let tls = &client.tls;
    let registered = [
        &tls.tls_client_auth_subject_dn,
        &tls.tls_client_auth_san_dns,
        &tls.tls_client_auth_san_uri,
        &tls.tls_client_auth_san_ip,
        &tls.tls_client_auth_san_email,
    ];
    IDENTITY_METADATA
        .iter()
        .zip(registered)
        .find_map(|(name, value)| TlsIdentity::parse(name, value.as_deref()?))
}

/// `self_signed_tls_client_auth` (RFC 8705 §2.2): the certificate is one registered in the
/// client's `jwks`, as the first certificate of a key's `x5c`, or its public key is one of the
/// registered keys.
pub fn matches_registered_keys(cert: &ClientCert, jwks: &JwkSet) -> bool {
    let key = cert
        .public_jwk()
        .and_then(|jwk| crate::dpop::thumbprint(&jwk));
    jwks.keys.iter().any(|jwk| {
        let listed = jwk
            .common
            .x509_chain
            .as_ref()
            .and_then(|chain| chain.first())
            .and_then(|first| STANDARD.decode(first).ok())
            .is_some_and(|der| der == cert.der);
        let same_key = key.is_some()
            && serde_json::to_value(jwk)
                .ok()
                .and_then(|v| crate::dpop::thumbprint(&v))
                == key;
        listed || same_key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/pki/");

    fn cert(name: &str) -> ClientCert {
        let pem = std::fs::read_to_string(format!("{PKI}{name}.crt")).unwrap();
        ClientCert::from_pem(&pem).unwrap()
    }

    #[test]
    fn the_thumbprint_is_the_base64url_sha_256_of_the_der_certificate() {
        let rp = cert("demo-mtls-rp");
        // The file's own bytes, read apart from the X.509 parser: the PEM body, decoded.
        let pem = std::fs::read_to_string(format!("{PKI}demo-mtls-rp.crt")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        assert_eq!(rp.thumbprint(), URL_SAFE_NO_PAD.encode(Sha256::digest(der)));
        assert_eq!(rp.thumbprint().len(), 43);
        assert_ne!(rp.thumbprint(), cert("stranger").thumbprint());
    }

    #[test]
    fn the_subject_dn_matches_in_rfc_4514_form_whatever_the_spacing_and_case() {
        let rp = cert("demo-mtls-rp");
        assert_eq!(rp.subject(), "CN=demo-mtls-rp,O=Demo Bank,C=GB");
        for registered in [
            "CN=demo-mtls-rp,O=Demo Bank,C=GB",
            "cn=demo-mtls-rp, o=Demo Bank, c=GB",
            "CN=DEMO-MTLS-RP,O=demo bank,C=gb",
            "2.5.4.3=demo-mtls-rp,O=Demo Bank,C=GB",
        ] {
            let identity = TlsIdentity::parse("tls_client_auth_subject_dn", registered).unwrap();
            assert!(identity.matches(&rp), "{registered}");
        }
        for other in [
            "CN=demo-mtls-rp,O=Demo Bank",
            "O=Demo Bank,CN=demo-mtls-rp,C=GB",
            "CN=demo-mtls-rp,O=Demo Bank,C=US",
        ] {
            let identity = TlsIdentity::parse("tls_client_auth_subject_dn", other).unwrap();
            assert!(!identity.matches(&rp), "{other}");
        }
        assert!(
            !TlsIdentity::parse(
                "tls_client_auth_subject_dn",
                "CN=demo-mtls-rp,O=Demo Bank,C=GB"
            )
            .unwrap()
            .matches(&cert("demo-mtls-self"))
        );
        assert!(TlsIdentity::parse("tls_client_auth_subject_dn", "not a dn").is_none());
    }

    #[test]
    fn a_san_matches_only_a_name_of_its_kind() {
        let rp = cert("demo-mtls-rp");
        let dns = |v: &str| TlsIdentity::parse("tls_client_auth_san_dns", v).unwrap();
        assert!(dns("rp.demo-bank.example").matches(&rp));
        assert!(dns("RP.Demo-Bank.example").matches(&rp));
        assert!(!dns("other.demo-bank.example").matches(&rp));
        let uri = TlsIdentity::parse("tls_client_auth_san_uri", "https://rp.demo-bank.example");
        assert!(!uri.unwrap().matches(&rp));
        let localhost = cert("localhost");
        let ip = |v: &str| TlsIdentity::parse("tls_client_auth_san_ip", v).unwrap();
        assert!(ip("127.0.0.1").matches(&localhost) && ip("::1").matches(&localhost));
        assert!(!ip("127.0.0.2").matches(&localhost));
        assert!(TlsIdentity::parse("tls_client_auth_san_ip", "localhost").is_none());
        assert!(TlsIdentity::parse("tls_client_auth_san_email", "nobody").is_none());
    }

    #[test]
    fn a_self_signed_certificate_matches_its_key_or_its_x5c_in_the_jwks() {
        let own = cert("demo-mtls-self");
        let jwk = own.public_jwk().unwrap();
        let by_key: JwkSet = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).unwrap();
        assert!(matches_registered_keys(&own, &by_key));
        assert!(!matches_registered_keys(&cert("demo-mtls-rp"), &by_key));
        // Another key, listing this very certificate in its x5c.
        let mut listed = cert("stranger").public_jwk().unwrap();
        listed["x5c"] = serde_json::json!([STANDARD.encode(&own.der)]);
        let by_cert: JwkSet =
            serde_json::from_value(serde_json::json!({ "keys": [listed] })).unwrap();
        assert!(matches_registered_keys(&own, &by_cert));
    }

    #[test]
    fn validity_is_checked_against_the_clock() {
        let rp = cert("demo-mtls-rp");
        assert!(rp.is_valid_at(2_000_000_000));
        assert!(!rp.is_valid_at(0));
        assert!(!rp.is_valid_at(4_000_000_000));
    }

    #[test]
    fn what_is_not_a_certificate_is_none() {
        assert!(ClientCert::from_pem("").is_none());
        assert!(
            ClientCert::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .is_none()
        );
    }
}
