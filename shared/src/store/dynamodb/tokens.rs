//! Token items and families: issued access and refresh tokens by hash, the families they belong
//! to, refresh token rotation and revocation.
//!
//! A family is its redeemed request's item (`family_expires_at`, `revoked_at`? on the
//! `AUTHREQ#` item, which redemption keeps for the family's lifetime), so a redemption writes
//! no item of its own for it. Families of tokens issued before that have a `FAMILY#` item, or
//! none (tokens older than families): they are read, rotated and revoked there.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};

use super::DynamoStore;
use super::codec::{
    family_from_item, family_item, num, opt_n, req_s, s, token_from_item, token_item,
};
use super::layout::{SK_AUTHREQ, SK_FAMILY, SK_TOKEN, authreq_pk, family_pk, key, token_pk};
use super::transact::{
    CONDITION_FAILED, Transaction, build_error, sdk_error, update_condition_failure,
};
use crate::domain::{Family, TokenKind, TokenRecord};
use crate::store::{RotateError, StoreError, Tokens};

#[async_trait]
impl Tokens for DynamoStore {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get("get_token", token_pk(hash), SK_TOKEN)
            .await?
            .map(|item| token_from_item(&item))
            .transpose()
    }

    async fn get_family(&self, id: &str) -> Result<Option<Family>, StoreError> {
        if let Some(family) = self.request_family(id).await? {
            return Ok(Some(family));
        }
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
        // The family must still be live when the token is spent: its request item, or for an
        // older family its own item, written as it was read (or first written, for tokens older
        // than families), on condition that nobody revoked it meanwhile.
        let live_family = if self.request_family(&family.id).await?.is_some() {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(authreq_pk(&family.id), SK_AUTHREQ)))
                .condition_expression(
                    "auth_req_id = :id AND attribute_not_exists(revoked_at) \
                     AND family_expires_at > :now",
                )
                .expression_attribute_values(":id", s(&family.id))
                .expression_attribute_values(":now", num(now))
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().condition_check(check).build()
        } else {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(family_item(family)))
                .condition_expression(
                    "attribute_not_exists(pk) OR (attribute_not_exists(revoked_at) AND expires_at > :now)",
                )
                .expression_attribute_values(":now", num(now))
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().put(put).build()
        };
        let guards = vec![
            TransactWriteItem::builder().update(spend).build(),
            live_family,
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
        // On its request item, when the family lives there; an earlier revocation stands.
        let on_request = self
            .update_request(&family.id)
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("auth_req_id = :id AND attribute_exists(family_expires_at)")
            .expression_attribute_values(":now", num(now))
            .send()
            .await;
        match on_request {
            Ok(_) => return Ok(()),
            Err(e) if update_condition_failure(&e).is_some() => {}
            Err(e) => return Err(sdk_error("revoke_family", e)),
        }
        // An older family: one upsert of its own item, which keeps everything but gains
        // `revoked_at` (an earlier one stands); a family without an item gets one.
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
    /// The family of the redeemed request `id`, when it lives on the request's item.
    async fn request_family(&self, id: &str) -> Result<Option<Family>, StoreError> {
        let Some(item) = self.get("get_family", authreq_pk(id), SK_AUTHREQ).await? else {
            return Ok(None);
        };
        let Some(expires_at) = opt_n(&item, "family_expires_at")? else {
            return Ok(None);
        };
        if req_s(&item, "auth_req_id")? != id {
            return Ok(None);
        }
        Ok(Some(Family {
            id: id.to_owned(),
            client_id: req_s(&item, "client_id")?,
            sub: req_s(&item, "sub")?,
            expires_at,
            revoked_at: opt_n(&item, "revoked_at")?,
        }))
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
