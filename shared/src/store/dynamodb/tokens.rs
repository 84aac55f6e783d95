//! Token items: issued access and refresh tokens by hash, and the refresh token rotation.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::DynamoStore;
use super::codec::{num, s, token_from_item, token_item};
use super::layout::{SK_TOKEN, key, token_pk};
use super::transact::{CONDITION_FAILED, Transaction, build_error};
use crate::domain::{TokenKind, TokenRecord};
use crate::store::{RotateError, StoreError, Tokens};

#[async_trait]
impl Tokens for DynamoStore {
    async fn get_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get("get_token", token_pk(hash), SK_TOKEN)
            .await?
            .map(|item| token_from_item(&item))
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
        successors: &[TokenRecord],
    ) -> Result<(), RotateError> {
        let spend = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(hash), SK_TOKEN)))
            .condition_expression(
                "attribute_exists(pk) AND kind = :refresh AND client_id = :client AND expires_at > :now",
            )
            .expression_attribute_values(":refresh", s(TokenKind::Refresh.as_str()))
            .expression_attribute_values(":client", s(client_id))
            .expression_attribute_values(":now", num(now))
            .build()
            .map_err(build_error)?;
        let guard = TransactWriteItem::builder().delete(spend).build();
        if self
            .guarded_token_write("rotate_refresh_token", guard, successors)
            .await?
        {
            Ok(())
        } else {
            Err(RotateError::Invalid)
        }
    }
}

impl DynamoStore {
    /// Writes `tokens` in one transaction with `guard`, a conditional write on another item;
    /// `false` when the guard's condition failed (nothing was written).
    pub(super) async fn guarded_token_write(
        &self,
        op: &str,
        guard: TransactWriteItem,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        let mut items = vec![guard];
        for token in tokens {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(token_item(token))?)
                    .build(),
            );
        }
        match self.transact(op, items).await? {
            Transaction::Committed => Ok(true),
            Transaction::Cancelled(reasons)
                if reasons.first().is_some_and(|r| r == CONDITION_FAILED) =>
            {
                Ok(false)
            }
            Transaction::Cancelled(reasons) => Err(StoreError::Fault(format!(
                "{op}: unexpected condition failure {reasons:?}"
            ))),
        }
    }
}
