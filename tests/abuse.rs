//! Issue 13's attacks, each replayed through the local API on both stores: guessing a
//! `user_code`, flooding a user's phone with requests, identifiers too long for a DynamoDB key,
//! text that reorders or hides what the phone shows, and a request object made long ago.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciba_local::event::HttpRequest;
use ciba_shared::jose;
use common::{Harness, ISSUER, key};
use serde_json::json;

on_both_stores!(
    guessing_the_user_code_is_locked_after_five_failures_and_pushes_nothing,
    a_right_user_code_clears_the_failures,
    acr_values_are_bounded_and_only_a_supported_one_is_asserted,
    another_clients_wrong_user_codes_do_not_lock_this_clients_right_one,
    more_than_five_pending_requests_per_user_and_client_are_refused_without_a_push,
    a_decided_request_makes_room_for_another,
    an_overlong_login_hint_is_invalid_request,
    an_overlong_basic_client_id_is_invalid_client,
    an_overlong_auth_req_id_is_invalid_grant,
    an_overlong_decision_kid_is_invalid_request,
    an_overlong_decision_jti_is_invalid_request,
    an_overlong_request_object_jti_is_invalid_request,
    an_overlong_client_assertion_jti_is_invalid_client,
    a_bidirectional_override_in_binding_message_is_refused,
    a_zero_width_space_in_binding_message_is_refused,
    a_request_object_issued_long_ago_is_refused,
    a_request_object_without_nbf_is_refused,
    a_jws_with_a_critical_header_is_refused,
    a_client_assertion_audience_with_a_foreign_member_is_refused,
    a_repeated_member_name_is_refused_in_details_and_request_objects,
);

/// bc-authorize as demo-pos, which requires alice's user_code (4321).
async fn with_user_code(h: &Harness, code: &str) -> common::Reply {
    let req = HttpRequest::new("POST", "/bc-authorize").form(&[
        ("client_id", "demo-pos"),
        ("client_secret", "demo-pos-secret"),
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("user_code", code),
    ]);
    h.send(req).await
}

async fn guessing_the_user_code_is_locked_after_five_failures_and_pushes_nothing(h: Harness) {
    for guess in ["0000", "0001", "0002", "0003", "0004"] {
        with_user_code(&h, guess)
            .await
            .expect_error(400, "invalid_user_code");
    }
    // The sixth attempt is refused before the code is looked at: the right one too.
    with_user_code(&h, "4321")
        .await
        .expect_error(403, "access_denied");
    assert!(h.pushes.sent_to("user-alice").is_empty());
    h.clock.advance_secs(899);
    with_user_code(&h, "4321")
        .await
        .expect_error(403, "access_denied");
    h.clock.advance_secs(1);
    let after = with_user_code(&h, "4321").await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(h.pushes.sent_to("user-alice").len(), 1);
}

/// Review finding 4: failures are counted per client and user. Another client that registered
/// `backchannel_user_code_parameter` guessing alice's code until it is locked out must not lock
/// demo-pos's right code, nor may demo-pos's failures lock it.
async fn another_clients_wrong_user_codes_do_not_lock_this_clients_right_one(h: Harness) {
    let guesser = ciba_shared::domain::Client {
        client_id: "guesser".into(),
        client_name: Some("Guessing shop".into()),
        client_secret_hash: Some(ciba_shared::secret::hash("guesser-secret")),
        token_endpoint_auth_method: ciba_shared::domain::AuthMethod::ClientSecretPost,
        jwks: None,
        backchannel_token_delivery_mode: ciba_shared::domain::DeliveryMode::Poll,
        backchannel_client_notification_endpoint: None,
        backchannel_authentication_request_signing_alg: None,
        backchannel_user_code_parameter: true,
        resource_server: false,
        access_token_format: Default::default(),
        fapi: false,
        authorization_details_types: None,
        tls: Default::default(),
    };
    h.store.clients().put_client(&guesser).await.unwrap();
    let guess = |code: &'static str| {
        h.send(HttpRequest::new("POST", "/bc-authorize").form(&[
            ("client_id", "guesser"),
            ("client_secret", "guesser-secret"),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("user_code", code),
        ]))
    };
    for code in ["0000", "0001", "0002", "0003", "0004"] {
        guess(code).await.expect_error(400, "invalid_user_code");
    }
    guess("4321").await.expect_error(403, "access_denied");
    // demo-pos has not failed: its right code is taken at once, and pushed.
    let pos = with_user_code(&h, "4321").await;
    assert_eq!(pos.status, 200, "{:?}", pos.body);
    assert_eq!(h.pushes.sent_to("user-alice").len(), 1);
    // And demo-pos's own failures count for demo-pos alone.
    for code in ["0000", "0001", "0002", "0003", "0004"] {
        with_user_code(&h, code)
            .await
            .expect_error(400, "invalid_user_code");
    }
    with_user_code(&h, "4321")
        .await
        .expect_error(403, "access_denied");
}

