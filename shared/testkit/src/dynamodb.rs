//! DynamoDB Local for tests: a fresh, uniquely named table per test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ciba_shared::store::DynamoStore;
use ciba_shared::store::dynamodb::{create_table, local_client};

/// A fresh table in DynamoDB Local, with the client that reaches it and the store on it.
pub struct LocalTable {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub store: Arc<DynamoStore>,
}

/// A fresh table in the DynamoDB Local at `CIBA_DYNAMODB_ENDPOINT`. Without that variable:
/// `None` (the test skips), or a panic when `CIBA_REQUIRE_DYNAMODB=1`.
pub async fn table_from_env() -> Option<LocalTable> {
    let endpoint = match std::env::var("CIBA_DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint,
        _ => {
            if std::env::var("CIBA_REQUIRE_DYNAMODB").is_ok_and(|v| v == "1") {
                panic!(
                    "CIBA_REQUIRE_DYNAMODB=1 but CIBA_DYNAMODB_ENDPOINT is not set: start \
                     DynamoDB Local (tests/run does) and set it, e.g. http://127.0.0.1:8000"
                );
            }
            eprintln!("skipping: CIBA_DYNAMODB_ENDPOINT not set");
            return None;
        }
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let table = format!(
        "ciba-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let client = local_client(endpoint.trim()).await;
    if let Err(e) = create_table(&client, &table).await {
        panic!("cannot create table {table} at {endpoint}: {e}");
    }
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    Some(LocalTable {
        client,
        table,
        store,
    })
}

/// The store on a fresh table (see `table_from_env`).
pub async fn store_from_env() -> Option<Arc<DynamoStore>> {
    table_from_env().await.map(|t| t.store)
}
