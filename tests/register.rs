//! `POST /register`: dynamic client registration (RFC 7591) with the CIBA client metadata, over
//! the local API. One rule per test.

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciba_local::LocalApi;
use ciba_local::event::HttpRequest;
use ciba_shared::config::{Config, Registration};
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random, public_jwk_with_kid};
use ciba_shared::secret;
use ciba_testkit::{CountingRandom, StaticResolver};
use common::{CIBA_GRANT, Harness, ISSUER, Reply, T0, key};
use serde_json::{Value, json};

const INITIAL_ACCESS_TOKEN: &str = "iat-for-tests-only";

/// The seeded harness with another issuer and registration policy.
async fn harness_with(issuer: &str, registration: Registration) -> Harness {
    let h = Harness::memory().await;
    let mut config = Config::new(issuer).unwrap();
    config.registration = registration;
    let mut ctx = h.api.ctx.clone();
    ctx.config = Arc::new(config);
    let api = Arc::new(LocalApi::new(ctx, h.pushes.clone()));
    Harness { api, ..h }
}

async fn open() -> Harness {
    harness_with(ISSUER, Registration::Open).await
}

async fn with_token() -> Harness {
    harness_with(
        ISSUER,
        Registration::InitialAccessToken(vec![secret::hash(INITIAL_ACCESS_TOKEN)]),
    )
    .await
}

async fn register(h: &Harness, metadata: &Value) -> Reply {
    let req = HttpRequest::new("POST", "/register").body("application/json", metadata.to_string());
    h.send(req).await
}

async fn register_with(h: &Harness, authorization: &str, metadata: &Value) -> Reply {
    let req = HttpRequest::new("POST", "/register")
        .header("authorization", authorization)
        .body("application/json", metadata.to_string());
    h.send(req).await
}

fn poll_client() -> Value {
    json!({"backchannel_token_delivery_mode": "poll", "client_name": "Registered Bank"})
}

/// `poll_client()` with `name` set to `value`.
fn poll_client_with(name: &str, value: Value) -> Value {
    let mut metadata = poll_client();
    metadata[name] = value;
    metadata
}

/// The public half of the demo FAPI RP key, as a JWK Set.
fn rp_jwks() -> Value {
    let (_, jwk) = public_jwk_with_kid(&p256::PublicKey::from(key("demo-fapi-rp").verifying_key()));
    json!({"keys": [jwk]})
}

/// An RSA public JWK whose modulus has `bits` bits (not a real key: registration only checks the
/// shape).
fn rsa_jwk(bits: usize) -> Value {
    let mut n = vec![0xc5u8; bits / 8];
    n[bits / 8 - 1] |= 1;
    json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB", "use": "sig"})
}

#[track_caller]
fn expect_metadata_error(reply: &Reply) {
    reply.expect_error(400, "invalid_client_metadata");
}

