//! Transaction approval (RFC 9396): `authorization_details` at /bc-authorize, as a form field or
//! a request-object claim, checked against the JSON Schema of their type; the approved details
//! come back with the tokens, in introspection and in JWT access tokens, and refreshed tokens
//! carry them on. The device fetches what it shows (`POST /device/transaction`) and signs its
//! `txn_hash` into the decision (dynamic linking); the decision is kept as evidence, and the ID
//! token, introspection and JWT access tokens carry `txn_approval`. Every scenario runs on the
//! in-memory store and on DynamoDB Local.

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
    the_device_fetches_what_it_shows_and_its_hash_links_the_approval,
    a_decision_must_carry_the_hash_of_exactly_what_was_shown,
    only_the_users_device_fetches_a_pending_transaction_each_jti_once,
    the_tokens_and_the_kept_evidence_prove_the_payment_and_the_device,
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

/// A payment pushed to alice: its `auth_req_id` and `txn`.
async fn pending_payment(h: &Harness) -> (String, String) {
    let started = start_with(h, &payment().to_string()).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let id = started.body["auth_req_id"].as_str().unwrap().to_owned();
    (id, h.latest_txn("user-alice"))
}

async fn the_device_fetches_what_it_shows_and_its_hash_links_the_approval(h: Harness) {
    let (_, txn) = pending_payment(&h).await;
    // The push carries the summary line and the txn, not the details.
    let push = h.pushes.sent_to("user-alice").pop().unwrap().message;
    assert_eq!(push.summary.as_deref(), Some("Pay 50.00 GBP to Savings"));
    let shown = h.transaction("alice-phone", "alice-phone", &txn).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["txn"], txn.as_str());
    assert_eq!(shown.body["summary"], "Pay 50.00 GBP to Savings");
    let request = h
        .store
        .requests()
        .get_auth_request_by_txn(&txn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shown.body["shown"],
        json!({
            "client_name": "Demo Bank (call centre)",
            "binding_message": "Pay 50.00 GBP to Savings",
            "scope": "openid email",
            "authorization_details": payment(),
            "expires_at": request.expires_at,
        })
    );
    assert!(
        shown.body.get("auth_req_id").is_none()
            && !shown.body.to_string().contains(&request.auth_req_id),
        "the device never sees the auth_req_id"
    );
    // The device hashes the canonical form of exactly that object: however its members are
    // ordered, the hash is the one the OP computes.
    let hash = ciba_shared::transaction::txn_hash(&shown.body["shown"]);
    let jwt = h.device_jws(
        "alice-phone",
        "alice-phone",
        json!({"txn": txn, "action": "approve", "txn_hash": hash}),
    );
    assert_eq!(h.post_decision(&jwt).await.status, 204);
    // Decided: no more details, 409 as for a second decision.
    let again = h.transaction("alice-phone", "alice-phone", &txn).await;
    again.expect_error(409, "invalid_request");
}

/// Alice's phone sends a decision of `claims`.
async fn decide(h: &Harness, claims: Value) -> Reply {
    let jwt = h.device_jws("alice-phone", "alice-phone", claims);
    h.post_decision(&jwt).await
}

async fn a_decision_must_carry_the_hash_of_exactly_what_was_shown(h: Harness) {
    let (id, txn) = pending_payment(&h).await;
    let shown = h.transaction("alice-phone", "alice-phone", &txn).await.body["shown"].clone();
    // What a tampered app or a man in the middle would have shown: another amount.
    let mut tampered = shown.clone();
    tampered["authorization_details"][0]["instructedAmount"]["amount"] = json!("5000.00");
    let wrong = ciba_shared::transaction::txn_hash(&tampered);
    let reply = decide(
        &h,
        json!({"txn": txn, "action": "approve", "txn_hash": wrong}),
    )
    .await;
    reply.expect_error(400, "invalid_request");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("txn_hash")
    );
    // No hash at all, or not a string: refused for an approval of details.
    decide(&h, json!({"txn": txn, "action": "approve"}))
        .await
        .expect_error(400, "invalid_request");
    decide(&h, json!({"txn": txn, "action": "approve", "txn_hash": 42}))
        .await
        .expect_error(400, "invalid_request");
    // None of that changed anything: the request is pending, and the right hash approves it.
    assert_eq!(h.poll(&id).await.error(), "authorization_pending");
    let right = ciba_shared::transaction::txn_hash(&shown);
    let reply = decide(
        &h,
        json!({"txn": txn, "action": "approve", "txn_hash": right}),
    )
    .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);

    // A denial needs no hash (it authorises nothing) but one it carries must match.
    let (_, txn) = pending_payment(&h).await;
    decide(&h, json!({"txn": txn, "action": "deny", "txn_hash": wrong}))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(
        decide(&h, json!({"txn": txn, "action": "deny"}))
            .await
            .status,
        204
    );

    // A request without details: the hash is optional, and checked when present.
    let plain = h
        .bc_authorize(&[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", "Sign in"),
        ])
        .await;
    assert_eq!(plain.status, 200);
    let txn = h.latest_txn("user-alice");
    decide(
        &h,
        json!({"txn": txn, "action": "approve", "txn_hash": wrong}),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(
        decide(&h, json!({"txn": txn, "action": "approve"}))
            .await
            .status,
        204
    );
}

