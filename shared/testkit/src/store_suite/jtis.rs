//! Cases of `Jtis`: single use of a `jti` within its scope until it expires.

use std::sync::Arc;

use super::{NOW, jti};
use ciba_shared::store::Store;

pub async fn jti_is_accepted_once(store: Arc<dyn Store>) {
    let j = jti("c1", "j1");
    assert!(store.jtis().use_jti(&j, NOW).await.unwrap());
    assert!(!store.jtis().use_jti(&j, NOW + 1).await.unwrap());
    assert!(
        store.jtis().use_jti(&jti("c2", "j1"), NOW).await.unwrap(),
        "jti is per scope"
    );
}

pub async fn expired_jti_may_be_used_again(store: Arc<dyn Store>) {
    let j = jti("c1", "j1");
    assert!(store.jtis().use_jti(&j, NOW).await.unwrap());
    assert!(store.jtis().use_jti(&j, j.expires_at + 1).await.unwrap());
}
