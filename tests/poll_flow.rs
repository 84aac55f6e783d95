//! The CIBA poll flow end to end over the real handlers: a relying party signs a request object,
//! POSTs /bc-authorize, the user's phone approves or denies, the RP polls /token and calls
//! /userinfo. Every scenario runs on the in-memory store and on DynamoDB Local.

mod common;

use ciba_local::event::HttpRequest;
use ciba_shared::jose;
use ciba_shared::secret;
use common::{CIBA_GRANT, Harness, ISSUER, key};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

on_both_stores!(
    signed_request_flow_issues_tokens_and_userinfo,
    secret_basic_flow_issues_tokens,
    request_object_without_aud_is_invalid_request,
    request_object_with_wrong_aud_is_invalid_request,
    request_object_with_wrong_iss_is_invalid_request,
    expired_request_object_is_invalid_request,
    request_object_expiring_70_minutes_ahead_is_invalid_request,
    request_object_without_iat_is_invalid_request,
    request_object_without_jti_is_invalid_request,
    replayed_request_object_jti_is_invalid_request,
    request_object_with_alg_none_is_invalid_request,
    request_object_signed_by_another_clients_key_is_invalid_request,
    two_hints_are_invalid_request,
    scope_without_openid_is_invalid_request,
    binding_message_of_101_characters_is_invalid_binding_message,
    unknown_user_is_unknown_user_id,
    user_code_is_stored_and_checked_as_a_keyed_hash,
    login_hint_may_be_an_rfc9493_subject_identifier,
    login_hint_subject_identifier_of_another_issuer_or_format_is_unknown_user_id,
    wrong_client_secret_is_401_with_basic_challenge,
    another_clients_auth_req_id_is_invalid_grant,
    polling_too_fast_is_slow_down,
    denied_request_is_access_denied,
    expired_request_is_expired_token,
    redeeming_twice_is_invalid_grant,
    fifty_concurrent_polls_yield_exactly_one_token_response,
    decision_signed_by_another_devices_key_is_refused,
    decision_for_another_users_txn_is_refused,
    replayed_decision_is_refused,
    second_decision_is_409,
    decision_after_expiry_is_expired_token,
    userinfo_with_unknown_token_is_401,
    refresh_token_rotates_and_reusing_the_old_one_revokes_the_family,
    another_clients_refresh_token_is_invalid_grant,
    refresh_may_narrow_but_not_widen_the_scope,
);

fn auth_req_id(reply: &common::Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["auth_req_id"].as_str().unwrap().to_owned()
}

/// Starts a demo-rp (client_secret_basic) request for alice.
async fn start(h: &Harness) -> String {
    let reply = h
        .bc_authorize(&[
            ("scope", "openid email"),
            ("login_hint", "alice"),
            ("binding_message", "W4SCT"),
        ])
        .await;
    auth_req_id(&reply)
}

