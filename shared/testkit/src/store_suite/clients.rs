//! Cases of `Clients`: registered clients.

use std::sync::Arc;

use super::client;
use ciba_shared::store::Store;

pub async fn client_round_trips(store: Arc<dyn Store>) {
    let c = client("c1");
    store.clients().put_client(&c).await.unwrap();
    assert_eq!(store.clients().get_client("c1").await.unwrap(), Some(c));
}

pub async fn create_client_never_overwrites_a_taken_client_id(store: Arc<dyn Store>) {
    let first = client("c1");
    assert!(store.clients().create_client(&first).await.unwrap());
    let mut second = client("c1");
    second.client_secret_hash = Some(ciba_shared::secret::hash("another secret"));
    second.resource_server = true;
    assert!(!store.clients().create_client(&second).await.unwrap());
    assert_eq!(store.clients().get_client("c1").await.unwrap(), Some(first));
}

pub async fn unknown_client_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.clients().get_client("nobody").await.unwrap(), None);
}
