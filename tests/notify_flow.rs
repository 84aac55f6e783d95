//! Ping and push delivery end to end (CIBA Core §10.2, §10.3, §12): a local RP callback server
//! receives the notifications; faults (500s, redirects) and expiry are covered. Every scenario
//! runs on the in-memory store and on DynamoDB Local.

mod common;

use ciba_local::event::HttpRequest;
use ciba_shared::domain::{AuthMethod, Client, DeliveryMode};
use ciba_shared::jose;
use common::callback::CallbackServer;
use common::{Harness, Reply};
use jsonwebtoken::Algorithm;
use serde_json::json;

on_both_stores!(
    ping_client_is_notified_on_approval_and_then_redeems,
    push_client_receives_its_tokens_and_may_not_poll,
    push_denial_delivers_access_denied,
    ping_expiry_is_notified_and_token_answers_expired_token,
    push_expiry_delivers_expired_token,
    callback_failing_twice_then_succeeding_is_delivered_once,
    pushed_tokens_are_the_same_on_every_attempt,
    redirecting_callback_is_not_followed_and_is_parked,
    ping_request_without_notification_token_is_invalid_request,
    a_black_holed_endpoint_delays_no_other_clients_notification,
);

const CNT: &str = "8d67dc78-7faa-4d41-aabd-67707b374255";

async fn register(h: &Harness, id: &str, mode: DeliveryMode, endpoint: &str) {
    let client = Client {
        client_id: id.into(),
        client_name: Some(format!("{id} shop")),
        client_secret_hash: Some(ciba_shared::secret::hash("secret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        jwks: None,
        backchannel_token_delivery_mode: mode,
        backchannel_client_notification_endpoint: Some(endpoint.into()),
        backchannel_authentication_request_signing_alg: None,
        backchannel_user_code_parameter: false,
        resource_server: false,
        access_token_format: Default::default(),
        fapi: false,
        authorization_details_types: None,
        tls: Default::default(),
    };
    h.store.clients().put_client(&client).await.unwrap();
}

async fn request_as(h: &Harness, id: &str) -> String {
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic(id, "secret"))
        .form(&[
            ("scope", "openid email"),
            ("login_hint", "alice"),
            ("client_notification_token", CNT),
        ]);
    let reply = h.send(req).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["auth_req_id"].as_str().unwrap().to_owned()
}

async fn poll_as(h: &Harness, id: &str, auth_req_id: &str) -> Reply {
    h.poll_as(id, "secret", auth_req_id).await
}

async fn ping_client_is_notified_on_approval_and_then_redeems(h: Harness) {
    let rp = CallbackServer::start(&[]).await;
    register(&h, "ping-rp", DeliveryMode::Ping, &rp.url).await;
    let id = request_as(&h, "ping-rp").await;
    assert!(rp.received().is_empty(), "nothing before the decision");
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let got = rp.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/ciba/callback");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {CNT}").as_str())
    );
    assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(got[0].body, json!({"auth_req_id": id}));
    let tokens = poll_as(&h, "ping-rp", &id).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
}

async fn push_client_receives_its_tokens_and_may_not_poll(h: Harness) {
    let rp = CallbackServer::start(&[]).await;
    register(&h, "push-rp", DeliveryMode::Push, &rp.url).await;
    let id = request_as(&h, "push-rp").await;
    poll_as(&h, "push-rp", &id)
        .await
        .expect_error(400, "unauthorized_client");
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let got = rp.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {CNT}").as_str())
    );
    let body = &got[0].body;
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "auth_req_id",
            "expires_in",
            "id_token",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(body["auth_req_id"], id.as_str());
    assert_eq!(body["token_type"], "Bearer");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(h.jwks().await).unwrap();
    let claims = jose::verify(
        body["id_token"].as_str().unwrap(),
        &jwks,
        &[Algorithm::ES256],
    )
    .unwrap()
    .claims;
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        id.as_str()
    );
    assert_eq!(claims["aud"], "push-rp");
    let info = h.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info.status, 200,
        "the pushed access token is the issued one"
    );
    poll_as(&h, "push-rp", &id)
        .await
        .expect_error(400, "unauthorized_client");
}

async fn push_denial_delivers_access_denied(h: Harness) {
    let rp = CallbackServer::start(&[]).await;
    register(&h, "push-rp", DeliveryMode::Push, &rp.url).await;
    let id = request_as(&h, "push-rp").await;
    assert_eq!(h.alice_decides("deny").await.status, 204);
    let got = rp.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body,
        json!({"auth_req_id": id, "error": "access_denied", "error_description": "the user denied the request"})
    );
}

