//! Mutual TLS (RFC 8705) on both stores, through the handlers as API Gateway's mTLS custom domain
//! feeds them (the certificate in `requestContext.authentication.clientCert`): client
//! authentication by certificate, certificate-bound tokens at every endpoint that takes them, and
//! the FAPI client that uses both. `transport` runs the same flow through real TLS.

mod common;
#[path = "mtls/transport.rs"]
mod transport;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use ciba_local::event::{ClientCert, HttpRequest};
use ciba_shared::config::Registration;
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random};
use common::{CIBA_GRANT, Harness, ISSUER, Reply, key};
use serde_json::{Value, json};

on_both_stores!(
    a_fapi_client_over_mtls_gets_certificate_bound_tokens_end_to_end,
    tls_client_auth_takes_only_the_registered_certificate,
    tls_client_auth_takes_only_a_certificate_a_configured_ca_issued,
    self_signed_tls_client_auth_takes_only_a_registered_key,
    bound_tokens_need_the_certificate_they_are_bound_to,
    registration_takes_the_mtls_metadata_and_refuses_what_is_inconsistent,
);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn pem(name: &str) -> String {
    let path = format!("{}/tests/keys/pki/{name}.crt", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn der(name: &str) -> Vec<u8> {
    let body: String = pem(name)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// RFC 8705 §3.1: base64url SHA-256 of the DER certificate, computed here apart from the OP.
fn x5t(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der(name)))
}

/// `req` as it reaches the function over mutual TLS with the certificate `name`.
fn over_mtls(mut req: HttpRequest, name: &str) -> HttpRequest {
    req.client_cert = Some(ClientCert::from_der(&der(name)).unwrap());
    req
}

fn form_post(path: &str, form: &[(&str, &str)]) -> HttpRequest {
    HttpRequest::new("POST", path).form(form)
}

/// demo-mtls's signed request object (FAPI: ES256, with a binding message) for alice.
fn request_object(h: &Harness, binding_message: &str) -> String {
    let now = h.now();
    jose::sign_with_key(
        &key("pki/demo-mtls-rp"),
        &json!({"alg": "ES256", "typ": "oauth-authz-req+jwt"}),
        &json!({
            "iss": "demo-mtls", "aud": ISSUER, "iat": now, "nbf": now, "exp": now + 300,
            "jti": OsRandom.token(12), "scope": "openid email", "login_hint": "alice",
            "binding_message": binding_message,
        }),
    )
}

/// An approved request of demo-mtls, made over mutual TLS with its certificate.
async fn approved_request(h: &Harness) -> String {
    let request = request_object(h, "Transfer 250 GBP");
    let reply = h
        .send(over_mtls(
            form_post(
                "/bc-authorize",
                &[("client_id", "demo-mtls"), ("request", &request)],
            ),
            "demo-mtls-rp",
        ))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let id = reply.body["auth_req_id"].as_str().unwrap().to_owned();
    assert_eq!(h.alice_decides("approve").await.status, 204);
    h.clock.advance_secs(5);
    id
}

async fn poll(h: &Harness, id: &str, cert: Option<&str>) -> Reply {
    let req = form_post(
        "/token",
        &[
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", id),
            ("client_id", "demo-mtls"),
        ],
    );
    h.send(match cert {
        Some(name) => over_mtls(req, name),
        None => req,
    })
    .await
}

async fn userinfo(h: &Harness, token: &str, cert: Option<&str>) -> Reply {
    let req =
        HttpRequest::new("GET", "/userinfo").header("authorization", &format!("Bearer {token}"));
    h.send(match cert {
        Some(name) => over_mtls(req, name),
        None => req,
    })
    .await
}

async fn introspect(h: &Harness, token: &str) -> Value {
    let req = form_post("/introspect", &[("token", token)]).header(
        "authorization",
        &Harness::basic("demo-api", "demo-api-secret"),
    );
    let reply = h.send(req).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

/// The README's FAPI-over-mTLS walk-through: demo-mtls authenticates by its certificate at
/// every endpoint, signs its request with a binding message, and gets tokens bound to the
/// certificate (`cnf.x5t#S256`), good at `/userinfo` only over mutual TLS with it.
async fn a_fapi_client_over_mtls_gets_certificate_bound_tokens_end_to_end(h: Harness) {
    let id = approved_request(&h).await;
    let tokens = poll(&h, &id, Some("demo-mtls-rp")).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert_eq!(tokens.body["token_type"], "Bearer");
    let access = tokens.body["access_token"].as_str().unwrap();
    let refresh = tokens.body["refresh_token"].as_str().unwrap();

    let seen = introspect(&h, access).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["cnf"], json!({"x5t#S256": x5t("demo-mtls-rp")}));
    assert_eq!(seen["client_id"], "demo-mtls");

    let claims = userinfo(&h, access, Some("demo-mtls-rp")).await;
    assert_eq!(
        (claims.status, &claims.body["sub"]),
        (200, &json!("user-alice"))
    );

    // The refresh token is bound too: refreshed over the same certificate, the new access token
    // is bound to it again.
    let refreshed = h
        .send(over_mtls(
            form_post(
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "demo-mtls"),
                ],
            ),
            "demo-mtls-rp",
        ))
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let next = refreshed.body["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&h, next).await["cnf"],
        json!({"x5t#S256": x5t("demo-mtls-rp")})
    );
    let revoke = over_mtls(
        form_post("/revoke", &[("token", next), ("client_id", "demo-mtls")]),
        "demo-mtls-rp",
    );
    assert_eq!(h.send(revoke).await.status, 200);
    assert_eq!(introspect(&h, next).await, json!({"active": false}));
}

