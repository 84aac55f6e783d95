//! Transaction approval (RFC 9396): `authorization_details` at /bc-authorize, as a form field or
//! a request-object claim, checked against the JSON Schema of their type; the approved details
//! come back with the tokens, in introspection and in JWT access tokens, and refreshed tokens
//! carry them on. Every scenario runs on the in-memory store and on DynamoDB Local.

mod common;

use ciba_local::event::HttpRequest;
use common::{Harness, Reply};
use serde_json::{Value, json};

on_both_stores!(
    an_approved_payment_comes_back_with_the_tokens_and_in_introspection,
    details_in_a_request_object_are_a_json_array_claim,
    invalid_details_are_invalid_authorization_details_and_change_nothing,
    a_client_registered_for_some_types_may_not_request_others,
    refreshed_tokens_carry_the_approved_details,
    a_jwt_access_token_carries_the_approved_details,
);

fn payment() -> Value {
    json!([{
        "type": "payment_initiation",
        "actions": ["initiate"],
        "instructedAmount": {"currency": "GBP", "amount": "50.00"},
        "creditorName": "Savings",
        "creditorAccount": {"iban": "GB33BUKB20201555555555"},
        "remittanceInformationUnstructured": "Transfer from Main"
    }])
}

async fn start_with(h: &Harness, details: &str) -> Reply {
    h.bc_authorize(&[
        ("scope", "openid email"),
        ("login_hint", "alice"),
        ("binding_message", "Pay 50.00 GBP to Savings"),
        ("authorization_details", details),
    ])
    .await
}

/// A payment approved by alice: the token response.
async fn approved_payment(h: &Harness) -> Value {
    let started = start_with(h, &payment().to_string()).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h.poll(started.body["auth_req_id"].as_str().unwrap()).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    tokens.body
}

