//! The FAPI-CIBA client profile on both stores: the seeded FAPI client's whole flow (signed
//! request object with a binding message, client assertion, DPoP-bound tokens), and each rule it
//! is held to, refused with its documented error.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use ciba_local::event::HttpRequest;
use ciba_shared::config::Registration;
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random, public_jwk_with_kid};
use common::{CIBA_GRANT, Harness, ISSUER, Reply, key, reconfigured};
use serde_json::{Value, json};

on_both_stores!(
    a_fapi_client_gets_dpop_bound_tokens_end_to_end,
    a_fapi_client_without_a_dpop_proof_gets_no_tokens,
    a_fapi_client_must_sign_its_request_and_send_a_binding_message,
    registration_refuses_what_the_fapi_profile_forbids,
    an_op_that_is_fapi_by_default_holds_every_client_to_the_profile,
);

const CLIENT: &str = "demo-fapi-ciba";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn assertion(h: &Harness) -> String {
    let now = h.now();
    jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "JWT"}),
        &json!({
            "iss": CLIENT, "sub": CLIENT, "aud": ISSUER,
            "iat": now, "exp": now + 60, "jti": OsRandom.token(12)
        }),
    )
}

fn request_object(h: &Harness, binding_message: Option<&str>) -> String {
    let now = h.now();
    let mut claims = json!({
        "iss": CLIENT, "aud": ISSUER, "iat": now, "nbf": now, "exp": now + 300,
        "jti": OsRandom.token(12), "scope": "openid email", "login_hint": "alice",
    });
    if let Some(message) = binding_message {
        claims["binding_message"] = message.into();
    }
    jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "oauth-authz-req+jwt"}),
        &claims,
    )
}

async fn bc_authorize(h: &Harness, params: &[(&str, &str)]) -> Reply {
    let assertion = assertion(h);
    let mut form = vec![
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];
    form.extend_from_slice(params);
    h.send(HttpRequest::new("POST", "/bc-authorize").form(&form))
        .await
}

fn dpop_proof(h: &Harness) -> String {
    let (_, mut jwk) =
        public_jwk_with_kid(&p256::PublicKey::from(key("alice-phone").verifying_key()));
    jwk.as_object_mut().unwrap().remove("kid");
    jose::sign_with_key(
        &key("alice-phone"),
        &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": jwk}),
        &json!({"htm": "POST", "htu": format!("{ISSUER}/token"), "iat": h.now(), "jti": OsRandom.token(12)}),
    )
}

async fn poll(h: &Harness, auth_req_id: &str, dpop: Option<&str>) -> Reply {
    let assertion = assertion(h);
    let mut req = HttpRequest::new("POST", "/token").form(&[
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", auth_req_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
    ]);
    if let Some(proof) = dpop {
        req = req.header("dpop", proof);
    }
    h.send(req).await
}

async fn approved_request(h: &Harness) -> String {
    let r = bc_authorize(
        h,
        &[(
            "request",
            &request_object(h, Some("Pay 12.50 EUR to Demo Bank")),
        )],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    r.body["auth_req_id"].as_str().unwrap().to_owned()
}

async fn a_fapi_client_gets_dpop_bound_tokens_end_to_end(h: Harness) {
    let id = approved_request(&h).await;
    let t = poll(&h, &id, Some(&dpop_proof(&h))).await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(t.body["token_type"], "DPoP");
    let access = t.body["access_token"].as_str().unwrap();
    h.userinfo(access).await.expect_error(401, "invalid_token");
    let pushed = h.pushes.sent_to("user-alice");
    assert_eq!(
        pushed.last().unwrap().message.binding_message.as_deref(),
        Some("Pay 12.50 EUR to Demo Bank")
    );
}

async fn a_fapi_client_without_a_dpop_proof_gets_no_tokens(h: Harness) {
    let id = approved_request(&h).await;
    poll(&h, &id, None)
        .await
        .expect_error(400, "invalid_request");
    // The request is still there for a proper token request.
    assert_eq!(poll(&h, &id, Some(&dpop_proof(&h))).await.status, 200);
}

async fn a_fapi_client_must_sign_its_request_and_send_a_binding_message(h: Harness) {
    bc_authorize(
        &h,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", "Hi"),
        ],
    )
    .await
    .expect_error(400, "invalid_request");
    bc_authorize(&h, &[("request", &request_object(&h, None))])
        .await
        .expect_error(400, "invalid_binding_message");
    // An unsigned request object.
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": CLIENT, "aud": ISSUER, "scope": "openid", "login_hint": "alice",
               "binding_message": "Hi", "iat": h.now(), "exp": h.now() + 60, "jti": "u"})
        .to_string(),
    );
    bc_authorize(&h, &[("request", &format!("{header}.{claims}."))])
        .await
        .expect_error(400, "invalid_request");
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

async fn registration_refuses_what_the_fapi_profile_forbids(h: Harness) {
    let h = reconfigured(h, |c| c.registration = Registration::Open);
    let jwks = json!({"keys": [public_jwk_with_kid(
        &p256::PublicKey::from(key("demo-fapi-rp").verifying_key())
    ).1]});
    let register = |body: Value| {
        let req = HttpRequest::new("POST", "/register").body("application/json", body.to_string());
        h.send(req)
    };
    let good = json!({
        "fapi": true,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks,
        "backchannel_token_delivery_mode": "poll",
        "backchannel_authentication_request_signing_alg": "ES256",
    });
    let r = register(good.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let with = |change: Value| {
        let mut body = good.clone();
        body.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        body
    };
    for (rule, body) in [
        (
            "client_secret_basic",
            with(json!({"token_endpoint_auth_method": "client_secret_basic"})),
        ),
        (
            "push mode",
            with(json!({
                "backchannel_token_delivery_mode": "push",
                "backchannel_client_notification_endpoint": "http://127.0.0.1:9/cb",
            })),
        ),
        (
            "unsigned requests",
            with(json!({"backchannel_authentication_request_signing_alg": null})),
        ),
    ] {
        let r = register(body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_client_metadata"),
            "{rule}: {:?}",
            r.body
        );
    }
}

async fn an_op_that_is_fapi_by_default_holds_every_client_to_the_profile(h: Harness) {
    let h = reconfigured(h, |c| {
        c.fapi_by_default = true;
        c.registration = Registration::Open;
    });
    // demo-rp authenticates with a client secret: the right one, and still refused.
    h.bc_authorize(&[
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("binding_message", "Hi"),
    ])
    .await
    .expect_error(401, "invalid_client");
    let req = HttpRequest::new("POST", "/register").body(
        "application/json",
        json!({"backchannel_token_delivery_mode": "poll"}).to_string(),
    );
    h.send(req)
        .await
        .expect_error(400, "invalid_client_metadata");
    // The FAPI client itself is unaffected; a resource server is outside the profile.
    let id = approved_request(&h).await;
    let t = poll(&h, &id, Some(&dpop_proof(&h))).await;
    assert_eq!(t.status, 200);
    let req = HttpRequest::new("POST", "/introspect")
        .header(
            "authorization",
            &Harness::basic("demo-api", "demo-api-secret"),
        )
        .form(&[("token", t.body["access_token"].as_str().unwrap())]);
    assert_eq!(h.send(req).await.body["active"], true);
}
