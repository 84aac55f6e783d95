//! Every file in `events/` is an API Gateway HTTP API (payload 2.0) event, the input of
//! `sam local invoke -e` and `cargo lambda invoke --data-file`. Each is fed through its
//! function's real handler here (seeded store), so the fixtures cannot rot.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use lambda_http::Body;
use serde_json::Value;

/// What each event must get: `tests/event-expectations.json`, shared with `tests/rie.py`, which
/// sends the same files to the built Lambdas under the official runtime emulator.
fn expectations() -> BTreeMap<String, Value> {
    let path = format!(
        "{}/tests/event-expectations.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all.into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .collect()
}

/// What is wrong with an HTTP answer, judged as `tests/rie.py` judges it.
fn problems(expected: &Value, response: &lambda_http::Response<Body>) -> Vec<String> {
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str::<Value>(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let mut out = Vec::new();
    if u64::from(response.status().as_u16()) != expected["status"].as_u64().unwrap() {
        out.push(format!("status {}", response.status()));
    }
    if let Some(code) = expected["error"].as_str() {
        let keys: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        if keys != ["error", "error_description"] || body["error"] != code {
            out.push(format!("error body {body}, expected {code}"));
        }
    }
    for key in expected["has"].as_array().into_iter().flatten() {
        if body.get(key.as_str().unwrap()).is_none() {
            out.push(format!("no {key} in {body}"));
        }
    }
    if let Some(exact) = expected.get("body")
        && body != *exact
    {
        out.push(format!("body {body}, expected {exact}"));
    }
    for (name, value) in expected["headers"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap();
        let got = response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = match value.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == value,
        };
        if !ok {
            out.push(format!("header {name}: {got:?}, expected {value:?}"));
        }
    }
    out
}

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
    let expected: Vec<String> = expectations().into_keys().collect();
    assert_eq!(files, expected);
}

#[tokio::test]
async fn every_event_gets_its_expected_answer_from_its_handler() {
    let h = Harness::memory().await;
    let expectations = expectations();
    for (name, json) in events() {
        let expected = &expectations[&name];
        if expected.get("result").is_some() {
            continue;
        }
        let request = lambda_http::request::from_str(&json)
            .unwrap_or_else(|e| panic!("events/{name}.json is not an API Gateway v2 event: {e}"));
        let response = h.api.handle(request).await;
        let problems = problems(expected, &response);
        assert!(problems.is_empty(), "events/{name}.json: {problems:?}");
    }
}

#[tokio::test]
async fn notifier_event_is_a_stream_batch_the_notifier_queues() {
    let event = serde_json::from_str(&events()["notifier"])
        .expect("events/notifier.json is not a DynamoDB stream event");
    let changes = ciba_shared::store::dynamodb::stream::changes(&event);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].auth_req_id, "unknown-auth-req-id");
    let queue = ciba_testkit::RecordingQueue::default();
    let response = serde_json::to_value(notifier::handle(&queue, &event).await).unwrap();
    assert_eq!(response, expectations()["notifier"]["result"]);
    assert_eq!(queue.queued_ids(), ["unknown-auth-req-id"]);
}

#[tokio::test]
async fn deliverer_event_is_a_queue_batch_the_deliverer_reads() {
    let h = Harness::memory().await;
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&events()["deliverer"])
            .expect("events/deliverer.json is not an SQS event");
    let notifier = ciba_shared::notify::Notifier {
        ctx: h.api.ctx.clone(),
        callback: std::sync::Arc::new(
            ciba_shared::notify::HttpCallbackSender::new(
                std::time::Duration::from_secs(1),
                ciba_shared::callback_policy::AddressPolicy::for_op(
                    h.api.ctx.config.runs_locally(),
                ),
            )
            .unwrap(),
        ),
        settings: ciba_shared::notify::NotifierSettings {
            attempts: 1,
            first_retry: std::time::Duration::from_millis(1),
            push_token_key: ciba_shared::secret::Secret::new("k".repeat(32)),
        },
    };
    let queue = ciba_testkit::RecordingQueue::default();
    let response =
        serde_json::to_value(deliverer::handle(&notifier, &queue, &event).await).unwrap();
    assert_eq!(
        response,
        expectations()["deliverer"]["result"],
        "an unknown request is skipped"
    );
    assert!(queue.parked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn expiry_sweeper_event_runs_a_sweep() {
    let h = Harness::memory().await;
    let event: expiry_sweeper::ScheduledEvent = serde_json::from_str(&events()["expiry-sweeper"])
        .expect("events/expiry-sweeper.json is not a scheduled event");
    assert_eq!(event.detail_type.as_deref(), Some("Scheduled Event"));
    assert_eq!(event.source.as_deref(), Some("aws.scheduler"));
    let expired = expiry_sweeper::handle(&h.api.ctx).await.unwrap();
    assert_eq!(
        serde_json::json!({ "expired": expired }),
        expectations()["expiry-sweeper"]["result"]
    );
}

/// The mutual TLS events carry the client certificate where API Gateway puts it for payload 2.0
/// (`requestContext.authentication.clientCert`), and `lambda_http` hands it to the handler: the
/// PEM as the demo PKI wrote it, and the subject, issuer, serial and validity as API Gateway
/// formats them.
#[test]
fn mtls_events_carry_the_client_certificate_where_api_gateway_puts_it() {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let pki = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/keys/pki/{name}.crt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    for (event, cert, subject) in [
        (
            "introspect-mtls",
            "demo-mtls-rp",
            "CN=demo-mtls-rp,O=Demo Bank,C=GB",
        ),
        (
            "introspect-mtls-wrong-cert",
            "demo-mtls-self",
            "CN=demo-mtls-self,O=Demo Shop,C=GB",
        ),
    ] {
        let request = lambda_http::request::from_str(&events()[event]).unwrap();
        let RequestContext::ApiGatewayV2(context) = request.request_context() else {
            panic!("events/{event}.json is not an HTTP API payload 2.0 event");
        };
        let client_cert = context
            .authentication
            .and_then(|a| a.client_cert)
            .unwrap_or_else(|| panic!("events/{event}.json has no client certificate"));
        assert_eq!(client_cert.client_cert_pem.as_deref(), Some(&*pki(cert)));
        assert_eq!(client_cert.subject_dn.as_deref(), Some(subject), "{event}");
        let serial = client_cert.serial_number.unwrap();
        assert!(
            serial
                .split(':')
                .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit())),
            "{event}: serial {serial} is not colon-separated hex bytes"
        );
        let validity = client_cert.validity;
        for date in [validity.not_before.unwrap(), validity.not_after.unwrap()] {
            assert!(
                date.ends_with(" GMT"),
                "{event}: {date} is not OpenSSL's format"
            );
        }
        assert!(request.headers().get("authorization").is_none());
    }
}
