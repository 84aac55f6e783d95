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
