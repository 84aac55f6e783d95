//! Every file in `events/` is an API Gateway HTTP API (payload 2.0) event, the input of
//! `sam local invoke -e` and `cargo lambda invoke --data-file`. Each is fed through its
//! function's real handler here (seeded store), so the fixtures cannot rot.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use lambda_http::Body;

/// Events of the functions that API Gateway does not invoke: the stream consumer and the
/// scheduled sweep.
const NON_HTTP: &[&str] = &["notifier", "expiry-sweeper"];

/// event file → (status, `error` code or "" for success).
const EXPECTED: &[(&str, u16, &str)] = &[
    ("discovery", 200, ""),
    ("jwks", 200, ""),
    ("register", 401, "invalid_token"),
    ("bc-authorize", 200, ""),
    ("bc-authorize-wrong-secret", 401, "invalid_client"),
    ("bc-authorize-unknown-user", 400, "unknown_user_id"),
    ("bc-authorize-no-openid", 400, "invalid_request"),
    ("bc-authorize-bad-client-assertion", 401, "invalid_client"),
    ("token", 400, "invalid_grant"),
    ("token-unsupported-grant", 400, "unsupported_grant_type"),
    ("token-no-client-auth", 401, "invalid_client"),
    ("userinfo", 401, "invalid_token"),
    ("userinfo-post", 401, "invalid_token"),
    ("device-decision", 400, "invalid_request"),
    ("device-register", 400, "invalid_grant"),
    ("device-register-bad-key", 400, "invalid_request"),
];

fn events() -> BTreeMap<String, String> {
    let dir = format!("{}/events", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn every_event_file_has_an_expectation_and_every_expectation_a_file() {
    let files: Vec<String> = events().into_keys().collect();
    let mut expected: Vec<String> = EXPECTED.iter().map(|(n, ..)| n.to_string()).collect();
    expected.extend(NON_HTTP.iter().map(|n| n.to_string()));
    expected.sort();
    assert_eq!(files, expected);
}

#[tokio::test]
async fn every_event_gets_its_expected_answer_from_its_handler() {
    let h = Harness::memory().await;
    for (name, json) in events() {
        if NON_HTTP.contains(&name.as_str()) {
            continue;
        }
        let (_, status, code) = EXPECTED.iter().find(|(n, ..)| *n == name).unwrap();
        let request = lambda_http::request::from_str(&json)
            .unwrap_or_else(|e| panic!("events/{name}.json is not an API Gateway v2 event: {e}"));
        let response = h.api.handle(request).await;
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str::<serde_json::Value>(t).unwrap(),
            _ => serde_json::Value::Null,
        };
        assert_eq!(
            response.status().as_u16(),
            *status,
            "events/{name}.json: {body}"
        );
        assert_eq!(
            body["error"].as_str().unwrap_or(""),
            *code,
            "events/{name}.json: {body}"
        );
    }
}

fn event(name: &str) -> serde_json::Value {
    serde_json::from_str(&events()[name]).unwrap()
}

#[tokio::test]
async fn notifier_event_is_a_stream_batch_the_notifier_reads() {
    let h = Harness::memory().await;
    let event = event("notifier");
    let changes = notifier::changes(&event);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].auth_req_id, "unknown-auth-req-id");
    let notifier = ciba_shared::notify::Notifier {
        ctx: h.api.ctx.clone(),
        callback: std::sync::Arc::new(
            ciba_shared::notify::HttpCallbackSender::new(std::time::Duration::from_secs(1))
                .unwrap(),
        ),
        settings: ciba_shared::notify::NotifierSettings {
            attempts: 1,
            first_retry: std::time::Duration::from_millis(1),
            push_token_key: ciba_shared::secret::Secret::new("k".repeat(32)),
        },
    };
    let response = notifier::handle(&notifier, &event).await;
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": []}),
        "an unknown request is skipped"
    );
}

#[tokio::test]
async fn expiry_sweeper_event_runs_a_sweep() {
    let h = Harness::memory().await;
    assert_eq!(event("expiry-sweeper")["detail-type"], "Scheduled Event");
    assert_eq!(expiry_sweeper::handle(&h.api.ctx).await.unwrap(), 0);
}