/// `token` introspected by `caller` (`demo-api`, the resource server, sees every access token;
/// a client sees its own tokens).
async fn introspect_as(h: &Harness, caller: (&str, &str), token: &str) -> Value {
    let req = HttpRequest::new("POST", "/introspect")
        .header("authorization", &Harness::basic(caller.0, caller.1))
        .form(&[("token", token)]);
    let reply = h.send(req).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

async fn introspect(h: &Harness, token: &str) -> Value {
    introspect_as(h, ("demo-api", "demo-api-secret"), token).await
}

async fn an_approved_payment_comes_back_with_the_tokens_and_in_introspection(h: Harness) {
    let discovery = h
        .send(HttpRequest::new("GET", "/.well-known/openid-configuration"))
        .await;
    assert_eq!(
        discovery.body["authorization_details_types_supported"],
        json!(["payment_initiation", "generic"])
    );
    let tokens = approved_payment(&h).await;
    assert_eq!(tokens["authorization_details"], payment());
    let access = introspect(&h, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(access["active"], true);
    assert_eq!(access["authorization_details"], payment());
    let refresh = introspect_as(
        &h,
        ("demo-rp", "demo-rp-secret"),
        tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(refresh["token_type"], "refresh_token");
    assert_eq!(refresh["authorization_details"], payment());

    // Without details, nothing is added.
    let plain = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h.poll(plain.body["auth_req_id"].as_str().unwrap()).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert!(tokens.body.get("authorization_details").is_none());
}

async fn details_in_a_request_object_are_a_json_array_claim(h: Harness) {
    let mut claims = h.request_claims();
    claims["authorization_details"] = payment();
    let started = h.bc_authorize_signed(&h.sign_request(&claims)).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let id = started.body["auth_req_id"].as_str().unwrap();
    let tokens = h.poll_signed(id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert_eq!(tokens.body["authorization_details"], payment());

    // The form field may not stand beside a request object.
    let ro = h.sign_request(&h.request_claims());
    let req = HttpRequest::new("POST", "/bc-authorize").form(&[
        ("request", ro.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &h.client_assertion()),
        ("authorization_details", &payment().to_string()),
    ]);
    h.send(req).await.expect_error(400, "invalid_request");

    // A claim that is neither an array nor its text is refused as such.
    let mut claims = h.request_claims();
    claims["authorization_details"] = json!({"type": "generic", "description": "one object"});
    h.bc_authorize_signed(&h.sign_request(&claims))
        .await
        .expect_error(400, "invalid_authorization_details");
}

async fn invalid_details_are_invalid_authorization_details_and_change_nothing(h: Harness) {
    let mut hidden_fee = payment();
    hidden_fee[0]["fee"] = json!("100.00");
    let mut float_amount = payment();
    float_amount[0]["instructedAmount"]["amount"] = json!(50.0);
    let mut no_creditor = payment();
    no_creditor[0]
        .as_object_mut()
        .unwrap()
        .remove("creditorAccount");
    let mut reversed = payment();
    reversed[0]["creditorName"] = json!("Savings \u{202E}sgnivaS");
    for details in [
        "not json".to_owned(),
        json!({"type": "generic", "description": "not in an array"}).to_string(),
        "[]".to_owned(),
        json!([{"type": "account_information"}]).to_string(),
        hidden_fee.to_string(),
        float_amount.to_string(),
        no_creditor.to_string(),
        reversed.to_string(),
        json!([{"type": "generic"}]).to_string(),
    ] {
        let reply = start_with(&h, &details).await;
        reply.expect_error(400, "invalid_authorization_details");
        assert!(
            !reply.body["error_description"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{details}: {:?}",
            reply.body
        );
    }
    assert!(
        h.pushes.sent_to("user-alice").is_empty(),
        "no push was sent"
    );

    // An OP configured without payments refuses them.
    let h = common::reconfigured(h, |config| {
        config.authorization_details_types = vec!["generic".into()];
    });
    start_with(&h, &payment().to_string())
        .await
        .expect_error(400, "invalid_authorization_details");
    let generic = json!([{"type": "generic", "description": "Let Travel Agent book LIS-LHR"}]);
    assert_eq!(start_with(&h, &generic.to_string()).await.status, 200);
}

async fn a_client_registered_for_some_types_may_not_request_others(h: Harness) {
    let clients = h.api.ctx.store.clients();
    let mut client = clients.get_client("demo-rp").await.unwrap().unwrap();
    client.authorization_details_types = Some(vec!["generic".into()]);
    clients.put_client(&client).await.unwrap();
    let reply = start_with(&h, &payment().to_string()).await;
    reply.expect_error(400, "invalid_authorization_details");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("this client may not request"),
        "{:?}",
        reply.body
    );
    let generic = json!([{"type": "generic", "description": "Share my address with Shop"}]);
    assert_eq!(start_with(&h, &generic.to_string()).await.status, 200);
}

async fn refreshed_tokens_carry_the_approved_details(h: Harness) {
    let tokens = approved_payment(&h).await;
    let req = HttpRequest::new("POST", "/token")
        .header(
            "authorization",
            &Harness::basic("demo-rp", "demo-rp-secret"),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ]);
    let refreshed = h.send(req).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["authorization_details"], payment());
    let access = introspect(&h, refreshed.body["access_token"].as_str().unwrap()).await;
    assert_eq!(access["authorization_details"], payment());
}

async fn a_jwt_access_token_carries_the_approved_details(h: Harness) {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header(
            "authorization",
            &Harness::basic("demo-jwt", "demo-jwt-secret"),
        )
        .form(&[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("authorization_details", &payment().to_string()),
        ]);
    let started = h.send(req).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h
        .poll_as(
            "demo-jwt",
            "demo-jwt-secret",
            started.body["auth_req_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(h.jwks().await).unwrap();
    let access = tokens.body["access_token"].as_str().unwrap();
    let verified = ciba_shared::jose::verify(access, &jwks, &[jsonwebtoken::Algorithm::ES256])
        .expect("the JWT access token verifies with /jwks");
    assert_eq!(verified.claims["authorization_details"], payment());
}
