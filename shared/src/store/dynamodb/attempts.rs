//! Each client's `user_code` attempts for a user: one item (`USER#<sub>`, `USERCODE#<client_id>`)
//! holding the count `n` of the current window and the window's end `until`. An attempt is one conditional update (the count goes up only while
//! the window is open and below the limit), or, when there is no open window, one conditional
//! put that opens the next: racing attempts are counted one by one, never twice allowed.

use super::DynamoStore;
use super::codec::{num, opt_n};
use super::layout::{key, user_pk};
use super::transact::{
    MAX_ATTEMPTS, backoff, conditional_put, sdk_error, update_condition_failure,
};
use crate::store::{Attempt, AttemptLimit, StoreError};

/// The sort key of one client's attempts for the user.
fn attempts_sk(client_id: &str) -> String {
    format!("USERCODE#{client_id}")
}

impl DynamoStore {
    pub(super) async fn count_user_code_attempt(
        &self,
        client_id: &str,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<Attempt, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let counted = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(user_pk(sub), &attempts_sk(client_id))))
                .update_expression("SET n = n + :one")
                .condition_expression("#until > :now AND n < :max")
                .expression_attribute_names("#until", "until")
                .expression_attribute_values(":one", num(1))
                .expression_attribute_values(":now", num(now))
                .expression_attribute_values(":max", num(i64::from(limit.max)))
                .send()
                .await;
            let err = match counted {
                Ok(_) => return Ok(Attempt::Granted),
                Err(err) => err,
            };
            if update_condition_failure(&err).is_none() {
                return Err(sdk_error("begin_user_code_attempt", err));
            }
            // No open window with room: locked while a window is open, else open the next.
            let item = self
                .get(
                    "begin_user_code_attempt",
                    user_pk(sub),
                    &attempts_sk(client_id),
                )
                .await?;
            let until = match item {
                Some(item) => opt_n(&item, "until")?.unwrap_or(0),
                None => 0,
            };
            if until > now {
                return Ok(Attempt::Locked { until });
            }
            if limit.max == 0 {
                return Ok(Attempt::Locked {
                    until: now + limit.window,
                });
            }
            if self.open_attempt_window(client_id, sub, now, limit).await? {
                return Ok(Attempt::Granted);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "begin_user_code_attempt: kept racing concurrent attempts".into(),
        ))
    }

    /// Opens a new window with this attempt counted, unless a racing attempt opened one first.
    async fn open_attempt_window(
        &self,
        client_id: &str,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<bool, StoreError> {
        let until = now + limit.window;
        let mut item = key(user_pk(sub), &attempts_sk(client_id));
        item.insert("n".into(), num(1));
        item.insert("until".into(), num(until));
        item.insert("ttl".into(), num(until));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #until <= :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", num(now))
            .send()
            .await;
        conditional_put("begin_user_code_attempt", result)
    }

    pub(super) async fn forget_user_code_attempts(
        &self,
        client_id: &str,
        sub: &str,
    ) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(sub), &attempts_sk(client_id))))
            .send()
            .await
            .map_err(|e| sdk_error("clear_user_code_attempts", e))?;
        Ok(())
    }
}