/// RFC 8705 §2.1: a `tls_client_auth` client is authenticated by a certificate whose subject
/// is the registered DN, and by nothing else.
async fn tls_client_auth_takes_only_the_registered_certificate(h: Harness) {
    let request = request_object(&h, "Transfer 250 GBP");
    let form = [("client_id", "demo-mtls"), ("request", request.as_str())];
    // Another certificate; no certificate at all (the plain endpoint); a secret instead.
    let other = h
        .send(over_mtls(
            form_post("/bc-authorize", &form),
            "demo-mtls-self",
        ))
        .await;
    other.expect_error(401, "invalid_client");
    let none = h.send(form_post("/bc-authorize", &form)).await;
    none.expect_error(401, "invalid_client");
    let secret = h
        .send(
            over_mtls(form_post("/bc-authorize", &form), "demo-mtls-rp")
                .header("authorization", &Harness::basic("demo-mtls", "guess")),
        )
        .await;
    secret.expect_error(401, "invalid_client");
    // The certificate of another client: demo-mtls-self's is not demo-mtls's subject.
    let poll_other = poll(&h, "unknown-request-id-0000000000", Some("demo-mtls-self")).await;
    poll_other.expect_error(401, "invalid_client");
    // A certificate does not stand in for a secret: demo-rp still needs its own.
    let rp = h
        .send(over_mtls(
            form_post("/introspect", &[("client_id", "demo-rp"), ("token", "t")]),
            "demo-mtls-rp",
        ))
        .await;
    rp.expect_error(401, "invalid_client");
    assert!(
        h.pushes.sent_to("user-alice").is_empty(),
        "nothing was pushed"
    );
}

