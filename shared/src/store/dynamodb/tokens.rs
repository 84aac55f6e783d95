//! Token and family items: issued access and refresh tokens by hash, the families they belong
//! to, refresh token rotation and revocation.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::DynamoStore;
use super::codec::{Item, num, opt_n, req_n, req_s, s, token_from_item, token_item};
use super::layout::{SK_FAMILY, SK_TOKEN, family_pk, key, token_pk};
use super::transact::{CONDITION_FAILED, Transaction, build_error, sdk_error};
use crate::domain::{Family, TokenKind, TokenRecord};
use crate::store::{RotateError, StoreError, Tokens};

/// A family item, as `Put` writes it whole.
fn family_item(family: &Family) -> Item {
    let mut item = key(family_pk(&family.id), SK_FAMILY);
    item.insert("id".into(), s(&family.id));
    item.insert("client_id".into(), s(&family.client_id));
    item.insert("sub".into(), s(&family.sub));
    item.insert("expires_at".into(), num(family.expires_at));
    if let Some(revoked_at) = family.revoked_at {
        item.insert("revoked_at".into(), num(revoked_at));
    }
    item.insert("ttl".into(), num(family.expires_at));
    item
}

fn family_from_item(item: &Item) -> Result<Family, StoreError> {
    Ok(Family {
        id: req_s(item, "id")?,
        client_id: req_s(item, "client_id")?,
        sub: req_s(item, "sub")?,
        expires_at: req_n(item, "expires_at")?,
        revoked_at: opt_n(item, "revoked_at")?,
    })
}

#[async_trait]
impl Tokens for DynamoStore {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get("get_token", token_pk(hash), SK_TOKEN)
            .await?
            .map(|item| token_from_item(&item))
            .transpose()
    }

    async fn get_family(&self, id: &str) -> Result<Option<Family>, StoreError> {
        self.get("get_family", family_pk(id), SK_FAMILY)
            .await?
            .map(|item| family_from_item(&item))
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        family: &Family,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError> {
        if !family.is_live(now) {
            return Err(RotateError::Invalid);
        }
        let spend = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(hash), SK_TOKEN)))
            .update_expression("SET rotated_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND kind = :refresh AND client_id = :client \
                 AND expires_at > :now AND attribute_not_exists(rotated_at)",
            )
            .expression_attribute_values(":refresh", s(TokenKind::Refresh.as_str()))
            .expression_attribute_values(":client", s(client_id))
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        // The family item is written as it was read (or first written, for tokens older than
        // families), on condition that nobody revoked it meanwhile.
        let live_family = Put::builder()
            .table_name(&self.table)
            .set_item(Some(family_item(family)))
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_not_exists(revoked_at) AND expires_at > :now)",
            )
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        let guards = vec![
            TransactWriteItem::builder().update(spend).build(),
            TransactWriteItem::builder().put(live_family).build(),
        ];
        match self
            .guarded_token_write("rotate_refresh_token", guards, successors)
            .await?
        {
            Ok(()) => Ok(()),
            // The presented token's condition failed: spent before, or not a live refresh token
            // of this client at all. `rotated_at` is never unset, so reading it now tells.
            Err(0) => match self.get_token(hash).await? {
                Some(r)
                    if r.rotated_at.is_some()
                        && r.kind == TokenKind::Refresh
                        && r.client_id == client_id
                        && r.expires_at > now =>
                {
                    Err(RotateError::Reused)
                }
                _ => Err(RotateError::Invalid),
            },
            Err(_) => Err(RotateError::Invalid),
        }
    }

    async fn revoke_family(&self, family: &Family, now: i64) -> Result<(), StoreError> {
        // One upsert: an existing family keeps everything but gains `revoked_at` (an earlier
        // one stands); a family without an item gets one.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(family_pk(&family.id), SK_FAMILY)))
            .update_expression(
                "SET revoked_at = if_not_exists(revoked_at, :now), id = if_not_exists(id, :id), \
                 client_id = if_not_exists(client_id, :client), #sub = if_not_exists(#sub, :sub), \
                 expires_at = if_not_exists(expires_at, :exp), #ttl = if_not_exists(#ttl, :exp)",
            )
            .expression_attribute_names("#sub", "sub")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":id", s(&family.id))
            .expression_attribute_values(":client", s(&family.client_id))
            .expression_attribute_values(":sub", s(&family.sub))
            .expression_attribute_values(":exp", num(family.expires_at))
            .send()
            .await
            .map_err(|e| sdk_error("revoke_family", e))?;
        Ok(())
    }

    async fn revoke_access_token(&self, hash: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(hash), SK_TOKEN)))
            .condition_expression("kind = :access")
            .expression_attribute_values(":access", s(TokenKind::Access.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Not an access token (or gone): nothing to forget.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("revoke_access_token", e)),
        }
    }
}

impl DynamoStore {
    /// The `Put` of a new family (a family id is the `auth_req_id` of its grant, never reused).
    pub(super) fn new_family(&self, family: &Family) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(family_item(family)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)
    }

    /// Writes `tokens` in one transaction with `guards`, conditional writes on other items;
    /// `Err(i)` when the condition of `guards[i]` failed (nothing was written).
    pub(super) async fn guarded_token_write(
        &self,
        op: &str,
        guards: Vec<TransactWriteItem>,
        tokens: &[TokenRecord],
    ) -> Result<Result<(), usize>, StoreError> {
        let guard_count = guards.len();
        let mut items = guards;
        for token in tokens {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(token_item(token))?)
                    .build(),
            );
        }
        match self.transact(op, items).await? {
            Transaction::Committed => Ok(Ok(())),
            Transaction::Cancelled(reasons) => {
                match reasons.iter().position(|r| r == CONDITION_FAILED) {
                    Some(i) if i < guard_count => Ok(Err(i)),
                    _ => Err(StoreError::Fault(format!(
                        "{op}: unexpected condition failure {reasons:?}"
                    ))),
                }
            }
        }
    }
}