async fn a_right_user_code_clears_the_failures(h: Harness) {
    for guess in ["0000", "0001", "0002", "0003"] {
        with_user_code(&h, guess)
            .await
            .expect_error(400, "invalid_user_code");
    }
    assert_eq!(with_user_code(&h, "4321").await.status, 200);
    for guess in ["0000", "0001", "0002", "0003", "0004"] {
        with_user_code(&h, guess)
            .await
            .expect_error(400, "invalid_user_code");
    }
}

/// Review finding 2: `acr_values` was unbounded (300 KB stored and pushed whole; a 500 on
/// DynamoDB past its item size) and echoed into the ID token whatever it named. Now at most 10
/// values of at most 255 characters, 2048 in all; discovery publishes `acr_values_supported`,
/// and the ID token's `acr` is the first requested value the OP supports, or none.
async fn acr_values_are_bounded_and_only_a_supported_one_is_asserted(h: Harness) {
    let ask = |acr: String| {
        h.send(
            HttpRequest::new("POST", "/bc-authorize")
                .header(
                    "authorization",
                    &Harness::basic("demo-rp", "demo-rp-secret"),
                )
                .form(&[
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                    ("acr_values", acr.as_str()),
                ]),
        )
    };
    let long = "a".repeat(300_000);
    let eleven = (0..11)
        .map(|i| format!("urn:acr:{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let value_too_long = format!("urn:example:acr:device {}", "b".repeat(256));
    for refused in [long, eleven, value_too_long, "urn:acr:\u{7f}x".to_owned()] {
        ask(refused).await.expect_error(400, "invalid_request");
    }
    assert!(
        h.pushes.sent_to("user-alice").is_empty(),
        "a refused request was pushed"
    );

    let discovery = h
        .send(HttpRequest::new("GET", "/.well-known/openid-configuration"))
        .await;
    let supported = discovery.body["acr_values_supported"].clone();
    assert!(
        supported
            .as_array()
            .is_some_and(|a| a.contains(&json!("urn:example:acr:device"))),
        "{supported}"
    );
    // Not supported: not asserted, never echoed; a supported one after it is.
    for (acr, asserted) in [
        ("urn:evil:acr:loa4", None),
        (
            "urn:evil:acr:loa4 urn:example:acr:device",
            Some("urn:example:acr:device"),
        ),
    ] {
        let started = ask(acr.to_owned()).await;
        assert_eq!(started.status, 200, "{:?}", started.body);
        let id = started.body["auth_req_id"].as_str().unwrap().to_owned();
        assert_eq!(h.alice_decides("approve").await.status, 204);
        h.clock.advance_secs(5);
        let tokens = h.poll_as("demo-rp", "demo-rp-secret", &id).await;
        assert_eq!(tokens.status, 200, "{:?}", tokens.body);
        let payload = tokens.body["id_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims.get("acr").and_then(|v| v.as_str()),
            asserted,
            "{claims}"
        );
    }
}

async fn more_than_five_pending_requests_per_user_and_client_are_refused_without_a_push(
    h: Harness,
) {
    for i in 0..5 {
        let r = h
            .bc_authorize(&[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("binding_message", &format!("N{i}")),
            ])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    h.bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await
        .expect_error(403, "access_denied");
    assert_eq!(h.pushes.sent_to("user-alice").len(), 5);
    // Another user of the same client is not affected.
    let bob = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "bob")])
        .await;
    assert_eq!(bob.status, 200, "{:?}", bob.body);
}

