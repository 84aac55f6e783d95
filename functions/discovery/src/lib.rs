//! `GET /.well-known/openid-configuration`: the OP's metadata (OIDC Discovery, CIBA Core §4).

use ciba_shared::config::{Config, SUPPORTED_SCOPES};
use ciba_shared::http::json_response;
use ciba_shared::protocol::{CIBA_GRANT, DeliveryMode, REFRESH_GRANT};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{Value, json};

/// `/introspect` and `/revoke` authenticate clients exactly as `/token` does (one
/// `client_auth`), so their metadata is one list each, never three that could drift apart.
/// The mutual TLS methods (RFC 8705 §2) take the certificate that API Gateway's mutual TLS
/// domain, or the local API's TLS port, hands over; where that is (`MTLS_BASE_URL`) is published
/// as `mtls_endpoint_aliases`.
const CLIENT_AUTH_METHODS: [&str; 5] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];
const CLIENT_ASSERTION_ALGS: [&str; 2] = ["ES256", "PS256"];

/// The endpoints a client authenticating with mutual TLS calls at their alias (RFC 8705 §5):
/// the ones that take client authentication or a certificate-bound token.
const MTLS_ALIASED: [(&str, &str); 5] = [
    ("token_endpoint", "/token"),
    ("backchannel_authentication_endpoint", "/bc-authorize"),
    ("userinfo_endpoint", "/userinfo"),
    ("introspection_endpoint", "/introspect"),
    ("revocation_endpoint", "/revoke"),
];

/// The metadata document; it depends on configuration only, so it is built once per cold start.
pub fn metadata(config: &Config) -> Value {
    let mut metadata = endpoints_and_capabilities(config);
    // RFC 8705 §5: without aliases a client uses the endpoints above for mutual TLS too.
    let aliases: serde_json::Map<String, Value> = MTLS_ALIASED
        .iter()
        .filter_map(|(name, path)| Some(((*name).to_owned(), json!(config.mtls_endpoint(path)?))))
        .collect();
    if !aliases.is_empty() {
        metadata["mtls_endpoint_aliases"] = Value::Object(aliases);
    }
    metadata
}

fn endpoints_and_capabilities(config: &Config) -> Value {
    let methods = CLIENT_AUTH_METHODS;
    json!({
        "issuer": config.issuer,
        "jwks_uri": config.endpoint("/jwks"),
        "token_endpoint": config.endpoint("/token"),
        "userinfo_endpoint": config.endpoint("/userinfo"),
        "registration_endpoint": config.endpoint("/register"),
        "backchannel_authentication_endpoint": config.endpoint("/bc-authorize"),
        "backchannel_token_delivery_modes_supported": [DeliveryMode::Poll, DeliveryMode::Ping, DeliveryMode::Push],
        "backchannel_authentication_request_signing_alg_values_supported": ["ES256", "PS256"],
        "backchannel_user_code_parameter_supported": true,
        "authorization_details_types_supported": config.authorization_details_types,
        "grant_types_supported": [CIBA_GRANT, REFRESH_GRANT],
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "introspection_endpoint": config.endpoint("/introspect"),
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "revocation_endpoint": config.endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "id_token_signing_alg_values_supported": ["ES256"],
        "dpop_signing_alg_values_supported": ciba_shared::dpop::ALGORITHMS,
        "tls_client_certificate_bound_access_tokens": true,
        "subject_types_supported": ["public"],
        "response_types_supported": [],
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "name", "given_name",
            "family_name", "preferred_username", "email", "email_verified", "phone_number",
            "phone_number_verified", "address"
        ],
        "acr_values_supported": config.acr_values_supported,
        "claims_parameter_supported": false,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
    })
}