/// Review finding 6: a resource server introspects every client's access tokens (with their
/// `authorization_details` and `txn_approval`), so only the operator makes one
/// (`ciba-admin resource-server`): `/register` refuses `resource_server: true`, even with an
/// initial access token, and stores nothing.
#[tokio::test]
async fn a_resource_server_cannot_be_registered_at_the_endpoint() {
    for h in [open().await, with_token().await] {
        let bearer = format!("Bearer {INITIAL_ACCESS_TOKEN}");
        let r = register_with(
            &h,
            &bearer,
            &json!({"resource_server": true, "client_name": "Spy"}),
        )
        .await;
        r.expect_error(400, "invalid_client_metadata");
        assert!(
            r.body["error_description"]
                .as_str()
                .unwrap()
                .contains("ciba-admin resource-server"),
            "{:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn registration_is_closed_by_default() {
    let h = Harness::memory().await;
    let r = register(&h, &poll_client()).await;
    r.expect_error(401, "invalid_token");
}

#[tokio::test]
async fn missing_initial_access_token_is_401_invalid_token() {
    let h = with_token().await;
    let r = register(&h, &poll_client()).await;
    r.expect_error(401, "invalid_token");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
}

#[tokio::test]
async fn wrong_initial_access_token_is_401_invalid_token() {
    let h = with_token().await;
    let r = register_with(&h, "Bearer not-the-token", &poll_client()).await;
    r.expect_error(401, "invalid_token");
    assert!(r.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn listed_initial_access_token_registers_a_client() {
    let h = with_token().await;
    let r = register_with(
        &h,
        &format!("Bearer {INITIAL_ACCESS_TOKEN}"),
        &poll_client(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn open_registration_answers_201_with_credentials_and_registered_metadata() {
    let h = open().await;
    let r = register(&h, &poll_client()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let b = &r.body;
    assert!(b["client_id"].as_str().unwrap().len() >= 22, "128-bit id");
    assert!(
        b["client_secret"].as_str().unwrap().len() >= 43,
        "256-bit secret"
    );
    assert_eq!(b["client_id_issued_at"], T0);
    assert_eq!(b["client_secret_expires_at"], 0);
    assert_eq!(b["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(b["grant_types"], json!([CIBA_GRANT]));
    assert_eq!(b["backchannel_token_delivery_mode"], "poll");
    assert_eq!(b["backchannel_user_code_parameter"], false);
    assert_eq!(b["client_name"], "Registered Bank");
    assert!(b.get("jwks").is_none());
    assert!(b.get("backchannel_client_notification_endpoint").is_none());
}

#[tokio::test]
async fn registered_poll_client_runs_the_ciba_flow() {
    let h = open().await;
    let r = register(&h, &poll_client()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["client_id"].as_str().unwrap();
    let secret = r.body["client_secret"].as_str().unwrap();

    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic(id, secret))
        .form(&[
            ("scope", "openid email"),
            ("login_hint", "alice"),
            ("binding_message", "W4SCT"),
        ]);
    let started = h.send(req).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let auth_req_id = started.body["auth_req_id"].as_str().unwrap();
    let push = h.pushes.sent_to("user-alice");
    assert_eq!(push.last().unwrap().message.client_name, "Registered Bank");

    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h.poll_as(id, secret, auth_req_id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert!(tokens.body["id_token"].is_string());
}

#[tokio::test]
async fn client_secret_is_stored_hashed() {
    let h = open().await;
    let r = register(&h, &poll_client()).await;
    let id = r.body["client_id"].as_str().unwrap();
    let secret = r.body["client_secret"].as_str().unwrap();
    let stored = h.store.clients().get_client(id).await.unwrap().unwrap();
    assert_eq!(stored.client_secret_hash, Some(secret::hash(secret)));
    let item = serde_json::to_string(&stored).unwrap();
    assert!(!item.contains(secret));
}

#[tokio::test]
async fn client_secret_post_client_authenticates_in_the_form() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("token_endpoint_auth_method", json!("client_secret_post")),
    )
    .await;
    assert_eq!(r.body["token_endpoint_auth_method"], "client_secret_post");
    let id = r.body["client_id"].as_str().unwrap();
    let secret = r.body["client_secret"].as_str().unwrap();
    let req = HttpRequest::new("POST", "/bc-authorize").form(&[
        ("client_id", id),
        ("client_secret", secret),
        ("scope", "openid"),
        ("login_hint", "alice"),
    ]);
    let started = h.send(req).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
}

#[tokio::test]
async fn registered_private_key_jwt_client_gets_no_secret_and_sends_signed_requests() {
    let h = open().await;
    let r = register(
        &h,
        &json!({
            "backchannel_token_delivery_mode": "poll",
            "token_endpoint_auth_method": "private_key_jwt",
            "backchannel_authentication_request_signing_alg": "ES256",
            "jwks": rp_jwks(),
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("client_secret").is_none());
    assert!(r.body.get("client_secret_expires_at").is_none());
    assert_eq!(
        r.body["backchannel_authentication_request_signing_alg"],
        "ES256"
    );
    assert_eq!(r.body["jwks"]["keys"][0]["x"], rp_jwks()["keys"][0]["x"]);
    let id = r.body["client_id"].as_str().unwrap();
    let stored = h.store.clients().get_client(id).await.unwrap().unwrap();
    assert!(stored.client_secret_hash.is_none());

    let now = h.now();
    let sign = |typ: &str, claims: Value| {
        jose::sign_with_key(
            &key("demo-fapi-rp"),
            &json!({"alg": "ES256", "typ": typ}),
            &claims,
        )
    };
    let mut claims = h.request_claims();
    claims["iss"] = json!(id);
    let request_object = sign("oauth-authz-req+jwt", claims);
    let assertion = sign(
        "JWT",
        json!({
            "iss": id, "sub": id, "aud": format!("{ISSUER}/token"),
            "iat": now, "exp": now + 60, "jti": OsRandom.token(12)
        }),
    );
    let req = HttpRequest::new("POST", "/bc-authorize").form(&[
        ("request", &request_object),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ]);
    let started = h.send(req).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
}

#[tokio::test]
async fn missing_delivery_mode_is_invalid_client_metadata() {
    let h = open().await;
    expect_metadata_error(&register(&h, &json!({"client_name": "No Mode"})).await);
}

#[tokio::test]
async fn unknown_delivery_mode_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("backchannel_token_delivery_mode", json!("poke")),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn ping_client_without_notification_endpoint_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(&h, &json!({"backchannel_token_delivery_mode": "ping"})).await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn push_client_without_notification_endpoint_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(&h, &json!({"backchannel_token_delivery_mode": "push"})).await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn push_client_with_https_notification_endpoint_is_registered() {
    let h = open().await;
    let endpoint = "https://rp.example.com/ciba/notify";
    let r = register(
        &h,
        &json!({
            "backchannel_token_delivery_mode": "push",
            "backchannel_client_notification_endpoint": endpoint,
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["backchannel_token_delivery_mode"], "push");
    assert_eq!(r.body["backchannel_client_notification_endpoint"], endpoint);
    let id = r.body["client_id"].as_str().unwrap();
    let stored = h.store.clients().get_client(id).await.unwrap().unwrap();
    assert_eq!(
        stored.backchannel_client_notification_endpoint.as_deref(),
        Some(endpoint)
    );
}

fn ping_to(endpoint: &str) -> Value {
    json!({
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": endpoint,
    })
}

#[tokio::test]
async fn http_notification_endpoint_is_refused_for_a_public_issuer() {
    let h = open().await;
    for endpoint in [
        "http://rp.example.com/ciba/notify",
        "http://127.0.0.1:3000/ciba/notify",
        "http://localhost:3000/ciba/notify",
    ] {
        expect_metadata_error(&register(&h, &ping_to(endpoint)).await);
    }
}

#[tokio::test]
async fn http_loopback_notification_endpoint_is_accepted_when_the_op_runs_locally() {
    let h = harness_with("http://127.0.0.1:8080", Registration::Open).await;
    let r = register(&h, &ping_to("http://127.0.0.1:3000/ciba/notify")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = register(&h, &ping_to("http://rp.example.com/ciba/notify")).await;
    expect_metadata_error(&r);
}

/// Registers a ping client at `endpoint` with a public OP and answers the error description.
async fn refusal_of(h: &Harness, endpoint: &str) -> String {
    let r = register(h, &ping_to(endpoint)).await;
    expect_metadata_error(&r);
    r.body["error_description"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_public_op_refuses_the_metadata_service_by_address() {
    let h = open().await;
    let why = refusal_of(&h, "https://169.254.169.254/latest/meta-data/").await;
    assert!(why.contains("not an IP address"), "{why}");
}

#[tokio::test]
async fn a_public_op_refuses_a_private_ipv4_endpoint() {
    let h = open().await;
    for endpoint in ["https://10.0.0.1/", "https://192.168.1.1/"] {
        let why = refusal_of(&h, endpoint).await;
        assert!(why.contains("not an IP address"), "{endpoint}: {why}");
    }
}

#[tokio::test]
async fn a_public_op_refuses_an_ipv4_mapped_ipv6_endpoint() {
    let h = open().await;
    let why = refusal_of(&h, "https://[::ffff:169.254.169.254]/").await;
    assert!(why.contains("not an IP address"), "{why}");
}

#[tokio::test]
async fn a_public_op_refuses_loopback_spelt_as_a_number() {
    let h = open().await;
    for endpoint in ["https://0x7f.1/", "https://2130706433/"] {
        let why = refusal_of(&h, endpoint).await;
        assert!(why.contains("not an IP address"), "{endpoint}: {why}");
    }
}

#[tokio::test]
async fn a_public_op_refuses_an_internal_name() {
    let h = open().await;
    let why = refusal_of(&h, "https://metadata.google.internal/computeMetadata/v1/").await;
    assert!(why.contains("not a local, internal"), "{why}");
}

#[tokio::test]
async fn a_public_op_refuses_an_endpoint_with_userinfo() {
    let h = open().await;
    let why = refusal_of(&h, "https://user:pw@host/").await;
    assert!(why.contains("user name or password"), "{why}");
}

#[tokio::test]
async fn a_public_op_refuses_a_name_resolving_to_a_private_address() {
    let mut h = open().await;
    let mut ctx = h.api.ctx.clone();
    ctx.resolver = Arc::new(
        StaticResolver::default()
            .with("rp.example.com", &["10.0.0.5"])
            .with("cdn.example.com", &["93.184.216.34"]),
    );
    h.api = Arc::new(LocalApi::new(ctx, h.pushes.clone()));
    let why = refusal_of(&h, "https://rp.example.com/ciba/notify").await;
    assert!(
        why.contains("resolves to an address that is not public"),
        "{why}"
    );
    let r = register(&h, &ping_to("https://cdn.example.com/ciba/notify")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn an_op_that_runs_locally_keeps_accepting_loopback_endpoints() {
    let h = harness_with("http://127.0.0.1:8080", Registration::Open).await;
    for endpoint in [
        "http://localhost:3000/ciba/notify",
        "https://127.0.0.1:3443/ciba/notify",
    ] {
        let r = register(&h, &ping_to(endpoint)).await;
        assert_eq!(r.status, 201, "{endpoint}: {:?}", r.body);
    }
}

#[tokio::test]
async fn notification_endpoint_with_fragment_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(&h, &ping_to("https://rp.example.com/notify#frag")).await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn relative_notification_endpoint_is_invalid_client_metadata() {
    let h = open().await;
    expect_metadata_error(&register(&h, &ping_to("/ciba/notify")).await);
}

#[tokio::test]
async fn request_signing_alg_other_than_es256_or_ps256_is_invalid_client_metadata() {
    let h = open().await;
    let mut metadata = poll_client_with("jwks", rp_jwks());
    metadata["backchannel_authentication_request_signing_alg"] = json!("RS256");
    expect_metadata_error(&register(&h, &metadata).await);
}

#[tokio::test]
async fn request_signing_alg_without_jwks_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with(
            "backchannel_authentication_request_signing_alg",
            json!("ES256"),
        ),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn request_signing_alg_without_a_key_of_its_type_is_invalid_client_metadata() {
    let h = open().await;
    let mut metadata = poll_client_with("jwks", rp_jwks());
    metadata["backchannel_authentication_request_signing_alg"] = json!("PS256");
    expect_metadata_error(&register(&h, &metadata).await);
}

#[tokio::test]
async fn ps256_request_signing_with_an_rsa_key_is_registered() {
    let h = open().await;
    let mut metadata = poll_client_with("jwks", json!({"keys": [rsa_jwk(2048)]}));
    metadata["backchannel_authentication_request_signing_alg"] = json!("PS256");
    let r = register(&h, &metadata).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["backchannel_authentication_request_signing_alg"],
        "PS256"
    );
}

#[tokio::test]
async fn rsa_key_under_2048_bits_is_invalid_client_metadata() {
    let h = open().await;
    let jwks = json!({"keys": [rsa_jwk(1024)]});
    expect_metadata_error(&register(&h, &poll_client_with("jwks", jwks)).await);
}

#[tokio::test]
async fn ec_key_off_the_p256_curve_is_invalid_client_metadata() {
    let h = open().await;
    let mut jwks = rp_jwks();
    jwks["keys"][0]["y"] = jwks["keys"][0]["x"].clone();
    expect_metadata_error(&register(&h, &poll_client_with("jwks", jwks)).await);
}

#[tokio::test]
async fn non_boolean_user_code_parameter_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("backchannel_user_code_parameter", json!("true")),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn user_code_parameter_is_registered() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("backchannel_user_code_parameter", json!(true)),
    )
    .await;
    assert_eq!(r.body["backchannel_user_code_parameter"], true);
    let id = r.body["client_id"].as_str().unwrap();
    assert!(
        h.store
            .clients()
            .get_client(id)
            .await
            .unwrap()
            .unwrap()
            .backchannel_user_code_parameter
    );
}

#[tokio::test]
async fn unsupported_token_endpoint_auth_method_is_invalid_client_metadata() {
    let h = open().await;
    for method in ["none", "client_secret_jwt", "tls_client_auth"] {
        let r = register(
            &h,
            &poll_client_with("token_endpoint_auth_method", json!(method)),
        )
        .await;
        expect_metadata_error(&r);
    }
}

#[tokio::test]
async fn private_key_jwt_without_jwks_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("token_endpoint_auth_method", json!("private_key_jwt")),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn jwks_with_private_key_is_invalid_client_metadata() {
    let h = open().await;
    let mut jwks = rp_jwks();
    jwks["keys"][0]["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    expect_metadata_error(&register(&h, &poll_client_with("jwks", jwks)).await);
}

#[tokio::test]
async fn jwks_with_symmetric_key_is_invalid_client_metadata() {
    let h = open().await;
    let jwks = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]});
    expect_metadata_error(&register(&h, &poll_client_with("jwks", jwks)).await);
}

#[tokio::test]
async fn empty_jwks_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(&h, &poll_client_with("jwks", json!({"keys": []}))).await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn jwks_that_is_not_a_jwk_set_is_invalid_client_metadata() {
    let h = open().await;
    let key = rp_jwks()["keys"][0].clone();
    for jwks in [
        key.clone(),
        json!([key]),
        json!({"keys": [{"kty": "EC", "crv": "P-256"}]}),
    ] {
        expect_metadata_error(&register(&h, &poll_client_with("jwks", jwks)).await);
    }
}

#[tokio::test]
async fn jwks_uri_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("jwks_uri", json!("https://rp.example.com/jwks")),
    )
    .await;
    expect_metadata_error(&r);
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("jwks")
    );
}

#[tokio::test]
async fn grant_types_without_the_ciba_grant_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("grant_types", json!(["refresh_token"])),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn grant_types_with_another_grant_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("grant_types", json!([CIBA_GRANT, "authorization_code"])),
    )
    .await;
    expect_metadata_error(&r);
}

#[tokio::test]
async fn grant_types_with_refresh_token_is_registered() {
    let h = open().await;
    let grants = json!([CIBA_GRANT, "refresh_token"]);
    let r = register(&h, &poll_client_with("grant_types", grants.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["grant_types"], grants);
}

#[tokio::test]
async fn client_name_of_201_characters_is_invalid_client_metadata() {
    let h = open().await;
    let r = register(&h, &poll_client_with("client_name", json!("x".repeat(201)))).await;
    expect_metadata_error(&r);
    let r = register(&h, &poll_client_with("client_name", json!("é".repeat(200)))).await;
    assert_eq!(r.status, 201, "200 characters are fine: {:?}", r.body);
}

#[tokio::test]
async fn metadata_of_the_wrong_type_is_invalid_client_metadata() {
    let h = open().await;
    for (name, value) in [
        ("client_name", json!(42)),
        ("backchannel_token_delivery_mode", json!(["poll"])),
        ("token_endpoint_auth_method", json!(true)),
        ("grant_types", json!(CIBA_GRANT)),
        ("jwks", json!("keys")),
    ] {
        expect_metadata_error(&register(&h, &poll_client_with(name, value)).await);
    }
}

#[tokio::test]
async fn http_redirect_uri_is_invalid_redirect_uri() {
    let h = open().await;
    let r = register(
        &h,
        &poll_client_with("redirect_uris", json!(["http://rp.example.com/cb"])),
    )
    .await;
    r.expect_error(400, "invalid_redirect_uri");
}

#[tokio::test]
async fn redirect_uris_that_are_not_absolute_urls_are_invalid_redirect_uri() {
    let h = open().await;
    for uris in [
        json!("https://rp.example.com/cb"),
        json!(["/cb"]),
        json!([7]),
    ] {
        let r = register(&h, &poll_client_with("redirect_uris", uris)).await;
        r.expect_error(400, "invalid_redirect_uri");
    }
}

#[tokio::test]
async fn unknown_metadata_is_ignored() {
    let h = open().await;
    let mut metadata = poll_client_with("logo_uri", json!("https://rp.example.com/logo.png"));
    metadata["software_statement_extra"] = json!({"x": 1});
    let r = register(&h, &metadata).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("logo_uri").is_none());
}

#[tokio::test]
async fn form_encoded_registration_is_invalid_request() {
    let h = open().await;
    let req =
        HttpRequest::new("POST", "/register").form(&[("backchannel_token_delivery_mode", "poll")]);
    h.send(req).await.expect_error(400, "invalid_request");
}

#[tokio::test]
async fn malformed_json_is_invalid_request() {
    let h = open().await;
    for body in ["{\"backchannel_token_delivery_mode\": ", "[]", "\"poll\""] {
        let req = HttpRequest::new("POST", "/register").body("application/json", body);
        h.send(req).await.expect_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn invalid_registration_writes_nothing() {
    let h = open().await;
    let mut ctx = h.api.ctx.clone();
    ctx.random = Arc::new(CountingRandom::default());
    let h = Harness {
        api: Arc::new(LocalApi::new(ctx, h.pushes.clone())),
        ..h
    };
    // The id the next registration mints: the first 16 bytes of a fresh counter.
    let next_id = CountingRandom::default().token(16);

    // Every field is valid but the last one checked.
    let r = register(
        &h,
        &json!({
            "backchannel_token_delivery_mode": "push",
            "backchannel_client_notification_endpoint": "https://rp.example.com/notify",
            "client_name": "Almost Valid",
            "redirect_uris": ["http://rp.example.com/cb"],
        }),
    )
    .await;
    r.expect_error(400, "invalid_redirect_uri");
    assert!(!is_registered(&h, &next_id).await);

    let r = register(&h, &poll_client()).await;
    assert_eq!(r.body["client_id"], next_id.as_str());
    assert!(is_registered(&h, &next_id).await);
}

#[tokio::test]
async fn oversized_registration_is_invalid_request() {
    let h = open().await;
    let r = register(&h, &poll_client_with("extra", json!("x".repeat(70_000)))).await;
    r.expect_error(400, "invalid_request");
}

/// Whether a client with this id is stored.
async fn is_registered(h: &Harness, client_id: &str) -> bool {
    h.store
        .clients()
        .get_client(client_id)
        .await
        .unwrap()
        .is_some()
}