async fn signed_request_flow_issues_tokens_and_userinfo(h: Harness) {
    let ro = h.sign_request(&h.request_claims());
    let reply = h.bc_authorize_signed(&ro).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let id = reply.body["auth_req_id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 22, "at least 128 bits");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    );
    assert_eq!(reply.body["expires_in"], 300, "requested_expiry honoured");
    assert_eq!(reply.body["interval"], 2);

    let pushes = h.pushes.sent_to("user-alice");
    assert_eq!(pushes.len(), 1);
    let message = serde_json::to_value(&pushes[0].message).unwrap();
    assert_eq!(message["binding_message"], "Order 1234: pay 12.50 EUR");
    assert_eq!(message["client_name"], "Demo Shop (FAPI-CIBA)");
    assert_eq!(message["scope"], "openid profile email");
    assert_eq!(message["expires_at"], h.now() + 300);
    assert!(
        !message.to_string().contains(&id),
        "the device never sees auth_req_id"
    );

    h.poll_signed(&id)
        .await
        .expect_error(400, "authorization_pending");
    h.clock.advance_secs(3);
    assert_eq!(h.alice_decides("approve").await.status, 204);

    let tokens = h.poll_signed(&id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert_eq!(tokens.headers["cache-control"], "no-store");
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["scope"], "openid profile email");
    let access = tokens.body["access_token"].as_str().unwrap();
    let refresh = tokens.body["refresh_token"].as_str().unwrap();
    assert!(tokens.body["expires_in"].as_i64().unwrap() > 0);

    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(h.jwks().await).unwrap();
    let id_token = tokens.body["id_token"].as_str().unwrap();
    let verified =
        jose::verify(id_token, &jwks, &[Algorithm::ES256]).expect("ID token verifies with /jwks");
    assert_eq!(
        verified.kid.as_deref(),
        jwks.keys[0].common.key_id.as_deref()
    );
    let c = verified.claims;
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sub"], "user-alice");
    assert_eq!(c["aud"], "demo-fapi");
    assert_eq!(c["auth_time"], h.now());
    assert_eq!(c["acr"], "urn:example:acr:device");
    assert_eq!(c["urn:openid:params:jwt:claim:auth_req_id"], id.as_str());
    assert_eq!(c["at_hash"], secret::left_half_hash(access));
    assert_eq!(
        c["urn:openid:params:jwt:claim:rt_hash"],
        secret::left_half_hash(refresh)
    );
    assert!(c["exp"].as_i64().unwrap() > h.now());

    let info = h.userinfo(access).await;
    assert_eq!(info.status, 200, "{:?}", info.body);
    assert_eq!(
        info.body,
        json!({"sub": "user-alice", "name": "Alice Adams", "given_name": "Alice", "family_name": "Adams",
               "preferred_username": "alice", "email": "alice@example.com", "email_verified": true})
    );
}

async fn secret_basic_flow_issues_tokens(h: Harness) {
    let id = start(&h).await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h.poll(&id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let info = h
        .userinfo(tokens.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        info.body,
        json!({"sub": "user-alice", "email": "alice@example.com", "email_verified": true})
    );
}

async fn refused_request_object(h: &Harness, change: impl FnOnce(&mut Value)) -> common::Reply {
    let mut claims = h.request_claims();
    change(&mut claims);
    let reply = h.bc_authorize_signed(&h.sign_request(&claims)).await;
    assert!(
        h.pushes.all().is_empty(),
        "a refused request pushes nothing"
    );
    reply
}

async fn request_object_without_aud_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| {
        c.as_object_mut().unwrap().remove("aud");
    })
    .await
    .expect_error(400, "invalid_request");
}

async fn request_object_with_wrong_aud_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| c["aud"] = json!(["https://other-op.example.com"]))
        .await
        .expect_error(400, "invalid_request");
}

async fn request_object_with_wrong_iss_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| c["iss"] = json!("demo-rp"))
        .await
        .expect_error(400, "invalid_request");
}

async fn expired_request_object_is_invalid_request(h: Harness) {
    let now = h.now();
    refused_request_object(&h, |c| {
        c["exp"] = json!(now - 1);
        c["iat"] = json!(now - 100);
        c["nbf"] = json!(now - 100);
    })
    .await
    .expect_error(400, "invalid_request");
}

async fn request_object_expiring_70_minutes_ahead_is_invalid_request(h: Harness) {
    let now = h.now();
    refused_request_object(&h, |c| c["exp"] = json!(now + 70 * 60))
        .await
        .expect_error(400, "invalid_request");
}

async fn request_object_without_iat_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| {
        c.as_object_mut().unwrap().remove("iat");
    })
    .await
    .expect_error(400, "invalid_request");
}

async fn request_object_without_jti_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| {
        c.as_object_mut().unwrap().remove("jti");
    })
    .await
    .expect_error(400, "invalid_request");
}

async fn replayed_request_object_jti_is_invalid_request(h: Harness) {
    let ro = h.sign_request(&h.request_claims());
    assert_eq!(h.bc_authorize_signed(&ro).await.status, 200);
    let replay = h.bc_authorize_signed(&ro).await;
    replay.expect_error(400, "invalid_request");
    assert_eq!(h.pushes.all().len(), 1, "the replay pushed nothing");
}

async fn request_object_with_alg_none_is_invalid_request(h: Harness) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none"}"#),
        b64.encode(h.request_claims().to_string())
    );
    h.bc_authorize_signed(&unsigned)
        .await
        .expect_error(400, "invalid_request");
}