async fn only_the_users_device_fetches_a_pending_transaction_each_jti_once(h: Harness) {
    let (_, txn) = pending_payment(&h).await;
    // Bob's phone: alice's txn is unknown to it, as a made-up one is.
    let reply = h.transaction("bob-phone", "bob-phone", &txn).await;
    reply.expect_error(400, "invalid_request");
    assert_eq!(reply.body["error_description"], "unknown txn");
    h.transaction("alice-phone", "alice-phone", "no-such-txn")
        .await
        .expect_error(400, "invalid_request");
    // Signed by another key than the device's.
    let forged = h.device_jws("bob-phone", "alice-phone", json!({"txn": txn}));
    let req =
        HttpRequest::new("POST", "/device/transaction").body("application/jwt", forged.clone());
    h.send(req).await.expect_error(400, "invalid_request");
    // The same JWS twice: the second is a replay.
    let jwt = h.device_jws(
        "alice-phone",
        "alice-phone",
        json!({"txn": txn, "jti": "once"}),
    );
    let send = || {
        let req =
            HttpRequest::new("POST", "/device/transaction").body("application/jwt", jwt.clone());
        h.send(req)
    };
    assert_eq!(send().await.status, 200);
    send().await.expect_error(400, "invalid_request");
    // Not a JWT, or not POST.
    let req = HttpRequest::new("POST", "/device/transaction").body("application/json", "{}");
    h.send(req).await.expect_error(400, "invalid_request");
    // Expired: expired_token, as the decision answers.
    h.clock.advance_secs(3600);
    h.transaction("alice-phone", "alice-phone", &txn)
        .await
        .expect_error(400, "expired_token");
}

fn id_token_claims(tokens: &Value) -> Value {
    use base64::Engine;
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn the_tokens_and_the_kept_evidence_prove_the_payment_and_the_device(h: Harness) {
    let tokens = approved_payment(&h).await;
    let id = id_token_claims(&tokens)["urn:openid:params:jwt:claim:auth_req_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = h
        .store
        .requests()
        .get_auth_request(&id)
        .await
        .unwrap()
        .unwrap();
    let evidence = request
        .evidence
        .clone()
        .expect("the decision is kept as evidence");
    // The ID token: the hash of what was shown, the decision's hash and the device key's
    // thumbprint, which the RP can check against what it sent.
    let approval = &id_token_claims(&tokens)["txn_approval"];
    let shown = json!({
        "client_name": "Demo Bank (call centre)",
        "binding_message": "Pay 50.00 GBP to Savings",
        "scope": "openid email",
        "authorization_details": payment(),
        "expires_at": approval["expires_at"],
    });
    assert_eq!(
        approval["txn_hash"],
        ciba_shared::transaction::txn_hash(&shown)
    );
    assert_eq!(
        approval["decision_hash"],
        ciba_shared::transaction::sha256(&evidence.decision_jws)
    );
    let alice_key = h
        .store
        .accounts()
        .get_device("alice-phone")
        .await
        .unwrap()
        .unwrap()
        .public_key;
    assert_eq!(
        approval["device_jkt"],
        ciba_shared::dpop::thumbprint(&alice_key).unwrap()
    );
    // Introspection says the same, for the API that moves the money.
    let access = introspect(&h, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(access["txn_approval"], *approval);
    assert_eq!(access["authorization_details"], payment());

    // The kept evidence verifies after redemption, and fails once anything in it is changed.
    let (report, verified) = ciba_shared::evidence::report(&request).unwrap();
    assert!(verified, "{report:#}");
    assert_eq!(report["status"], "redeemed");
    assert_eq!(report["txn_approval"], *approval);
    let mut other_amount = request.clone();
    other_amount.authorization_details.as_mut().unwrap()[0]["instructedAmount"]["amount"] =
        json!("5000.00");
    let (report, verified) = ciba_shared::evidence::report(&other_amount).unwrap();
    assert!(!verified);
    assert_eq!(report["checks"]["txn_hash_matches_what_was_shown"], false);
    let mut other_key = request.clone();
    other_key.evidence.as_mut().unwrap().device_key = h
        .store
        .accounts()
        .get_device("bob-phone")
        .await
        .unwrap()
        .unwrap()
        .public_key;
    let (report, verified) = ciba_shared::evidence::report(&other_key).unwrap();
    assert!(!verified);
    assert_eq!(
        report["checks"]["signature_verifies_under_the_device_key"],
        false
    );
    // The local API answers the same report (`ciba-admin evidence --api`).
    let reply = h
        .send(HttpRequest::new(
            "GET",
            &format!("/_local/evidence?auth_req_id={id}"),
        ))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["verified"], true);
}
