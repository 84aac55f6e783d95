//! Issue 14: tokens that resource servers can use. Introspection (RFC 7662) as the RP and as a
//! resource server, revocation (RFC 7009) of refresh-token families and of single access
//! tokens, refresh reuse, and RFC 9068 JWT access tokens, each through the local API on both
//! stores.

mod common;

use ciba_local::event::HttpRequest;
use ciba_shared::ports::{OsRandom, Random};
use common::{Harness, ISSUER, Reply, key};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

on_both_stores!(
    the_walk_through_introspect_as_the_api_revoke_the_refresh_token_both_inactive,
    introspection_answers_every_inactive_state_with_active_false_alone,
    introspection_needs_client_authentication_and_a_token,
    a_client_sees_its_own_tokens_and_not_another_clients,
    a_resource_server_cannot_start_ciba_requests_or_see_refresh_tokens,
    revoking_an_access_token_revokes_it_alone,
    revoking_another_clients_or_an_unknown_token_changes_nothing,
    a_reused_refresh_token_revokes_the_family_it_belongs_to,
    a_jwt_access_token_verifies_against_jwks_and_works_until_revoked,
    a_forged_or_altered_jwt_access_token_is_inactive,
    a_private_key_jwt_client_introspects_and_revokes_with_the_endpoint_as_audience,
);

async fn tokens_as(h: &Harness, id: &str, secret: &str) -> Value {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic(id, secret))
        .form(&[("scope", "openid email"), ("login_hint", "alice")]);
    let started = h.send(req).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let tokens = h
        .poll_as(id, secret, started.body["auth_req_id"].as_str().unwrap())
        .await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    tokens.body
}

async fn tokens(h: &Harness) -> Value {
    tokens_as(h, "demo-rp", "demo-rp-secret").await
}

fn value<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name].as_str().unwrap()
}

async fn introspect_as(h: &Harness, id: &str, secret: &str, token: &str) -> Reply {
    let req = HttpRequest::new("POST", "/introspect")
        .header("authorization", &Harness::basic(id, secret))
        .form(&[("token", token)]);
    h.send(req).await
}

async fn revoke_as(h: &Harness, id: &str, secret: &str, token: &str, hint: &str) -> Reply {
    let req = HttpRequest::new("POST", "/revoke")
        .header("authorization", &Harness::basic(id, secret))
        .form(&[("token", token), ("token_type_hint", hint)]);
    h.send(req).await
}

/// The introspection of `token` by `id`, which must answer 200 with no-store.
async fn introspection(h: &Harness, id: &str, secret: &str, token: &str) -> Value {
    let r = introspect_as(h, id, secret, token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    r.body
}

fn assert_inactive(answer: &Value) {
    assert_eq!(
        answer,
        &json!({"active": false}),
        "inactive is active:false alone"
    );
}

async fn the_walk_through_introspect_as_the_api_revoke_the_refresh_token_both_inactive(h: Harness) {
    let t = tokens(&h).await;
    let access = value(&t, "access_token");
    let refresh = value(&t, "refresh_token");
    let a = introspection(&h, "demo-api", "demo-api-secret", access).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["sub"], "user-alice");
    assert_eq!(a["scope"], "openid email");
    assert_eq!(a["client_id"], "demo-rp");
    assert_eq!(a["token_type"], "Bearer");
    assert_eq!(a["iat"], h.now());
    assert_eq!(a["exp"], h.now() + 3600);
    assert_eq!(a["auth_time"], h.now());
    assert_eq!(a["iss"], ISSUER);
    let r = introspection(&h, "demo-rp", "demo-rp-secret", refresh).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");

    let revoked = revoke_as(&h, "demo-rp", "demo-rp-secret", refresh, "refresh_token").await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.body, Value::Null, "an empty body");
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", access).await);
    assert_inactive(&introspection(&h, "demo-rp", "demo-rp-secret", refresh).await);
    h.userinfo(access).await.expect_error(401, "invalid_token");
    refresh_with(&h, refresh)
        .await
        .expect_error(400, "invalid_grant");
}

async fn refresh_with(h: &Harness, refresh: &str) -> Reply {
    let req = HttpRequest::new("POST", "/token")
        .header(
            "authorization",
            &Harness::basic("demo-rp", "demo-rp-secret"),
        )
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]);
    h.send(req).await
}

async fn introspection_answers_every_inactive_state_with_active_false_alone(h: Harness) {
    let t = tokens(&h).await;
    let access = value(&t, "access_token").to_owned();
    for garbage in [
        "unknown",
        "a.b.c",
        &"x".repeat(5000),
        "🙂",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        assert_inactive(&introspection(&h, "demo-rp", "demo-rp-secret", garbage).await);
    }
    // Rotated: the spent refresh token and its access token's successor stay apart.
    let spent = value(&t, "refresh_token").to_owned();
    let next = refresh_with(&h, &spent).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_inactive(&introspection(&h, "demo-rp", "demo-rp-secret", &spent).await);
    assert_eq!(
        introspection(&h, "demo-rp", "demo-rp-secret", &access).await["active"],
        true,
        "rotation leaves earlier access tokens alone"
    );
    // Expired.
    h.clock.advance_secs(3600);
    assert_inactive(&introspection(&h, "demo-rp", "demo-rp-secret", &access).await);
    let still = value(&next.body, "refresh_token");
    assert_eq!(
        introspection(&h, "demo-rp", "demo-rp-secret", still).await["active"],
        true
    );
}

