//! Cases of `Tokens`: refresh token rotation.

use std::sync::Arc;

use super::{NOW, approved, token};
use ciba_shared::domain::TokenKind;
use ciba_shared::store::{RotateError, Store};

async fn with_refresh_token(store: &Arc<dyn Store>) {
    approved(store, "r1").await;
    store
        .requests()
        .redeem("r1", NOW + 20, &[token("rt-1", TokenKind::Refresh)])
        .await
        .unwrap();
}

pub async fn refresh_token_rotates_once(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let next = [
        token("at-2", TokenKind::Access),
        token("rt-2", TokenKind::Refresh),
    ];
    store
        .tokens()
        .rotate_refresh_token("rt-1", "c1", NOW + 30, &next)
        .await
        .unwrap();
    assert_eq!(
        store.tokens().get_token("rt-1").await.unwrap(),
        None,
        "the old one is spent"
    );
    assert_eq!(
        store.tokens().get_token("rt-2").await.unwrap(),
        Some(next[1].clone())
    );
    let again = store
        .tokens()
        .rotate_refresh_token("rt-1", "c1", NOW + 31, &[token("rt-3", TokenKind::Refresh)])
        .await;
    assert!(matches!(again, Err(RotateError::Invalid)), "{again:?}");
    assert_eq!(store.tokens().get_token("rt-3").await.unwrap(), None);
}

pub async fn refresh_token_of_another_client_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let stolen = store
        .tokens()
        .rotate_refresh_token("rt-1", "c2", NOW + 30, &[token("rt-2", TokenKind::Refresh)])
        .await;
    assert!(matches!(stolen, Err(RotateError::Invalid)), "{stolen:?}");
    assert!(store.tokens().get_token("rt-1").await.unwrap().is_some());
    assert_eq!(store.tokens().get_token("rt-2").await.unwrap(), None);
}

pub async fn expired_refresh_token_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let late = store
        .tokens()
        .rotate_refresh_token(
            "rt-1",
            "c1",
            NOW + 3600,
            &[token("rt-2", TokenKind::Refresh)],
        )
        .await;
    assert!(matches!(late, Err(RotateError::Invalid)), "{late:?}");
}
