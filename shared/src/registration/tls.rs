//! The mutual TLS client metadata (RFC 8705 §2.1.2, §2.2, §3.4): how a client's certificate is
//! recognised, and whether its tokens are bound to it.

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};

use super::{boolean, invalid_metadata, string};
use crate::domain::{AuthMethod, DeliveryMode, TlsClientMetadata};
use crate::error::RegistrationError;
use crate::mtls::{IDENTITY_METADATA, TlsIdentity};

/// What the registration says of the client's certificate, checked against its
/// authentication method, keys and delivery mode.
pub(super) fn metadata(
    body: &Map<String, Value>,
    method: AuthMethod,
    jwks: Option<&JwkSet>,
    delivery_mode: DeliveryMode,
    resource_server: bool,
) -> Result<TlsClientMetadata, RegistrationError> {
    let mut identities = Vec::new();
    for name in IDENTITY_METADATA {
        if let Some(value) = string(body, name)? {
            let identity = TlsIdentity::parse(name, value)
                .ok_or_else(|| invalid_metadata(format!("{name} is not a valid {}", kind(name))))?;
            identities.push(identity);
        }
    }
    match method {
        AuthMethod::TlsClientAuth if identities.len() != 1 => {
            return Err(invalid_metadata(format!(
                "tls_client_auth requires exactly one of {}",
                IDENTITY_METADATA.join(", ")
            )));
        }
        AuthMethod::TlsClientAuth => {}
        _ if !identities.is_empty() => {
            return Err(invalid_metadata(
                "tls_client_auth_* metadata is for token_endpoint_auth_method tls_client_auth",
            ));
        }
        AuthMethod::SelfSignedTlsClientAuth if jwks.is_none_or(|k| k.keys.is_empty()) => {
            return Err(invalid_metadata(
                "self_signed_tls_client_auth requires the client's certificate (x5c) or its \
                 public key in jwks",
            ));
        }
        _ => {}
    }
    let bound = boolean(body, "tls_client_certificate_bound_access_tokens")?;
    if bound && resource_server {
        return Err(invalid_metadata(
            "a resource server obtains no tokens: leave out tls_client_certificate_bound_access_tokens",
        ));
    }
    if bound && delivery_mode == DeliveryMode::Push {
        return Err(invalid_metadata(
            "certificate-bound tokens are bound at the token endpoint, which a push-mode client \
             does not call: register poll or ping",
        ));
    }
    let mut tls = TlsClientMetadata {
        tls_client_certificate_bound_access_tokens: bound,
        ..TlsClientMetadata::default()
    };
    if let Some(identity) = identities.first() {
        let (name, value) = identity.metadata();
        let slot = match name {
            "tls_client_auth_subject_dn" => &mut tls.tls_client_auth_subject_dn,
            "tls_client_auth_san_dns" => &mut tls.tls_client_auth_san_dns,
            "tls_client_auth_san_uri" => &mut tls.tls_client_auth_san_uri,
            "tls_client_auth_san_ip" => &mut tls.tls_client_auth_san_ip,
            _ => &mut tls.tls_client_auth_san_email,
        };
        *slot = Some(value);
    }
    Ok(tls)
}

fn kind(name: &str) -> &'static str {
    match name {
        "tls_client_auth_subject_dn" => "RFC 4514 distinguished name",
        "tls_client_auth_san_dns" => "DNS name",
        "tls_client_auth_san_uri" => "absolute URI",
        "tls_client_auth_san_ip" => "IPv4 or IPv6 address",
        _ => "email address",
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metadata;
    use serde_json::json;

    fn validate(body: Value) -> Result<Metadata, RegistrationError> {
        let Value::Object(body) = body else {
            unreachable!()
        };
        Metadata::validate(&body, false)
    }

    use super::*;

    fn poll(extra: Value) -> Value {
        let mut body = json!({"backchannel_token_delivery_mode": "poll"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    }

    #[test]
    fn tls_client_auth_registers_exactly_one_valid_identity() {
        let m = validate(poll(json!({
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "cn=demo-mtls-rp, o=Demo Bank, c=GB",
            "tls_client_certificate_bound_access_tokens": true,
        })))
        .unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::TlsClientAuth);
        assert_eq!(
            m.tls.tls_client_auth_subject_dn.as_deref(),
            Some("CN=demo-mtls-rp,O=Demo Bank,C=GB")
        );
        assert!(m.tls.tls_client_certificate_bound_access_tokens);
        let refused = [
            json!({"token_endpoint_auth_method": "tls_client_auth"}),
            json!({"token_endpoint_auth_method": "tls_client_auth",
                   "tls_client_auth_san_dns": "rp.example", "tls_client_auth_san_ip": "192.0.2.1"}),
            json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_ip": "rp.example"}),
            json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "no dn"}),
            json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": 7}),
            json!({"tls_client_auth_san_dns": "rp.example"}),
            json!({"token_endpoint_auth_method": "self_signed_tls_client_auth"}),
            json!({"tls_client_certificate_bound_access_tokens": "yes"}),
        ];
        for body in refused {
            assert!(
                matches!(
                    validate(poll(body.clone())),
                    Err(RegistrationError::InvalidClientMetadata(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn certificate_bound_tokens_are_not_for_push_mode_or_resource_servers() {
        let push = json!({
            "backchannel_token_delivery_mode": "push",
            "backchannel_client_notification_endpoint": "https://rp.example/cb",
            "tls_client_certificate_bound_access_tokens": true,
        });
        let api =
            json!({"resource_server": true, "tls_client_certificate_bound_access_tokens": true});
        for body in [push, api] {
            assert!(validate(body.clone()).is_err(), "{body}");
        }
    }
}
