//! The model-based test of the store (`ciba_testkit::store_model`) on both adapters: the
//! in-memory store, and DynamoDB on a fresh DynamoDB Local table per case (skipped without
//! `CIBA_DYNAMODB_ENDPOINT`). `PROPTEST_CASES` sets the number of cases of both.

use std::sync::Arc;

use ciba_shared::store::{MemoryStore, Store};
use ciba_testkit::dynamodb::store_from_env;
use ciba_testkit::store_model::check;

/// In memory a case takes milliseconds.
const MEMORY_CASES: u32 = 256;
/// On DynamoDB Local a case takes about half a second.
const DYNAMODB_CASES: u32 = 16;

#[test]
fn memory_store_keeps_the_rules_and_the_model_under_any_interleaving() {
    check(MEMORY_CASES, || async {
        Some(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
    });
}

#[test]
fn dynamodb_store_keeps_the_rules_and_the_model_under_any_interleaving() {
    check(DYNAMODB_CASES, || async {
        store_from_env().await.map(|s| s as Arc<dyn Store>)
    });
}