/// RFC 8705 §2.1: the certificate must be issued by a trusted CA, not merely carry the
/// registered subject. The review's impersonation: a leaf with demo-mtls's subject signed with
/// the key of demo-mtls-self's self-signed certificate (which a truststore pins, and a TLS
/// terminator that takes pinned certificates as anchors lets through), and the same subject from
/// a CA nobody configured. The function refuses both whatever the terminator accepted.
async fn tls_client_auth_takes_only_a_certificate_a_configured_ca_issued(h: Harness) {
    for forged in ["impostor", "stranger"] {
        let request = request_object(&h, "Transfer 250 GBP");
        let form = [("client_id", "demo-mtls"), ("request", request.as_str())];
        h.send(over_mtls(form_post("/bc-authorize", &form), forged))
            .await
            .expect_error(401, "invalid_client");
        let introspection = form_post("/introspect", &[("client_id", "demo-mtls"), ("token", "t")]);
        h.send(over_mtls(introspection, forged))
            .await
            .expect_error(401, "invalid_client");
    }
    assert!(
        h.pushes.sent_to("user-alice").is_empty(),
        "nothing was pushed"
    );
    // The real one still authenticates.
    let introspection = form_post("/introspect", &[("client_id", "demo-mtls"), ("token", "t")]);
    let own = h.send(over_mtls(introspection, "demo-mtls-rp")).await;
    assert_eq!((own.status, own.body), (200, json!({"active": false})));
}

/// RFC 8705 §2.2: a `self_signed_tls_client_auth` client is authenticated by the certificate
/// registered in its `jwks` (here its key and its `x5c`).
async fn self_signed_tls_client_auth_takes_only_a_registered_key(h: Harness) {
    let introspect = |cert: &'static str| {
        over_mtls(
            form_post(
                "/introspect",
                &[("client_id", "demo-mtls-self"), ("token", "unknown")],
            ),
            cert,
        )
    };
    let own = h.send(introspect("demo-mtls-self")).await;
    assert_eq!(
        (own.status, own.body.clone()),
        (200, json!({"active": false}))
    );
    for other in ["demo-mtls-rp", "stranger"] {
        h.send(introspect(other))
            .await
            .expect_error(401, "invalid_client");
    }
}

/// Tokens of a client registered with `tls_client_certificate_bound_access_tokens` are bound to
/// the certificate of the token request, whatever the client authenticates with: the token
/// request needs one; `/userinfo` and a refresh need the same one.
async fn bound_tokens_need_the_certificate_they_are_bound_to(h: Harness) {
    // A private_key_jwt client (demo-fapi's key) with certificate-bound JWT access tokens.
    let mut client = common::seed()
        .clients
        .into_iter()
        .find(|c| c.client.client_id == "demo-fapi")
        .unwrap()
        .client;
    client.client_id = "bound-rp".into();
    client.backchannel_authentication_request_signing_alg = None;
    client.access_token_format = ciba_shared::domain::AccessTokenFormat::Jwt;
    client.tls.tls_client_certificate_bound_access_tokens = true;
    h.store.clients().put_client(&client).await.unwrap();
    let client_id = client.client_id;
    let assertion = || {
        let now = h.now();
        jose::sign_with_key(
            &key("demo-fapi-rp"),
            &json!({"alg": "ES256", "typ": "JWT"}),
            &json!({
                "iss": client_id, "sub": client_id, "aud": ISSUER,
                "iat": now, "exp": now + 60, "jti": OsRandom.token(12)
            }),
        )
    };
    let with_assertion = |path: &str, params: &[(&str, &str)], a: &str| {
        let mut form = vec![
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", a),
        ];
        form.extend_from_slice(params);
        form_post(path, &form)
    };
    let a = assertion();
    let started = h
        .send(with_assertion(
            "/bc-authorize",
            &[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("binding_message", "BOUND"),
            ],
            &a,
        ))
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let id = started.body["auth_req_id"].as_str().unwrap().to_owned();
    assert_eq!(h.alice_decides("approve").await.status, 204);
    h.clock.advance_secs(5);

    // Without a certificate the token request is refused, and the request is not spent.
    let a = assertion();
    let grant = [("grant_type", CIBA_GRANT), ("auth_req_id", id.as_str())];
    h.send(with_assertion("/token", &grant, &a))
        .await
        .expect_error(400, "invalid_request");
    let a = assertion();
    let tokens = h
        .send(over_mtls(with_assertion("/token", &grant, &a), "stranger"))
        .await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let access = tokens.body["access_token"].as_str().unwrap();
    let refresh = tokens.body["refresh_token"].as_str().unwrap();

    // RFC 9068 + RFC 8705 §3.1: the JWT carries the confirmation, as introspection does.
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["cnf"], json!({"x5t#S256": x5t("stranger")}));
    assert_eq!(introspect(&h, access).await["cnf"], claims["cnf"]);

    // `/userinfo`: only over mutual TLS with that very certificate.
    assert_eq!(userinfo(&h, access, Some("stranger")).await.status, 200);
    for cert in [None, Some("demo-mtls-rp")] {
        let refused = userinfo(&h, access, cert).await;
        refused.expect_error(401, "invalid_token");
        let challenge = refused.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    // A refresh over another certificate fails and changes nothing; over the same one it works.
    let refresh_grant = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let a = assertion();
    h.send(over_mtls(
        with_assertion("/token", &refresh_grant, &a),
        "demo-mtls-rp",
    ))
    .await
    .expect_error(400, "invalid_grant");
    let a = assertion();
    let refreshed = h
        .send(over_mtls(
            with_assertion("/token", &refresh_grant, &a),
            "stranger",
        ))
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
}