async fn request_object_signed_by_another_clients_key_is_invalid_request(h: Harness) {
    // A second FAPI client with its own key; demo-fapi's request signed with that key.
    let mut other = h
        .store
        .clients()
        .get_client("demo-fapi")
        .await
        .unwrap()
        .unwrap();
    other.client_id = "other-fapi".into();
    let other_key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let (kid, jwk) =
        ciba_shared::ports::public_jwk_with_kid(&p256::PublicKey::from(other_key.verifying_key()));
    other.jwks = Some(serde_json::from_value(json!({"keys": [jwk]})).unwrap());
    h.store.clients().put_client(&other).await.unwrap();
    let forged = jose::sign_with_key(
        &other_key,
        &json!({"alg": "ES256", "kid": kid}),
        &h.request_claims(),
    );
    h.bc_authorize_signed(&forged)
        .await
        .expect_error(400, "invalid_request");
    let forged_no_kid =
        jose::sign_with_key(&other_key, &json!({"alg": "ES256"}), &h.request_claims());
    h.bc_authorize_signed(&forged_no_kid)
        .await
        .expect_error(400, "invalid_request");
}

async fn two_hints_are_invalid_request(h: Harness) {
    refused_request_object(&h, |c| c["login_hint_token"] = json!("eyJ.eyJ.sig"))
        .await
        .expect_error(400, "invalid_request");
}

async fn scope_without_openid_is_invalid_request(h: Harness) {
    refused_request_object(&h, |c| c["scope"] = json!("profile email"))
        .await
        .expect_error(400, "invalid_request");
}

async fn binding_message_of_101_characters_is_invalid_binding_message(h: Harness) {
    refused_request_object(&h, |c| c["binding_message"] = json!("x".repeat(101)))
        .await
        .expect_error(400, "invalid_binding_message");
}

async fn unknown_user_is_unknown_user_id(h: Harness) {
    refused_request_object(&h, |c| c["login_hint"] = json!("mallory@example.com"))
        .await
        .expect_error(400, "unknown_user_id");
}

/// A copy of the table must not give the user codes away to 10⁴ SHA-256 hashes: they are stored
/// as HMACs under a key derived from the OP secret, and checked against them.
async fn user_code_is_stored_and_checked_as_a_keyed_hash(h: Harness) {
    let alice = h.store.accounts().find_user_by_hint("alice").await.unwrap();
    let stored = alice.unwrap().user_code_hash.unwrap();
    assert_ne!(stored, secret::hash("4321"));
    assert_eq!(stored, common::keys().user_code_hash("4321"));
    let ask = |code: &str| {
        HttpRequest::new("POST", "/bc-authorize").form(&[
            ("client_id", "demo-pos"),
            ("client_secret", "demo-pos-secret"),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("user_code", code),
        ])
    };
    h.send(ask("9999"))
        .await
        .expect_error(400, "invalid_user_code");
    assert_eq!(h.send(ask("4321")).await.status, 200);
}

async fn login_hint_may_be_an_rfc9493_subject_identifier(h: Harness) {
    let issuer_with_slash = format!("{ISSUER}/");
    for hint in [
        json!({"format": "iss_sub", "iss": ISSUER, "sub": "user-alice"}),
        json!({"format": "iss_sub", "iss": issuer_with_slash, "sub": "user-alice"}),
        json!({"format": "email", "email": "alice@example.com"}),
        json!({"format": "phone_number", "phone_number": "+15555550100"}),
        json!({"format": "opaque", "id": "alice"}),
    ] {
        let hint = hint.to_string();
        let reply = h
            .bc_authorize(&[("scope", "openid"), ("login_hint", hint.as_str())])
            .await;
        assert_eq!(reply.status, 200, "{hint}: {:?}", reply.body);
    }
    assert_eq!(h.pushes.sent_to("user-alice").len(), 5);
}

async fn login_hint_subject_identifier_of_another_issuer_or_format_is_unknown_user_id(h: Harness) {
    for hint in [
        json!({"format": "iss_sub", "iss": "https://other.example.com", "sub": "user-alice"}),
        json!({"format": "account", "uri": "acct:alice@example.com"}),
        json!({"format": "email", "email": "mallory@example.com"}),
        json!({"format": "email"}),
        json!(["alice"]),
    ] {
        let hint = hint.to_string();
        h.bc_authorize(&[("scope", "openid"), ("login_hint", hint.as_str())])
            .await
            .expect_error(400, "unknown_user_id");
    }
    h.bc_authorize(&[("scope", "openid"), ("login_hint", "{not json")])
        .await
        .expect_error(400, "unknown_user_id");
}

