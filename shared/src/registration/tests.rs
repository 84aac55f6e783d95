//! The registration rules, case by case.

use super::*;
use crate::error::WireError;
use serde_json::json;
use std::net::IpAddr;

fn validate(body: Value, local_op: bool) -> Result<Metadata, RegistrationError> {
    Metadata::validate(body.as_object().unwrap(), local_op)
}

fn ping_to(endpoint: &str) -> Value {
    json!({
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": endpoint,
    })
}

#[test]
fn http_loopback_notification_endpoint_is_accepted_when_the_op_runs_locally() {
    for endpoint in [
        "http://127.0.0.1:3000/cb",
        "http://localhost:3000/cb",
        "http://[::1]:3000/cb",
    ] {
        let m = validate(ping_to(endpoint), true).unwrap();
        assert_eq!(m.notification_endpoint.as_deref(), Some(endpoint));
    }
}

#[test]
fn http_loopback_notification_endpoint_is_refused_for_a_public_op() {
    let e = validate(ping_to("http://127.0.0.1:3000/cb"), false).unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
}

#[test]
fn http_notification_endpoint_on_another_host_is_refused_even_locally() {
    let e = validate(ping_to("http://rp.example.com/cb"), true).unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
}

#[test]
fn internal_notification_endpoints_are_refused_by_a_public_op() {
    for (endpoint, why) in [
        (
            "https://169.254.169.254/latest/meta-data/",
            callback_policy::IP_LITERAL,
        ),
        ("https://10.0.0.1/", callback_policy::IP_LITERAL),
        ("https://192.168.1.1/", callback_policy::IP_LITERAL),
        (
            "https://[::ffff:169.254.169.254]/",
            callback_policy::IP_LITERAL,
        ),
        (
            "https://metadata.google.internal/",
            callback_policy::LOCAL_NAME,
        ),
        ("https://user:pw@host/", callback_policy::USERINFO),
        ("https://user:pw@rp.example.com/", callback_policy::USERINFO),
    ] {
        let e = validate(ping_to(endpoint), false).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata", "{endpoint}");
        assert_eq!(e.description(), why, "{endpoint}");
    }
}

#[test]
fn https_loopback_notification_endpoint_is_accepted_when_the_op_runs_locally() {
    for endpoint in ["https://localhost:3443/cb", "https://127.0.0.1:3443/cb"] {
        assert!(validate(ping_to(endpoint), true).is_ok(), "{endpoint}");
    }
}

/// DNS as a test wants it: `rp.example.com` resolves to what the test says, nothing else
/// resolves.
struct Answers(Vec<IpAddr>);