pub fn handle(metadata: &Value) -> Response<Body> {
    json_response(StatusCode::OK, metadata, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_issuer() {
        let m = metadata(&Config::new("https://op.example.com").unwrap());
        assert_eq!(m["issuer"], "https://op.example.com");
        assert_eq!(
            m["backchannel_authentication_endpoint"],
            "https://op.example.com/bc-authorize"
        );
        assert_eq!(m["jwks_uri"], "https://op.example.com/jwks");
        assert!(
            m["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(CIBA_GRANT))
        );
        assert_eq!(
            m["backchannel_token_delivery_modes_supported"],
            json!(["poll", "ping", "push"])
        );
        assert_eq!(m["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(
            m["authorization_details_types_supported"],
            json!(["payment_initiation", "generic"])
        );
    }

    /// RFC 8414 §2: a resource server finds introspection and revocation in the metadata, and
    /// authenticates there with any method `/token` accepts (they share `client_auth`).
    #[test]
    fn introspection_and_revocation_are_advertised_with_the_token_endpoints_auth_methods() {
        let m = metadata(&Config::new("https://op.example.com").unwrap());
        assert_eq!(
            m["introspection_endpoint"],
            "https://op.example.com/introspect"
        );
        assert_eq!(m["revocation_endpoint"], "https://op.example.com/revoke");
        assert_eq!(
            m["dpop_signing_alg_values_supported"],
            json!(["ES256", "PS256"])
        );
        let methods = every_auth_method();
        assert_eq!(m["token_endpoint_auth_methods_supported"], methods);
        for endpoint in ["introspection_endpoint", "revocation_endpoint"] {
            assert_eq!(m[format!("{endpoint}_auth_methods_supported")], methods);
            assert_eq!(
                m[format!("{endpoint}_auth_signing_alg_values_supported")],
                m["token_endpoint_auth_signing_alg_values_supported"],
                "{endpoint}: private_key_jwt is listed, so RFC 8414 requires its algorithms"
            );
        }
    }

    /// The client authentication methods every endpoint that authenticates clients lists.
    fn every_auth_method() -> Value {
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "tls_client_auth",
            "self_signed_tls_client_auth"
        ])
    }

    fn with_mtls_base_url(base: &str) -> Config {
        let vars = [
            ("ISSUER", "https://op.example.com"),
            ("MTLS_BASE_URL", base),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Config::from_vars(&vars).unwrap()
    }

    /// RFC 8705 §5: with a mutual TLS domain, every endpoint that authenticates clients or takes
    /// a bound token is listed at its alias there; the plain endpoints stay on the issuer.
    #[test]
    fn mtls_endpoint_aliases_name_each_endpoint_on_the_mutual_tls_domain() {
        let m = metadata(&with_mtls_base_url("https://mtls.op.example.com"));
        assert_eq!(
            m["mtls_endpoint_aliases"],
            json!({
                "token_endpoint": "https://mtls.op.example.com/token",
                "backchannel_authentication_endpoint": "https://mtls.op.example.com/bc-authorize",
                "userinfo_endpoint": "https://mtls.op.example.com/userinfo",
                "introspection_endpoint": "https://mtls.op.example.com/introspect",
                "revocation_endpoint": "https://mtls.op.example.com/revoke",
            })
        );
        assert_eq!(m["token_endpoint"], "https://op.example.com/token");
        let methods = every_auth_method();
        for endpoint in [
            "token_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
        ] {
            assert_eq!(m[format!("{endpoint}_auth_methods_supported")], methods);
        }
        assert_eq!(m["tls_client_certificate_bound_access_tokens"], true);
    }

    /// No mutual TLS domain, no aliases: an empty `MTLS_BASE_URL` (the template's default) is
    /// none. The methods and certificate-bound tokens are the OP's, and stay advertised.
    #[test]
    fn mtls_endpoint_aliases_are_absent_without_a_mutual_tls_domain() {
        for config in [
            Config::new("https://op.example.com").unwrap(),
            with_mtls_base_url(""),
        ] {
            let m = metadata(&config);
            assert!(m.get("mtls_endpoint_aliases").is_none(), "{m}");
            assert_eq!(m["tls_client_certificate_bound_access_tokens"], true);
            let methods = m["token_endpoint_auth_methods_supported"].to_string();
            assert!(methods.contains("\"tls_client_auth\""), "{methods}");
        }
    }
}
