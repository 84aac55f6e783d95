//! `ciba-admin resource-server` as an operator runs it: the built binary against a DynamoDB Local
//! table (skipped without `CIBA_DYNAMODB_ENDPOINT`).

mod common;

use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciba_shared::client_auth;
use ciba_shared::config::Config;
use ciba_shared::http::Form;
use ciba_shared::store::Clients;
use common::emulator;
use lambda_http::http::{HeaderMap, HeaderValue};

fn admin(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciba-admin"))
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .output()
        .expect("ciba-admin runs")
}

/// The secret is on stdout alone (so `$(…)` captures it), stored only as a hash, and
/// authenticates the new client as `client_secret_basic` at the token-family endpoints.
#[tokio::test]
async fn resource_server_prints_a_secret_that_authenticates_the_stored_resource_server() {
    let Some(endpoint) = emulator::endpoint("DYNAMODB") else {
        return;
    };
    let table = ciba_testkit::dynamodb::table_from_env().await.unwrap();
    let out = admin(
        &endpoint,
        &[
            "resource-server",
            "--client-id",
            "payments-api",
            "--name",
            "Payments API",
            "--table",
            &table.table,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let secret = String::from_utf8(out.stdout).unwrap();
    let secret = secret.trim_end_matches('\n');
    assert_eq!(secret.len(), 43, "256 bits in base64url: {secret:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resource server payments-api created") && !stderr.contains(secret),
        "{stderr}"
    );

    let stored = table
        .store
        .get_client("payments-api")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.resource_server);
    assert_eq!(stored.client_name.as_deref(), Some("Payments API"));
    assert_ne!(stored.client_secret_hash.as_deref(), Some(secret));

    let mut headers = HeaderMap::new();
    let basic = STANDARD.encode(format!("payments-api:{secret}"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
    );
    let config = Config::new("https://op.example.com").unwrap();
    let form = Form::parse(b"token=t").unwrap();
    let credentials = client_auth::Credentials {
        headers: &headers,
        form: &form,
        cert: None,
    };
    let client = client_auth::authenticate(credentials, table.store.as_ref(), &config, 0)
        .await
        .expect("the printed secret authenticates the resource server");
    assert_eq!(client.client_id, "payments-api");
}

/// An operator who reuses a client id must not replace that client's secret and metadata
/// (and with them what it may see): the command fails and the stored client is unchanged.
#[tokio::test]
async fn resource_server_refuses_a_client_id_already_taken_and_changes_nothing() {
    let Some(endpoint) = emulator::endpoint("DYNAMODB") else {
        return;
    };
    let table = ciba_testkit::dynamodb::table_from_env().await.unwrap();
    let args = [
        "resource-server",
        "--client-id",
        "payments-api",
        "--table",
        &table.table,
    ];
    assert!(admin(&endpoint, &args).status.success());
    let before = table.store.get_client("payments-api").await.unwrap();

    let again = admin(&endpoint, &args);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(again.stdout.is_empty(), "no secret printed for nothing");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("client payments-api already exists"),
        "{stderr}"
    );
    assert_eq!(
        table.store.get_client("payments-api").await.unwrap(),
        before
    );
}

/// `ciba-admin evidence` on a payment alice approved: the kept decision verifies (exit 0, the
/// report on stdout); once the stored amount is changed it does not (exit 1); a request nobody
/// decided has no evidence.
#[tokio::test]
async fn evidence_prints_and_verifies_the_kept_decision_and_catches_a_changed_amount() {
    let Some(endpoint) = emulator::endpoint("DYNAMODB") else {
        return;
    };
    let table = ciba_testkit::dynamodb::table_from_env().await.unwrap();
    let h = common::Harness::with_store(table.store.clone()).await;
    let payment = serde_json::json!([{"type": "payment_initiation",
        "instructedAmount": {"currency": "EUR", "amount": "250.00"},
        "creditorName": "Landlord", "creditorAccount": {"iban": "DE89370400440532013000"}}]);
    let started = h
        .bc_authorize(&[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("authorization_details", &payment.to_string()),
        ])
        .await;
    let id = started.body["auth_req_id"].as_str().unwrap().to_owned();
    assert_eq!(h.alice_decides("approve").await.status, 204);
    assert_eq!(h.poll(&id).await.status, 200);

    let out = admin(&endpoint, &["evidence", &id, "--table", &table.table]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["device"]["device_id"], "alice-phone");
    assert_eq!(report["shown"]["authorization_details"], payment);
    assert_eq!(report["decision"]["claims"]["action"], "approve");

    // Someone with write access to the table changes the amount: the evidence no longer holds.
    let mut changed = payment.clone();
    changed[0]["instructedAmount"]["amount"] = "2500.00".into();
    table
        .client
        .update_item()
        .table_name(&table.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "AUTHREQ#{}",
                id.split('.').next().unwrap()
            )),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("AUTHREQ".into()),
        )
        .update_expression("SET authorization_details = :d")
        .expression_attribute_values(
            ":d",
            aws_sdk_dynamodb::types::AttributeValue::S(changed.to_string()),
        )
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .unwrap();
    let out = admin(&endpoint, &["evidence", &id, "--table", &table.table]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checks"]["txn_hash_matches_what_was_shown"], false);

    // Not decided: no evidence; unknown: said so.
    let pending = h
        .bc_authorize(&[("scope", "openid"), ("login_hint", "alice")])
        .await;
    let pending = pending.body["auth_req_id"].as_str().unwrap();
    let out = admin(&endpoint, &["evidence", pending, "--table", &table.table]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no decision evidence"));
    let out = admin(
        &endpoint,
        &["evidence", "nope.nope", "--table", &table.table],
    );
    assert_eq!(out.status.code(), Some(1));
}
