//! Cases of `Tokens`: refresh token rotation, reuse, families and revocation.

use std::sync::Arc;

use super::{NOW, approved, family, token};
use ciba_shared::domain::{Family, TokenKind};
use ciba_shared::store::{RotateError, Store};

async fn with_refresh_token(store: &Arc<dyn Store>) {
    approved(store, "r1").await;
    store
        .requests()
        .redeem(
            "r1",
            NOW + 20,
            &family("r1"),
            &[
                token("at-1", TokenKind::Access),
                token("rt-1", TokenKind::Refresh),
            ],
        )
        .await
        .unwrap();
}

async fn rotate(
    store: &Arc<dyn Store>,
    hash: &str,
    now: i64,
    successor: &str,
) -> Result<(), RotateError> {
    store
        .tokens()
        .rotate_refresh_token(
            hash,
            "c1",
            now,
            &family("r1"),
            &[token(successor, TokenKind::Refresh)],
        )
        .await
}

pub async fn refresh_token_rotates_once(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    assert_eq!(
        store.tokens().get_family("r1").await.unwrap(),
        Some(family("r1"))
    );
    let next = [
        token("at-2", TokenKind::Access),
        token("rt-2", TokenKind::Refresh),
    ];
    store
        .tokens()
        .rotate_refresh_token("rt-1", "c1", NOW + 30, &family("r1"), &next)
        .await
        .unwrap();
    let spent = store.tokens().get_token("rt-1").await.unwrap().unwrap();
    assert_eq!(
        spent.rotated_at,
        Some(NOW + 30),
        "kept, spent, to recognise reuse"
    );
    assert_eq!(
        store.tokens().get_token("rt-2").await.unwrap(),
        Some(next[1].clone())
    );
}

pub async fn a_spent_refresh_token_presented_again_is_reuse(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    rotate(&store, "rt-1", NOW + 30, "rt-2").await.unwrap();
    let again = rotate(&store, "rt-1", NOW + 31, "rt-3").await;
    assert!(matches!(again, Err(RotateError::Reused)), "{again:?}");
    assert_eq!(store.tokens().get_token("rt-3").await.unwrap(), None);
}

pub async fn concurrent_rotations_of_one_token_spend_it_once(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let attempts = (0..4).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { rotate(&store, "rt-1", NOW + 30, &format!("rt-next-{i}")).await })
    });
    let mut rotated = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => rotated += 1,
            Err(RotateError::Reused) => {}
            other => panic!("a lost race is reuse, not {other:?}"),
        }
    }
    assert_eq!(rotated, 1);
}

pub async fn refresh_token_of_another_client_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let stolen = store
        .tokens()
        .rotate_refresh_token(
            "rt-1",
            "c2",
            NOW + 30,
            &family("r1"),
            &[token("rt-2", TokenKind::Refresh)],
        )
        .await;
    assert!(matches!(stolen, Err(RotateError::Invalid)), "{stolen:?}");
    let untouched = store.tokens().get_token("rt-1").await.unwrap().unwrap();
    assert_eq!(untouched.rotated_at, None);
    assert_eq!(store.tokens().get_token("rt-2").await.unwrap(), None);
}

pub async fn expired_refresh_token_does_not_rotate(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let late = rotate(&store, "rt-1", NOW + 3600, "rt-2").await;
    assert!(matches!(late, Err(RotateError::Invalid)), "{late:?}");
}

pub async fn a_revoked_family_rotates_no_more(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    store
        .tokens()
        .revoke_family(&family("r1"), NOW + 25)
        .await
        .unwrap();
    let after = rotate(&store, "rt-1", NOW + 30, "rt-2").await;
    assert!(matches!(after, Err(RotateError::Invalid)), "{after:?}");
    assert_eq!(store.tokens().get_token("rt-2").await.unwrap(), None);
    let unspent = store.tokens().get_token("rt-1").await.unwrap().unwrap();
    assert_eq!(unspent.rotated_at, None, "nothing was written");
}

pub async fn revoking_a_family_twice_keeps_the_first_time(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let tokens = store.tokens();
    tokens.revoke_family(&family("r1"), NOW + 25).await.unwrap();
    tokens.revoke_family(&family("r1"), NOW + 40).await.unwrap();
    assert_eq!(
        tokens.get_family("r1").await.unwrap(),
        Some(Family {
            revoked_at: Some(NOW + 25),
            ..family("r1")
        })
    );
}

pub async fn revoking_a_family_without_an_item_stores_it_revoked(store: Arc<dyn Store>) {
    store
        .tokens()
        .revoke_family(&family("old"), NOW + 25)
        .await
        .unwrap();
    assert_eq!(
        store.tokens().get_family("old").await.unwrap(),
        Some(Family {
            revoked_at: Some(NOW + 25),
            ..family("old")
        })
    );
}

pub async fn a_refresh_token_older_than_families_rotates_and_starts_its_family(
    store: Arc<dyn Store>,
) {
    approved(&store, "r1").await;
    // Tokens issued before families were stored: the redemption wrote no family of its own.
    store
        .requests()
        .redeem(
            "r1",
            NOW + 20,
            &family("r0"),
            &[token("rt-1", TokenKind::Refresh)],
        )
        .await
        .unwrap();
    assert_eq!(store.tokens().get_family("r1").await.unwrap(), None);
    rotate(&store, "rt-1", NOW + 30, "rt-2").await.unwrap();
    assert_eq!(
        store.tokens().get_family("r1").await.unwrap(),
        Some(family("r1"))
    );
}

pub async fn an_access_token_is_revoked_alone(store: Arc<dyn Store>) {
    with_refresh_token(&store).await;
    let tokens = store.tokens();
    tokens.revoke_access_token("at-1").await.unwrap();
    assert_eq!(tokens.get_token("at-1").await.unwrap(), None);
    assert!(tokens.get_token("rt-1").await.unwrap().is_some());
    assert_eq!(tokens.get_family("r1").await.unwrap(), Some(family("r1")));
    tokens.revoke_access_token("rt-1").await.unwrap();
    assert!(
        tokens.get_token("rt-1").await.unwrap().is_some(),
        "a refresh token is revoked with its family only"
    );
    tokens.revoke_access_token("never-issued").await.unwrap();
}