async fn wrong_client_secret_is_401_with_basic_challenge(h: Harness) {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic("demo-rp", "wrong"))
        .form(&[("scope", "openid"), ("login_hint", "alice")]);
    let reply = h.send(req).await;
    reply.expect_error(401, "invalid_client");
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert!(h.pushes.all().is_empty());
}

async fn another_clients_auth_req_id_is_invalid_grant(h: Harness) {
    let ro = h.sign_request(&h.request_claims());
    let id = auth_req_id(&h.bc_authorize_signed(&ro).await);
    h.poll(&id).await.expect_error(400, "invalid_grant");
    assert_eq!(h.alice_decides("approve").await.status, 204);
    h.poll(&id).await.expect_error(400, "invalid_grant");
    assert_eq!(
        h.poll_signed(&id).await.status,
        200,
        "the owner still redeems it"
    );
}

async fn polling_too_fast_is_slow_down(h: Harness) {
    let id = start(&h).await;
    h.poll(&id).await.expect_error(400, "authorization_pending");
    h.clock.advance_secs(1);
    let reply = h.poll(&id).await;
    reply.expect_error(400, "slow_down");
    // The interval is now 7 seconds: 6 seconds later is still too soon, 7 is fine.
    h.clock.advance_secs(6);
    h.poll(&id).await.expect_error(400, "slow_down");
    h.clock.advance_secs(12);
    h.poll(&id).await.expect_error(400, "authorization_pending");
}

async fn denied_request_is_access_denied(h: Harness) {
    let id = start(&h).await;
    assert_eq!(h.alice_decides("deny").await.status, 204);
    h.poll(&id).await.expect_error(400, "access_denied");
}

async fn expired_request_is_expired_token(h: Harness) {
    let id = start(&h).await;
    h.clock.advance_secs(600);
    h.poll(&id).await.expect_error(400, "expired_token");
    // Approval comes too late as well, and the request stays expired.
    h.alice_decides("approve")
        .await
        .expect_error(400, "expired_token");
    h.clock.advance_secs(10);
    h.poll(&id).await.expect_error(400, "expired_token");
}

async fn redeeming_twice_is_invalid_grant(h: Harness) {
    let id = start(&h).await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    assert_eq!(h.poll(&id).await.status, 200);
    h.poll(&id).await.expect_error(400, "invalid_grant");
}

async fn fifty_concurrent_polls_yield_exactly_one_token_response(h: Harness) {
    let id = start(&h).await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let polls: Vec<_> = (0..50)
        .map(|_| {
            let api = h.api.clone();
            let clock = h.clock.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let req = HttpRequest::new("POST", "/token")
                    .header(
                        "authorization",
                        &Harness::basic("demo-rp", "demo-rp-secret"),
                    )
                    .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", &id)]);
                common::send(&api, req, &clock).await
            })
        })
        .collect();
    let mut ok = 0;
    for poll in polls {
        let reply = poll.await.unwrap();
        match reply.status {
            200 => ok += 1,
            _ => reply.expect_error(400, "invalid_grant"),
        }
    }
    assert_eq!(ok, 1, "exactly one token response");
}

async fn decision_signed_by_another_devices_key_is_refused(h: Harness) {
    let id = start(&h).await;
    let txn = h.latest_txn("user-alice");
    let forged = h.decision("bob-phone", "alice-phone", &txn, "approve");
    h.post_decision(&forged)
        .await
        .expect_error(400, "invalid_request");
    h.poll(&id).await.expect_error(400, "authorization_pending");
}

async fn decision_for_another_users_txn_is_refused(h: Harness) {
    let id = start(&h).await;
    let txn = h.latest_txn("user-alice");
    let foreign = h.decision("bob-phone", "bob-phone", &txn, "approve");
    h.post_decision(&foreign)
        .await
        .expect_error(400, "invalid_request");
    h.poll(&id).await.expect_error(400, "authorization_pending");
}

async fn replayed_decision_is_refused(h: Harness) {
    start(&h).await;
    let txn = h.latest_txn("user-alice");
    let jwt = h.decision("alice-phone", "alice-phone", &txn, "approve");
    assert_eq!(h.post_decision(&jwt).await.status, 204);
    h.post_decision(&jwt)
        .await
        .expect_error(400, "invalid_request");
}

