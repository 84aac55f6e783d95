//! DPoP (RFC 9449) through the local API on both stores: proofs at `/token`, DPoP-bound access
//! and refresh tokens, the `DPoP` scheme at `/userinfo` with its `ath` check, `cnf.jkt` in
//! introspection and in JWT access tokens, every proof rule refused with `invalid_dpop_proof`,
//! and server nonces (`DPOP_NONCE=required`) with `use_dpop_nonce`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciba_local::event::HttpRequest;
use ciba_shared::dpop::thumbprint;
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random, public_jwk_with_kid};
use common::{CIBA_GRANT, Harness, ISSUER, Reply, key};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_stores!(
    a_dpop_bound_token_works_at_userinfo_only_with_a_proof_of_its_key,
    a_replayed_proof_is_refused,
    every_proof_rule_is_checked_at_the_token_endpoint,
    a_dpop_bound_refresh_token_needs_a_proof_of_the_same_key,
    a_jwt_access_token_carries_its_dpop_binding,
    when_nonces_are_required_a_proof_carries_a_fresh_one_the_op_handed_out,
);

/// The client's DPoP key.
fn client_key() -> SigningKey {
    key("demo-fapi-rp")
}

fn public_jwk(key: &SigningKey) -> Value {
    let (_, mut jwk) = public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
    jwk.as_object_mut().unwrap().remove("kid");
    jwk
}

/// A proof for `htm` `htu` by `key`, with `ath` when `token` is given; `tweak` breaks a rule.
fn proof_with(
    h: &Harness,
    key: &SigningKey,
    htm: &str,
    path: &str,
    token: Option<&str>,
    tweak: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let mut header = json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": public_jwk(key)});
    let mut claims = json!({
        "htm": htm, "htu": format!("{ISSUER}{path}"), "iat": h.now(), "jti": OsRandom.token(12)
    });
    if let Some(token) = token {
        claims["ath"] = URL_SAFE_NO_PAD
            .encode(Sha256::digest(token.as_bytes()))
            .into();
    }
    tweak(&mut header, &mut claims);
    jose::sign_with_key(key, &header, &claims)
}

fn proof(h: &Harness, htm: &str, path: &str, token: Option<&str>) -> String {
    proof_with(h, &client_key(), htm, path, token, |_, _| {})
}

async fn started(h: &Harness, id: &str, secret: &str) -> String {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic(id, secret))
        .form(&[("scope", "openid email"), ("login_hint", "alice")]);
    let r = h.send(req).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["auth_req_id"].as_str().unwrap().to_owned()
}

async fn poll_with(h: &Harness, id: &str, secret: &str, auth_req_id: &str, proof: &str) -> Reply {
    let req = HttpRequest::new("POST", "/token")
        .header("authorization", &Harness::basic(id, secret))
        .header("dpop", proof)
        .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)]);
    h.send(req).await
}

