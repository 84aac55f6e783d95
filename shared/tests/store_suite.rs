//! The store suite (`ciba_testkit::store_suite`) on both adapters: the in-memory store, and
//! DynamoDB on a fresh DynamoDB Local table per case (skipped without `CIBA_DYNAMODB_ENDPOINT`).

mod memory {
    ciba_testkit::store_suite!(async {
        std::sync::Arc::new(ciba_shared::store::MemoryStore::new())
    });
}

mod dynamodb {
    ciba_testkit::store_suite!(optional ciba_testkit::dynamodb::store_from_env());
}
