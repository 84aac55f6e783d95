//! Cases of `Clients`: registered clients.

use std::sync::Arc;

use super::client;
use ciba_shared::store::Store;

pub async fn client_round_trips(store: Arc<dyn Store>) {
    let c = client("c1");
    store.clients().put_client(&c).await.unwrap();
    assert_eq!(store.clients().get_client("c1").await.unwrap(), Some(c));
}

pub async fn unknown_client_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.clients().get_client("nobody").await.unwrap(), None);
}