async fn introspection_needs_client_authentication_and_a_token(h: Harness) {
    let t = tokens(&h).await;
    let req = HttpRequest::new("POST", "/introspect").form(&[("token", value(&t, "access_token"))]);
    h.send(req).await.expect_error(401, "invalid_client");
    introspect_as(&h, "demo-api", "wrong", value(&t, "access_token"))
        .await
        .expect_error(401, "invalid_client");
    let req = HttpRequest::new("POST", "/introspect")
        .header(
            "authorization",
            &Harness::basic("demo-api", "demo-api-secret"),
        )
        .form(&[("token_type_hint", "access_token")]);
    h.send(req).await.expect_error(400, "invalid_request");
    let req = HttpRequest::new("POST", "/revoke")
        .header(
            "authorization",
            &Harness::basic("demo-rp", "demo-rp-secret"),
        )
        .form(&[("token", "")]);
    h.send(req).await.expect_error(400, "invalid_request");
}

async fn a_client_sees_its_own_tokens_and_not_another_clients(h: Harness) {
    let t = tokens(&h).await;
    for token in [value(&t, "access_token"), value(&t, "refresh_token")] {
        assert_eq!(
            introspection(&h, "demo-rp", "demo-rp-secret", token).await["active"],
            true
        );
        let req = HttpRequest::new("POST", "/introspect").form(&[
            ("token", token),
            ("client_id", "demo-pos"),
            ("client_secret", "demo-pos-secret"),
        ]);
        let other = h.send(req).await;
        assert_eq!(other.status, 200);
        assert_inactive(&other.body);
    }
}

async fn a_resource_server_cannot_start_ciba_requests_or_see_refresh_tokens(h: Harness) {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header(
            "authorization",
            &Harness::basic("demo-api", "demo-api-secret"),
        )
        .form(&[("scope", "openid"), ("login_hint", "alice")]);
    h.send(req).await.expect_error(400, "unauthorized_client");
    assert!(h.pushes.sent_to("user-alice").is_empty());
    let t = tokens(&h).await;
    assert_inactive(
        &introspection(
            &h,
            "demo-api",
            "demo-api-secret",
            value(&t, "refresh_token"),
        )
        .await,
    );
    // Nor revoke what it can see.
    let r = revoke_as(
        &h,
        "demo-api",
        "demo-api-secret",
        value(&t, "access_token"),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.userinfo(value(&t, "access_token")).await.status, 200);
}

async fn revoking_an_access_token_revokes_it_alone(h: Harness) {
    let t = tokens(&h).await;
    let access = value(&t, "access_token");
    // A wrong hint is only a hint.
    let r = revoke_as(&h, "demo-rp", "demo-rp-secret", access, "refresh_token").await;
    assert_eq!(r.status, 200);
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", access).await);
    h.userinfo(access).await.expect_error(401, "invalid_token");
    let next = refresh_with(&h, value(&t, "refresh_token")).await;
    assert_eq!(
        next.status, 200,
        "the refresh token lives on: {:?}",
        next.body
    );
    assert_eq!(
        h.userinfo(value(&next.body, "access_token")).await.status,
        200
    );
}

async fn revoking_another_clients_or_an_unknown_token_changes_nothing(h: Harness) {
    let t = tokens(&h).await;
    for token in [value(&t, "access_token"), value(&t, "refresh_token")] {
        let req = HttpRequest::new("POST", "/revoke").form(&[
            ("token", token),
            ("client_id", "demo-pos"),
            ("client_secret", "demo-pos-secret"),
        ]);
        assert_eq!(h.send(req).await.status, 200);
    }
    assert_eq!(h.userinfo(value(&t, "access_token")).await.status, 200);
    assert_eq!(
        introspection(&h, "demo-rp", "demo-rp-secret", value(&t, "refresh_token")).await["active"],
        true
    );
    let unknown = revoke_as(&h, "demo-rp", "demo-rp-secret", "never-issued", "").await;
    assert_eq!(unknown.status, 200);
}

async fn a_reused_refresh_token_revokes_the_family_it_belongs_to(h: Harness) {
    let first = tokens(&h).await;
    let other_grant = tokens(&h).await;
    let second = refresh_with(&h, value(&first, "refresh_token")).await;
    assert_eq!(second.status, 200);
    let third = refresh_with(&h, value(&second.body, "refresh_token")).await;
    assert_eq!(third.status, 200);
    // The first refresh token again: two rotations later, still recognised.
    refresh_with(&h, value(&first, "refresh_token"))
        .await
        .expect_error(400, "invalid_grant");
    for token in [
        value(&first, "access_token"),
        value(&second.body, "access_token"),
        value(&third.body, "access_token"),
        value(&third.body, "refresh_token"),
    ] {
        assert_inactive(&introspection(&h, "demo-rp", "demo-rp-secret", token).await);
    }
    // Another grant of the same user and client is its own family.
    assert_eq!(
        h.userinfo(value(&other_grant, "access_token")).await.status,
        200
    );
    assert_eq!(
        refresh_with(&h, value(&other_grant, "refresh_token"))
            .await
            .status,
        200
    );
}