async fn a_decided_request_makes_room_for_another(h: Harness) {
    for _ in 0..5 {
        let r = h
            .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(h.alice_decides("deny").await.status, 204);
    let sixth = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_eq!(sixth.status, 200, "{:?}", sixth.body);
    // And expiry frees every slot.
    h.clock.advance_secs(600);
    let later = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_eq!(later.status, 200, "{:?}", later.body);
}

const LONG: usize = 2100;

async fn an_overlong_login_hint_is_invalid_request(h: Harness) {
    h.bc_authorize(&[("scope", "openid"), ("login_hint", &"a".repeat(LONG))])
        .await
        .expect_error(400, "invalid_request");
    let json_hint = json!({"format": "opaque", "id": "a".repeat(LONG)}).to_string();
    h.bc_authorize(&[("scope", "openid"), ("login_hint", &json_hint)])
        .await
        .expect_error(400, "invalid_request");
}

async fn an_overlong_basic_client_id_is_invalid_client(h: Harness) {
    let id = "c".repeat(LONG);
    let basic = format!("Basic {}", STANDARD.encode(format!("{id}:secret")));
    for path in ["/bc-authorize", "/token"] {
        let req = HttpRequest::new("POST", path)
            .header("authorization", &basic)
            .form(&[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("grant_type", common::CIBA_GRANT),
                ("auth_req_id", "x"),
            ]);
        h.send(req).await.expect_error(401, "invalid_client");
    }
    let req = HttpRequest::new("POST", "/token").form(&[
        ("client_id", &id),
        ("client_secret", "x"),
        ("grant_type", common::CIBA_GRANT),
        ("auth_req_id", "x"),
    ]);
    h.send(req).await.expect_error(401, "invalid_client");
}

async fn an_overlong_auth_req_id_is_invalid_grant(h: Harness) {
    h.poll(&"A".repeat(LONG))
        .await
        .expect_error(400, "invalid_grant");
    h.poll("not/an#id").await.expect_error(400, "invalid_grant");
}

async fn an_overlong_decision_kid_is_invalid_request(h: Harness) {
    let jwt = jose::sign_with_key(
        &key("alice-phone"),
        &json!({"alg": "ES256", "typ": "JWT", "kid": "k".repeat(LONG)}),
        &json!({"txn": "t", "action": "approve", "iat": h.now(), "exp": h.now() + 60, "jti": "j"}),
    );
    h.post_decision(&jwt)
        .await
        .expect_error(400, "invalid_request");
}

async fn an_overlong_decision_jti_is_invalid_request(h: Harness) {
    h.bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    let txn = h.latest_txn("user-alice");
    let jwt = jose::sign_with_key(
        &key("alice-phone"),
        &json!({"alg": "ES256", "typ": "JWT", "kid": "alice-phone"}),
        &json!({"txn": txn, "action": "approve", "iat": h.now(), "exp": h.now() + 60, "jti": "j".repeat(5000)}),
    );
    h.post_decision(&jwt)
        .await
        .expect_error(400, "invalid_request");
    let overlong_txn = jose::sign_with_key(
        &key("alice-phone"),
        &json!({"alg": "ES256", "typ": "JWT", "kid": "alice-phone"}),
        &json!({"txn": "t".repeat(LONG), "action": "approve", "iat": h.now(), "exp": h.now() + 60, "jti": "j2"}),
    );
    h.post_decision(&overlong_txn)
        .await
        .expect_error(400, "invalid_request");
}

async fn an_overlong_request_object_jti_is_invalid_request(h: Harness) {
    let mut claims = h.request_claims();
    claims["jti"] = json!("j".repeat(5000));
    h.bc_authorize_signed(&h.sign_request(&claims))
        .await
        .expect_error(400, "invalid_request");
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

async fn an_overlong_client_assertion_jti_is_invalid_client(h: Harness) {
    let now = h.now();
    let assertion = jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "JWT"}),
        &json!({
            "iss": "demo-fapi", "sub": "demo-fapi", "aud": format!("{ISSUER}/token"),
            "iat": now, "exp": now + 60, "jti": "j".repeat(5000)
        }),
    );
    let req = HttpRequest::new("POST", "/token").form(&[
        ("grant_type", common::CIBA_GRANT),
        ("auth_req_id", "x"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ]);
    h.send(req).await.expect_error(401, "invalid_client");
}

async fn a_bidirectional_override_in_binding_message_is_refused(h: Harness) {
    // Shown on the phone as "Pay 001 EUR", sent (and logged) as "Pay 100 EUR".
    h.bc_authorize(&[
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("binding_message", "Pay \u{202E}100\u{202C} EUR"),
    ])
    .await
    .expect_error(400, "invalid_binding_message");
    let mut claims = h.request_claims();
    claims["binding_message"] = json!("Pay to \u{2067}Mallory\u{2069}");
    h.bc_authorize_signed(&h.sign_request(&claims))
        .await
        .expect_error(400, "invalid_binding_message");
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

async fn a_zero_width_space_in_binding_message_is_refused(h: Harness) {
    h.bc_authorize(&[
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("binding_message", "Pay 10\u{200B}00 EUR"),
    ])
    .await
    .expect_error(400, "invalid_binding_message");
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

async fn a_request_object_issued_long_ago_is_refused(h: Harness) {
    for iat in [0, h.now() - 3601] {
        let mut claims = h.request_claims();
        claims["iat"] = json!(iat);
        h.bc_authorize_signed(&h.sign_request(&claims))
            .await
            .expect_error(400, "invalid_request");
    }
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

/// Review finding 7 and the FAPI-CIBA test plan: CIBA Core §7.1.1 lists `nbf` among the claims a
/// signed authentication request must contain (and FAPI-CIBA keeps `exp - nbf` within 60
/// minutes): a request object without it is refused, whatever the client's profile.
async fn a_request_object_without_nbf_is_refused(h: Harness) {
    let mut claims = h.request_claims();
    claims.as_object_mut().unwrap().remove("nbf");
    let refused = h.bc_authorize_signed(&h.sign_request(&claims)).await;
    refused.expect_error(400, "invalid_request");
    assert!(
        refused.body["error_description"]
            .as_str()
            .unwrap()
            .contains("nbf"),
        "{:?}",
        refused.body
    );
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

/// Review finding 8: RFC 7515 §4.1.11: a JWS whose `crit` names extensions the recipient does
/// not understand must be rejected; the OP understands none.
async fn a_jws_with_a_critical_header_is_refused(h: Harness) {
    let header = json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "crit": ["urn:example:must-check"],
                        "urn:example:must-check": true});
    let request = jose::sign_with_key(&key("demo-fapi-rp"), &header, &h.request_claims());
    h.bc_authorize_signed(&request)
        .await
        .expect_error(400, "invalid_request");
    let now = h.now();
    let assertion = jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "JWT", "crit": ["exp"]}),
        &json!({"iss": "demo-fapi", "sub": "demo-fapi", "aud": ISSUER,
                "iat": now, "exp": now + 60, "jti": format!("crit-{now}")}),
    );
    h.send(assertion_introspection(&assertion))
        .await
        .expect_error(401, "invalid_client");
    assert!(h.pushes.sent_to("user-alice").is_empty());
}