/// Tokens of an approved request, redeemed with a proof of the client's key.
async fn bound_tokens(h: &Harness, id: &str, secret: &str) -> Value {
    let auth_req_id = started(h, id, secret).await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let r = poll_with(
        h,
        id,
        secret,
        &auth_req_id,
        &proof(h, "POST", "/token", None),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    r.body
}

async fn userinfo(h: &Harness, scheme: &str, token: &str, proof: Option<&str>) -> Reply {
    let mut req =
        HttpRequest::new("GET", "/userinfo").header("authorization", &format!("{scheme} {token}"));
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    h.send(req).await
}

fn challenge(r: &Reply) -> String {
    r.headers["www-authenticate"].to_str().unwrap().to_owned()
}

async fn a_dpop_bound_token_works_at_userinfo_only_with_a_proof_of_its_key(h: Harness) {
    let t = bound_tokens(&h, "demo-rp", "demo-rp-secret").await;
    let access = t["access_token"].as_str().unwrap();
    let jkt = thumbprint(&public_jwk(&client_key())).unwrap();

    let ok = userinfo(
        &h,
        "DPoP",
        access,
        Some(&proof(&h, "GET", "/userinfo", Some(access))),
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["sub"], "user-alice");

    let bearer = userinfo(&h, "Bearer", access, None).await;
    bearer.expect_error(401, "invalid_token");
    assert!(
        challenge(&bearer).starts_with("DPoP "),
        "{}",
        challenge(&bearer)
    );
    userinfo(&h, "DPoP", access, None)
        .await
        .expect_error(401, "invalid_dpop_proof");
    let other_key = proof_with(
        &h,
        &key("alice-phone"),
        "GET",
        "/userinfo",
        Some(access),
        |_, _| {},
    );
    userinfo(&h, "DPoP", access, Some(&other_key))
        .await
        .expect_error(401, "invalid_token");
    let wrong_ath = proof(&h, "GET", "/userinfo", Some("another token"));
    userinfo(&h, "DPoP", access, Some(&wrong_ath))
        .await
        .expect_error(401, "invalid_dpop_proof");
    let for_token_endpoint = proof(&h, "GET", "/token", Some(access));
    userinfo(&h, "DPoP", access, Some(&for_token_endpoint))
        .await
        .expect_error(401, "invalid_dpop_proof");

    let req = HttpRequest::new("POST", "/introspect")
        .header(
            "authorization",
            &Harness::basic("demo-api", "demo-api-secret"),
        )
        .form(&[("token", access)]);
    let a = h.send(req).await.body;
    assert_eq!(a["active"], true);
    assert_eq!(a["token_type"], "DPoP");
    assert_eq!(a["cnf"], json!({"jkt": jkt}));

    // A bearer token is not accepted under the DPoP scheme either.
    let plain = {
        let id = started(&h, "demo-rp", "demo-rp-secret").await;
        assert_eq!(h.alice_decides("approve").await.status, 204);
        h.poll(&id).await.body
    };
    assert_eq!(plain["token_type"], "Bearer");
    let plain_access = plain["access_token"].as_str().unwrap();
    let p = proof(&h, "GET", "/userinfo", Some(plain_access));
    userinfo(&h, "DPoP", plain_access, Some(&p))
        .await
        .expect_error(401, "invalid_token");
}

async fn a_replayed_proof_is_refused(h: Harness) {
    let auth_req_id = started(&h, "demo-rp", "demo-rp-secret").await;
    let p = proof(&h, "POST", "/token", None);
    poll_with(&h, "demo-rp", "demo-rp-secret", &auth_req_id, &p)
        .await
        .expect_error(400, "authorization_pending");
    h.clock.advance_secs(5);
    poll_with(&h, "demo-rp", "demo-rp-secret", &auth_req_id, &p)
        .await
        .expect_error(400, "invalid_dpop_proof");
    let fresh = proof(&h, "POST", "/token", None);
    poll_with(&h, "demo-rp", "demo-rp-secret", &auth_req_id, &fresh)
        .await
        .expect_error(400, "authorization_pending");
}

async fn every_proof_rule_is_checked_at_the_token_endpoint(h: Harness) {
    let auth_req_id = started(&h, "demo-rp", "demo-rp-secret").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let k = client_key();
    let broken: Vec<(&str, String)> = vec![
        (
            "typ",
            proof_with(&h, &k, "POST", "/token", None, |hd, _| {
                hd["typ"] = "JWT".into()
            }),
        ),
        ("htm", proof_with(&h, &k, "GET", "/token", None, |_, _| {})),
        (
            "htu",
            proof_with(&h, &k, "POST", "/userinfo", None, |_, _| {}),
        ),
        (
            "htu host",
            proof_with(&h, &k, "POST", "/token", None, |_, c| {
                c["htu"] = "https://elsewhere.example/token".into();
            }),
        ),
        (
            "old iat",
            proof_with(&h, &k, "POST", "/token", None, |_, c| {
                c["iat"] = (h.now() - 301).into();
            }),
        ),
        (
            "future iat",
            proof_with(&h, &k, "POST", "/token", None, |_, c| {
                c["iat"] = (h.now() + 120).into();
            }),
        ),
        (
            "no jti",
            proof_with(&h, &k, "POST", "/token", None, |_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "private jwk",
            proof_with(&h, &k, "POST", "/token", None, |hd, _| {
                hd["jwk"]["d"] = "AAAA".into();
            }),
        ),
        (
            "another key in jwk",
            proof_with(&h, &k, "POST", "/token", None, |hd, _| {
                hd["jwk"] = public_jwk(&key("alice-phone"));
            }),
        ),
        ("alg none", {
            let header = URL_SAFE_NO_PAD.encode(
                json!({"alg": "none", "typ": "dpop+jwt", "jwk": public_jwk(&k)}).to_string(),
            );
            let claims = URL_SAFE_NO_PAD.encode(
                json!({"htm": "POST", "htu": format!("{ISSUER}/token"), "iat": h.now(), "jti": "n"})
                    .to_string(),
            );
            format!("{header}.{claims}.")
        }),
        ("garbage", "not a jwt".to_owned()),
    ];
    for (rule, p) in broken {
        let r = poll_with(&h, "demo-rp", "demo-rp-secret", &auth_req_id, &p).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_dpop_proof"),
            "{rule}: {:?}",
            r.body
        );
    }
    // None of them cost the client its tokens.
    let ok = poll_with(
        &h,
        "demo-rp",
        "demo-rp-secret",
        &auth_req_id,
        &proof(&h, "POST", "/token", None),
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

async fn refresh(h: &Harness, refresh_token: &str, proof: Option<&str>) -> Reply {
    let mut req = HttpRequest::new("POST", "/token")
        .header(
            "authorization",
            &Harness::basic("demo-rp", "demo-rp-secret"),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    h.send(req).await
}

async fn a_dpop_bound_refresh_token_needs_a_proof_of_the_same_key(h: Harness) {
    let t = bound_tokens(&h, "demo-rp", "demo-rp-secret").await;
    let rt = t["refresh_token"].as_str().unwrap();
    refresh(&h, rt, None)
        .await
        .expect_error(400, "invalid_dpop_proof");
    let other = proof_with(&h, &key("alice-phone"), "POST", "/token", None, |_, _| {});
    refresh(&h, rt, Some(&other))
        .await
        .expect_error(400, "invalid_grant");
    let next = refresh(&h, rt, Some(&proof(&h, "POST", "/token", None))).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.body["token_type"], "DPoP");
}

async fn a_jwt_access_token_carries_its_dpop_binding(h: Harness) {
    let t = bound_tokens(&h, "demo-jwt", "demo-jwt-secret").await;
    let access = t["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(
        claims["cnf"],
        json!({"jkt": thumbprint(&public_jwk(&client_key())).unwrap()})
    );
    let p = proof(&h, "GET", "/userinfo", Some(access));
    assert_eq!(userinfo(&h, "DPoP", access, Some(&p)).await.status, 200);
}

/// RFC 9449 §8 and §9 with `DPOP_NONCE=required`: a proof without the OP's nonce, or with a
/// made-up or stale one, gets `use_dpop_nonce` and the nonce to use in `DPoP-Nonce`, at `/token`
/// (400) and at `/userinfo` (401 with a `DPoP` challenge); with it, the flow goes on.
async fn when_nonces_are_required_a_proof_carries_a_fresh_one_the_op_handed_out(h: Harness) {
    let id = started(&h, "demo-rp", "demo-rp-secret").await;
    let pending = poll_with(
        &h,
        "demo-rp",
        "demo-rp-secret",
        &id,
        &proof(&h, "POST", "/token", None),
    )
    .await;
    pending.expect_error(400, "authorization_pending");
    assert!(
        pending.headers.get("dpop-nonce").is_none(),
        "no nonces unless required"
    );

    let h = common::reconfigured(h, |c| c.dpop_nonce_required = true);
    assert_eq!(h.alice_decides("approve").await.status, 204);
    h.clock.advance_secs(5);
    let with_nonce = |nonce: &str| {
        let nonce = nonce.to_owned();
        move |_: &mut Value, claims: &mut Value| claims["nonce"] = nonce.into()
    };
    let nonce_of = |r: &Reply| r.headers["dpop-nonce"].to_str().unwrap().to_owned();

    let without = poll_with(
        &h,
        "demo-rp",
        "demo-rp-secret",
        &id,
        &proof(&h, "POST", "/token", None),
    )
    .await;
    without.expect_error(400, "use_dpop_nonce");
    let nonce = nonce_of(&without);
    // A nonce of the OP's making cannot be guessed: the next window's number with any MAC.
    let mut made_up = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
    made_up[7] = made_up[7].wrapping_add(1);
    let made_up = URL_SAFE_NO_PAD.encode(made_up);
    for bad in [made_up.as_str(), "", "nonce"] {
        let p = proof_with(&h, &client_key(), "POST", "/token", None, with_nonce(bad));
        let r = poll_with(&h, "demo-rp", "demo-rp-secret", &id, &p).await;
        r.expect_error(400, "use_dpop_nonce");
    }
    let p = proof_with(
        &h,
        &client_key(),
        "POST",
        "/token",
        None,
        with_nonce(&nonce),
    );
    let tokens = poll_with(&h, "demo-rp", "demo-rp-secret", &id, &p).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert_eq!(nonce_of(&tokens), nonce, "one nonce for its whole window");
    let access = tokens.body["access_token"].as_str().unwrap();

    let bare = userinfo(
        &h,
        "DPoP",
        access,
        Some(&proof(&h, "GET", "/userinfo", Some(access))),
    )
    .await;
    bare.expect_error(401, "use_dpop_nonce");
    assert!(
        challenge(&bare).contains(r#"error="use_dpop_nonce""#),
        "{}",
        challenge(&bare)
    );
    assert_eq!(nonce_of(&bare), nonce);
    let fresh = |h: &Harness, nonce: &str| {
        proof_with(
            h,
            &client_key(),
            "GET",
            "/userinfo",
            Some(access),
            with_nonce(nonce),
        )
    };
    assert_eq!(
        userinfo(&h, "DPoP", access, Some(&fresh(&h, &nonce)))
            .await
            .status,
        200
    );

    // Two windows on, the old nonce is stale and the answer hands out the new one.
    h.clock.advance_secs(2 * ciba_shared::dpop::NONCE_WINDOW);
    let stale = userinfo(&h, "DPoP", access, Some(&fresh(&h, &nonce))).await;
    stale.expect_error(401, "use_dpop_nonce");
    let next = nonce_of(&stale);
    assert_ne!(next, nonce);
    assert_eq!(
        userinfo(&h, "DPoP", access, Some(&fresh(&h, &next)))
            .await
            .status,
        200
    );
}