async fn second_decision_is_409(h: Harness) {
    let id = start(&h).await;
    assert_eq!(h.alice_decides("deny").await.status, 204);
    h.alice_decides("approve")
        .await
        .expect_error(409, "invalid_request");
    h.poll(&id).await.expect_error(400, "access_denied");
}

async fn decision_after_expiry_is_expired_token(h: Harness) {
    let ro = h.sign_request(&h.request_claims());
    auth_req_id(&h.bc_authorize_signed(&ro).await);
    h.clock.advance_secs(300);
    h.alice_decides("approve")
        .await
        .expect_error(400, "expired_token");
}

async fn userinfo_with_unknown_token_is_401(h: Harness) {
    let reply = h.userinfo("not-a-token").await;
    reply.expect_error(401, "invalid_token");
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

async fn refresh(
    h: &Harness,
    id: &str,
    secret: &str,
    token: &str,
    scope: Option<&str>,
) -> common::Reply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let req = HttpRequest::new("POST", "/token")
        .header("authorization", &Harness::basic(id, secret))
        .form(&form);
    h.send(req).await
}

async fn tokens_for_alice(h: &Harness) -> Value {
    let id = start(h).await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h.poll(&id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    tokens.body
}

async fn refresh_token_rotates_and_reusing_the_old_one_revokes_the_family(h: Harness) {
    let first = tokens_for_alice(&h).await;
    let old = first["refresh_token"].as_str().unwrap();
    h.clock.advance_secs(60);
    let second = refresh(&h, "demo-rp", "demo-rp-secret", old, None).await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(second.headers["cache-control"], "no-store");
    let new = second.body["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(second.body["scope"], "openid email");
    let info = h
        .userinfo(second.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info.status, 200);
    // A spent refresh token presented again: someone holds a copy, so the whole family goes
    // (RFC 9700 §4.14.2), the successor and its access token with it.
    refresh(&h, "demo-rp", "demo-rp-secret", old, None)
        .await
        .expect_error(400, "invalid_grant");
    refresh(&h, "demo-rp", "demo-rp-secret", new, None)
        .await
        .expect_error(400, "invalid_grant");
    h.userinfo(second.body["access_token"].as_str().unwrap())
        .await
        .expect_error(401, "invalid_token");
}

async fn another_clients_refresh_token_is_invalid_grant(h: Harness) {
    let tokens = tokens_for_alice(&h).await;
    let stolen = tokens["refresh_token"].as_str().unwrap();
    let req = HttpRequest::new("POST", "/token").form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", stolen),
        ("client_id", "demo-pos"),
        ("client_secret", "demo-pos-secret"),
    ]);
    h.send(req).await.expect_error(400, "invalid_grant");
    assert_eq!(
        refresh(&h, "demo-rp", "demo-rp-secret", stolen, None)
            .await
            .status,
        200,
        "the owner still can"
    );
}

async fn refresh_may_narrow_but_not_widen_the_scope(h: Harness) {
    let tokens = tokens_for_alice(&h).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    refresh(
        &h,
        "demo-rp",
        "demo-rp-secret",
        rt,
        Some("openid email profile"),
    )
    .await
    .expect_error(400, "invalid_scope");
    let narrowed = refresh(&h, "demo-rp", "demo-rp-secret", rt, Some("openid")).await;
    assert_eq!(narrowed.status, 200, "{:?}", narrowed.body);
    assert_eq!(narrowed.body["scope"], "openid");
}

#[test]
fn demo_keys_match_the_seeded_public_keys() {
    let seed = common::seed();
    let jwk_of = |name: &str| {
        ciba_shared::ports::public_jwk_with_kid(&p256::PublicKey::from(key(name).verifying_key())).1
    };
    let fapi = seed.clients().find(|c| c.client_id == "demo-fapi").unwrap();
    let registered = serde_json::to_value(&fapi.jwks.unwrap().keys[0]).unwrap();
    assert_eq!(registered["x"], jwk_of("demo-fapi-rp")["x"]);
    for device in &seed.devices {
        assert_eq!(device.public_key["x"], jwk_of(&device.device_id)["x"]);
    }
}