/// Review finding 9: a client assertion's `aud` names this OP (its issuer or the endpoint's
/// URL); an array with any other member is a token meant for someone else too, refused.
async fn a_client_assertion_audience_with_a_foreign_member_is_refused(h: Harness) {
    let now = h.now();
    let sign = |aud: serde_json::Value, jti: &str| {
        jose::sign_with_key(
            &key("demo-fapi-rp"),
            &json!({"alg": "ES256", "typ": "JWT"}),
            &json!({"iss": "demo-fapi", "sub": "demo-fapi", "aud": aud,
                    "iat": now, "exp": now + 60, "jti": jti}),
        )
    };
    let foreign = sign(json!([ISSUER, "https://evil.example"]), "aud-foreign");
    h.send(assertion_introspection(&foreign))
        .await
        .expect_error(401, "invalid_client");
    for (aud, jti) in [
        (json!(ISSUER), "aud-issuer"),
        (json!(format!("{ISSUER}/introspect")), "aud-endpoint"),
        (json!([ISSUER]), "aud-array-of-ours"),
    ] {
        let ok = h
            .send(assertion_introspection(&sign(aud.clone(), jti)))
            .await;
        assert_eq!(
            (ok.status, ok.body.clone()),
            (200, json!({"active": false})),
            "{aud}"
        );
    }
}

fn assertion_introspection(assertion: &str) -> HttpRequest {
    HttpRequest::new("POST", "/introspect").form(&[
        ("token", "no-such-token"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ])
}

/// Review finding 12: with a repeated member name the last one won, so the phone showed
/// "Mallory" where a first-wins parser (the RP's, an auditor's) reads "Savings Ltd". RFC 8785
/// needs I-JSON and RFC 7493 §2.3 forbids duplicates; RFC 7515 §5.2 forbids them in a JWS too.
async fn a_repeated_member_name_is_refused_in_details_and_request_objects(h: Harness) {
    let details = r#"[{"type":"payment_initiation","instructedAmount":{"currency":"GBP","amount":"50.00"},"creditorName":"Savings Ltd","creditorName":"Mallory","creditorAccount":{"iban":"GB33BUKB20201555555555"}}]"#;
    let started = h
        .send(
            HttpRequest::new("POST", "/bc-authorize")
                .header(
                    "authorization",
                    &Harness::basic("demo-rp", "demo-rp-secret"),
                )
                .form(&[
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                    ("authorization_details", details),
                ]),
        )
        .await;
    started.expect_error(400, "invalid_authorization_details");
    // A request object whose claims name login_hint twice, properly signed.
    let now = h.now();
    let header = r#"{"alg":"ES256","typ":"oauth-authz-req+jwt"}"#;
    let claims = format!(
        r#"{{"iss":"demo-fapi","aud":"{ISSUER}","iat":{now},"nbf":{now},"exp":{},"jti":"dup-{now}","scope":"openid","login_hint":"bob","login_hint":"alice@example.com","binding_message":"Order 1"}}"#,
        now + 300
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&key("demo-fapi-rp"), input.as_bytes());
    let request = format!("{input}.{}", b64(&signature.to_bytes()));
    h.bc_authorize_signed(&request)
        .await
        .expect_error(400, "invalid_request");
    assert!(h.pushes.sent_to("user-alice").is_empty());
    assert!(h.pushes.sent_to("user-bob").is_empty());
}