async fn jwt_claims(h: &Harness, token: &str) -> Value {
    let jwks: JwkSet = serde_json::from_value(h.jwks().await).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("its kid is in /jwks");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[ISSUER]);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

async fn a_jwt_access_token_verifies_against_jwks_and_works_until_revoked(h: Harness) {
    let t = tokens_as(&h, "demo-jwt", "demo-jwt-secret").await;
    let access = value(&t, "access_token");
    let claims = jwt_claims(&h, access).await;
    assert_eq!(claims["sub"], "user-alice");
    assert_eq!(claims["client_id"], "demo-jwt");
    assert_eq!(claims["scope"], "openid email");
    assert_eq!(claims["exp"], h.now() + 3600);
    assert_eq!(h.userinfo(access).await.status, 200);
    let a = introspection(&h, "demo-api", "demo-api-secret", access).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["sub"], "user-alice");
    assert_eq!(a["exp"], claims["exp"]);
    // A refreshed one is a JWT too.
    let next = {
        let req = HttpRequest::new("POST", "/token")
            .header(
                "authorization",
                &Harness::basic("demo-jwt", "demo-jwt-secret"),
            )
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", value(&t, "refresh_token")),
            ]);
        h.send(req).await
    };
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(
        jwt_claims(&h, value(&next.body, "access_token")).await["sub"],
        "user-alice"
    );
    // Revoked: still a well-signed JWT, and inactive all the same.
    let r = revoke_as(&h, "demo-jwt", "demo-jwt-secret", access, "access_token").await;
    assert_eq!(r.status, 200);
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", access).await);
    h.userinfo(access).await.expect_error(401, "invalid_token");
}

async fn a_forged_or_altered_jwt_access_token_is_inactive(h: Harness) {
    let t = tokens_as(&h, "demo-jwt", "demo-jwt-secret").await;
    let access = value(&t, "access_token");
    let claims = jwt_claims(&h, access).await;
    // The same claims signed by a key that is not the OP's.
    let forged = ciba_shared::jose::sign_with_key(
        &common::key("alice-phone"),
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": jsonwebtoken::decode_header(access).unwrap().kid}),
        &claims,
    );
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", &forged).await);
    h.userinfo(&forged).await.expect_error(401, "invalid_token");
    // The OP's signature over other claims.
    let (head, rest) = access.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut changed = claims.clone();
    changed["scope"] = json!("openid email payments");
    use base64::Engine;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(changed.to_string());
    let altered = format!("{head}.{body}.{signature}");
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", &altered).await);
    // Its jti presented as an opaque token.
    let jti = claims["jti"].as_str().unwrap();
    assert_inactive(&introspection(&h, "demo-api", "demo-api-secret", jti).await);
}

/// A client assertion of demo-fapi addressed to `aud`.
fn assertion_for(h: &Harness, aud: &str) -> String {
    let now = h.now();
    ciba_shared::jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "JWT"}),
        &json!({
            "iss": "demo-fapi", "sub": "demo-fapi", "aud": aud,
            "iat": now, "exp": now + 60, "jti": OsRandom.token(12)
        }),
    )
}

async fn as_fapi(h: &Harness, path: &str, aud: &str, token: &str) -> Reply {
    let assertion = assertion_for(h, aud);
    let req = HttpRequest::new("POST", path).form(&[
        ("token", token),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ]);
    h.send(req).await
}

async fn a_private_key_jwt_client_introspects_and_revokes_with_the_endpoint_as_audience(
    h: Harness,
) {
    let started = h
        .bc_authorize_signed(&h.sign_request(&h.request_claims()))
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let t = h
        .poll_signed(started.body["auth_req_id"].as_str().unwrap())
        .await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    let access = value(&t.body, "access_token");
    for aud in [ISSUER.to_owned(), format!("{ISSUER}/introspect")] {
        let r = as_fapi(&h, "/introspect", &aud, access).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["active"], true);
        assert_eq!(r.body["client_id"], "demo-fapi");
        assert_eq!(r.body["acr"], "urn:example:acr:device", "the request's acr");
    }
    as_fapi(&h, "/introspect", "https://elsewhere.example", access)
        .await
        .expect_error(401, "invalid_client");
    let refresh = value(&t.body, "refresh_token");
    let r = as_fapi(&h, "/revoke", &format!("{ISSUER}/revoke"), refresh).await;
    assert_eq!(r.status, 200);
    assert_inactive(&as_fapi(&h, "/introspect", ISSUER, access).await.body);
}
