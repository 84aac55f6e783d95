//! The FAPI-CIBA client profile (FAPI-CIBA §5.2.2, on FAPI 1.0 Advanced §5.2.2): what a client
//! registered with `fapi: true`, or every client of an OP configured `FAPI_BY_DEFAULT=true`, is
//! held to.
//!
//! - It authenticates with `private_key_jwt`, `tls_client_auth` or
//!   `self_signed_tls_client_auth`.
//! - Every authentication request is a request object signed with ES256 or PS256, and carries a
//!   `binding_message`.
//! - Its tokens come by poll or ping: push mode is refused (FAPI-CIBA §5.2.2.1).
//! - Its access tokens are sender-constrained: a token request that binds them neither to a
//!   DPoP key nor to the client certificate fails.
//! - Its RSA keys have at least 2048 bits (registration checks that for every client).
//!
//! A resource server is outside the profile, whatever the OP's default: it obtains no tokens
//! and starts no requests, and `ciba-admin resource-server` gives it a client secret.

use crate::config::Config;
use crate::domain::{AuthMethod, Client, DeliveryMode};
use crate::error::RegistrationError;
use crate::registration::Metadata;

/// The client authentication methods the profile allows.
pub const AUTH_METHODS: &[AuthMethod] = &[
    AuthMethod::PrivateKeyJwt,
    AuthMethod::TlsClientAuth,
    AuthMethod::SelfSignedTlsClientAuth,
];

/// The rule `AUTH_METHODS` states, as the errors say it.
pub const AUTH_METHODS_RULE: &str = "a FAPI client authenticates with private_key_jwt, tls_client_auth or self_signed_tls_client_auth";

/// Whether `client` is held to the profile.
pub fn applies(client: &Client, config: &Config) -> bool {
    !client.resource_server && (client.fapi || config.fapi_by_default)
}

/// Whether a registration falls under the profile: `fapi: true`, or the OP's default, unless it
/// registers a resource server.
pub fn applies_to_registration(metadata: &Metadata, config: &Config) -> bool {
    !metadata.resource_server && (metadata.fapi || config.fapi_by_default)
}

/// A registration under the profile: the metadata must allow nothing the profile forbids.
pub fn check_registration(metadata: &Metadata) -> Result<(), RegistrationError> {
    let refuse = |why: &str| {
        Err(RegistrationError::InvalidClientMetadata(
            why.to_owned().into(),
        ))
    };
    if !AUTH_METHODS.contains(&metadata.token_endpoint_auth_method) {
        return refuse(AUTH_METHODS_RULE);
    }
    if metadata.signing_alg.is_none() {
        return refuse(
            "a FAPI client signs its authentication requests: register \
             backchannel_authentication_request_signing_alg (ES256 or PS256)",
        );
    }
    if metadata.delivery_mode == DeliveryMode::Push {
        return refuse("FAPI-CIBA does not allow push mode: register poll or ping");
    }
    Ok(())
}