#[async_trait::async_trait]
impl Resolver for Answers {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        match host {
            "rp.example.com" => Ok(self.0.clone()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
}

async fn check(endpoint: &str, answers: &[&str], local_op: bool) -> Result<(), String> {
    let resolver = Answers(answers.iter().map(|a| a.parse().unwrap()).collect());
    validate(ping_to(endpoint), local_op)
        .unwrap()
        .check_endpoint_addresses(&resolver, local_op)
        .await
        .map_err(|e| e.description().to_owned())
}

#[tokio::test]
async fn a_name_resolving_to_an_internal_address_is_refused_by_a_public_op() {
    for answers in [
        &["10.0.0.5"][..],
        &["169.254.169.254"],
        &["127.0.0.1"],
        &["fd00:ec2::254"],
        &["93.184.216.34", "192.168.1.1"],
    ] {
        let refused = check("https://rp.example.com/cb", answers, false).await;
        assert_eq!(
            refused,
            Err(callback_policy::RESOLVES_INTERNALLY.to_owned()),
            "{answers:?}"
        );
    }
}

#[tokio::test]
async fn a_name_resolving_to_public_addresses_only_is_accepted() {
    let answers = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"];
    assert_eq!(
        check("https://rp.example.com/cb", &answers, false).await,
        Ok(())
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_at_registration_is_left_to_delivery() {
    assert_eq!(
        check("https://later.example.com/cb", &[], false).await,
        Ok(())
    );
}

/// Review finding 17: a developer's laptop or cloud VM has private, link-local and metadata
/// addresses too. An OP that runs locally exempts loopback only: it refuses what a public OP
/// refuses but for loopback (IP literals and what names resolve to).
#[tokio::test]
async fn an_op_that_runs_locally_exempts_loopback_only() {
    for (endpoint, answers) in [
        ("https://rp.example.com/cb", &["10.0.0.5"][..]),
        ("https://rp.example.com/cb", &["169.254.169.254"]),
        ("https://rp.example.com/cb", &["127.0.0.1", "192.168.1.1"]),
    ] {
        assert_eq!(
            check(endpoint, answers, true).await,
            Err(callback_policy::RESOLVES_INTERNALLY.to_owned()),
            "{endpoint} {answers:?}"
        );
    }
    for literal in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/cb",
        "https://[fd00:ec2::254]/cb",
    ] {
        let e = validate(ping_to(literal), true).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata", "{literal}");
    }
    for (endpoint, answers) in [
        ("https://rp.example.com/cb", &["127.0.0.1"][..]),
        ("https://rp.example.com/cb", &["93.184.216.34"]),
        ("https://rp.example.com/cb", &[]),
        ("http://127.0.0.1:9000/cb", &[]),
        ("https://localhost:9000/cb", &["10.0.0.5"]),
    ] {
        assert_eq!(
            check(endpoint, answers, true).await,
            Ok(()),
            "{endpoint} {answers:?}"
        );
    }
}

#[test]
fn relative_notification_endpoint_is_invalid_client_metadata() {
    let e = validate(ping_to("/cb"), false).unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
}

#[test]
fn null_metadata_counts_as_absent() {
    let m = validate(
        json!({"backchannel_token_delivery_mode": "poll", "client_name": null, "jwks": null}),
        false,
    )
    .unwrap();
    assert!(m.client_name.is_none() && m.jwks.is_none());
    assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
    assert_eq!(m.grant_types, [CIBA_GRANT]);
}

#[test]
fn repeated_grant_types_are_registered_once() {
    let m = validate(
        json!({
            "backchannel_token_delivery_mode": "poll",
            "grant_types": [CIBA_GRANT, "refresh_token", CIBA_GRANT],
        }),
        false,
    )
    .unwrap();
    assert_eq!(m.grant_types, [CIBA_GRANT, "refresh_token"]);
}

#[test]
fn rsa_modulus_size_ignores_leading_zero_bits() {
    let mut n = vec![0u8, 0x01];
    n.extend([0xff; 255]);
    assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode(&n)), 2041);
    assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode([0x80; 256])), 2048);
    assert_eq!(rsa_bits("not base64!"), 0);
}

#[test]
fn a_resource_server_registers_without_ciba_metadata_and_with_no_grants() {
    let m = validate(json!({"resource_server": true}), false).unwrap();
    assert!(m.resource_server);
    assert!(m.grant_types.is_empty());
    for refused in [
        json!({"resource_server": true, "backchannel_token_delivery_mode": "poll"}),
        json!({"resource_server": true, "grant_types": [CIBA_GRANT]}),
        json!({"resource_server": "yes"}),
    ] {
        let e = validate(refused.clone(), false).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata", "{refused}");
    }
}

#[test]
fn authorization_details_types_are_known_distinct_names() {
    let types = |value: Value| {
        validate(
            json!({"backchannel_token_delivery_mode": "poll", "authorization_details_types": value}),
            false,
        )
        .map(|m| m.authorization_details_types)
    };
    assert_eq!(
        validate(json!({"backchannel_token_delivery_mode": "poll"}), false)
            .unwrap()
            .authorization_details_types,
        None
    );
    assert_eq!(types(Value::Null).unwrap(), None);
    assert_eq!(
        types(json!(["generic", "payment_initiation"])).unwrap(),
        Some(vec!["generic".to_owned(), "payment_initiation".to_owned()])
    );
    for bad in [
        json!([]),
        json!("generic"),
        json!(["generic", "generic"]),
        json!(["account_information"]),
        json!([1]),
    ] {
        let e = types(bad.clone()).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata", "{bad}");
        assert!(
            e.description().contains("payment_initiation, generic"),
            "{bad}"
        );
    }
}

#[test]
fn access_token_format_is_opaque_unless_jwt_is_asked_for() {
    let poll = |extra: Value| {
        let mut body = json!({"backchannel_token_delivery_mode": "poll"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        validate(body, false)
    };
    let format = |extra| poll(extra).map(|m| m.access_token_format);
    assert_eq!(format(json!({})).unwrap(), AccessTokenFormat::Opaque);
    assert_eq!(
        format(json!({"access_token_format": "jwt"})).unwrap(),
        AccessTokenFormat::Jwt
    );
    for bad in [json!("JWT"), json!("paseto"), json!(1)] {
        let e = poll(json!({"access_token_format": bad})).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
    }
}