/// Registration (RFC 7591 with RFC 8705 §2.1.2, §3.4): the mTLS methods with their metadata,
/// echoed back; what does not hold together refused with `invalid_client_metadata`.
async fn registration_takes_the_mtls_metadata_and_refuses_what_is_inconsistent(h: Harness) {
    let register = |body: Value| {
        HttpRequest::new("POST", "/register").body("application/json", body.to_string())
    };
    let mtls_client = json!({
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": "rp.demo-bank.example",
        "tls_client_certificate_bound_access_tokens": true,
        "backchannel_token_delivery_mode": "poll",
    });
    let h = common::reconfigured(h, |c| c.registration = Registration::Open);
    let ok = h.send(register(mtls_client)).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["token_endpoint_auth_method"], "tls_client_auth");
    assert_eq!(ok.body["tls_client_auth_san_dns"], "rp.demo-bank.example");
    assert!(ok.body.get("client_secret").is_none(), "{:?}", ok.body);
    // The registered client authenticates with demo-mtls-rp's certificate (its DNS SAN).
    let id = ok.body["client_id"].as_str().unwrap();
    let by_cert = h
        .send(over_mtls(
            form_post("/introspect", &[("client_id", id), ("token", "t")]),
            "demo-mtls-rp",
        ))
        .await;
    assert_eq!(by_cert.status, 200, "{:?}", by_cert.body);

    for body in [
        json!({"token_endpoint_auth_method": "tls_client_auth", "backchannel_token_delivery_mode": "poll"}),
        json!({"token_endpoint_auth_method": "tls_client_auth", "backchannel_token_delivery_mode": "poll",
               "tls_client_auth_subject_dn": "CN=a", "tls_client_auth_san_dns": "a.example"}),
        json!({"token_endpoint_auth_method": "self_signed_tls_client_auth", "backchannel_token_delivery_mode": "poll"}),
        json!({"backchannel_token_delivery_mode": "push",
               "backchannel_client_notification_endpoint": "http://127.0.0.1:9/cb",
               "tls_client_certificate_bound_access_tokens": true}),
        // FAPI: tls_client_auth is allowed, but a request object and a sender constraint are
        // still required; push never.
        json!({"fapi": true, "token_endpoint_auth_method": "tls_client_auth",
               "tls_client_auth_subject_dn": "CN=demo-mtls-rp,O=Demo Bank,C=GB",
               "backchannel_token_delivery_mode": "poll"}),
    ] {
        h.send(register(body.clone()))
            .await
            .expect_error(400, "invalid_client_metadata");
    }
}