async fn ping_expiry_is_notified_and_token_answers_expired_token(h: Harness) {
    let rp = CallbackServer::start(&[]).await;
    register(&h, "ping-rp", DeliveryMode::Ping, &rp.url).await;
    let id = request_as(&h, "ping-rp").await;
    h.clock.advance_secs(599);
    h.notifier.sweep().await;
    assert!(rp.settle().await.is_empty(), "not yet expired");
    h.clock.advance_secs(1);
    h.notifier.sweep().await;
    let got = rp.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, json!({"auth_req_id": id}));
    poll_as(&h, "ping-rp", &id)
        .await
        .expect_error(400, "expired_token");
    h.alice_decides("approve")
        .await
        .expect_error(400, "expired_token");
    h.notifier.sweep().await;
    assert_eq!(rp.settle().await.len(), 1, "expiry is notified once");
}

async fn push_expiry_delivers_expired_token(h: Harness) {
    let rp = CallbackServer::start(&[]).await;
    register(&h, "push-rp", DeliveryMode::Push, &rp.url).await;
    let id = request_as(&h, "push-rp").await;
    h.clock.advance_secs(600);
    h.notifier.sweep().await;
    let got = rp.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].body,
        json!({"auth_req_id": id, "error": "expired_token", "error_description": "the authentication request has expired"})
    );
}

async fn callback_failing_twice_then_succeeding_is_delivered_once(h: Harness) {
    let rp = CallbackServer::start(&[500, 500, 204]).await;
    register(&h, "ping-rp", DeliveryMode::Ping, &rp.url).await;
    let id = request_as(&h, "ping-rp").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let got = rp.wait_for(3).await;
    assert_eq!(
        got.len(),
        3,
        "two failures, one success, nothing after: {got:?}"
    );
    assert!(got.iter().all(|r| r.body == json!({"auth_req_id": id})));
    assert!(h.notifier.dead_letters().is_empty());
    let stored = h
        .store
        .requests()
        .get_auth_request(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.notified_at.is_some());
}

async fn a_black_holed_endpoint_delays_no_other_clients_notification(h: Harness) {
    // Accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/cb", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hole.accept().await {
            held.push(stream);
        }
    });
    let healthy = CallbackServer::start(&[]).await;
    register(&h, "dead-rp", DeliveryMode::Ping, &dead).await;
    register(&h, "good-rp", DeliveryMode::Ping, &healthy.url).await;
    request_as(&h, "dead-rp").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let id = request_as(&h, "good-rp").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let got = healthy.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, json!({"auth_req_id": id}));
    assert!(
        h.notifier.dead_letters().is_empty(),
        "told while the dead endpoint's attempts still hang (5 s each, 3 of them)"
    );
}

async fn pushed_tokens_are_the_same_on_every_attempt(h: Harness) {
    let rp = CallbackServer::start(&[503, 204]).await;
    register(&h, "push-rp", DeliveryMode::Push, &rp.url).await;
    request_as(&h, "push-rp").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    let got = rp.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].body["access_token"], got[1].body["access_token"]);
    assert_eq!(got[0].body["refresh_token"], got[1].body["refresh_token"]);
    let info = h
        .userinfo(got[1].body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info.status, 200);
}

async fn redirecting_callback_is_not_followed_and_is_parked(h: Harness) {
    let rp = CallbackServer::start(&[301]).await;
    register(&h, "ping-rp", DeliveryMode::Ping, &rp.url).await;
    let id = request_as(&h, "ping-rp").await;
    assert_eq!(h.alice_decides("approve").await.status, 204);
    rp.wait_for(1).await;
    let got = rp.settle().await;
    assert_eq!(got.len(), 1, "the redirect is not followed: {got:?}");
    assert_eq!(got[0].path, "/ciba/callback");
    let dead = h.notifier.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].auth_req_id, id);
    let listed = h
        .send(HttpRequest::new("GET", "/_local/dead-letters"))
        .await;
    assert_eq!(listed.body[0]["auth_req_id"], id.as_str());
}

async fn ping_request_without_notification_token_is_invalid_request(h: Harness) {
    register(
        &h,
        "ping-rp",
        DeliveryMode::Ping,
        "https://rp.example.com/cb",
    )
    .await;
    let req = HttpRequest::new("POST", "/bc-authorize")
        .header("authorization", &Harness::basic("ping-rp", "secret"))
        .form(&[("scope", "openid"), ("login_hint", "alice")]);
    h.send(req).await.expect_error(400, "invalid_request");
}
