//! User, hint, device and enrolment code items: a user's profile and hints are written in one
//! transaction, a device and its copy under its user too, and an enrolment code is consumed in
//! the transaction that stores the device it enrols. A device is disabled only over the item as
//! it was read.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::DynamoStore;
use super::codec::{
    Item, device_items, enrollment_code_from_item, enrollment_code_item, from_json, hint_item, num,
    req_s, s, user_item,
};
use super::layout::{
    DEVICE_PREFIX, SK_DEVICE, SK_ENROLL, SK_HINT, SK_PROFILE, device_pk, enroll_pk, hint_pk, key,
    user_device_sk, user_pk,
};
use super::transact::{
    CONDITION_FAILED, MAX_ATTEMPTS, Transaction, backoff, build_error, sdk_error,
};
use crate::domain::{Device, EnrollmentCode, User, normalize_hint};
use crate::store::{Accounts, Attempt, AttemptLimit, EnrollError, StoreError};

#[async_trait]
impl Accounts for DynamoStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let profile = user_item(user)?;
        let mut items = vec![TransactWriteItem::builder().put(self.put(profile)?).build()];
        let mut hints: Vec<String> = user.login_hints.iter().map(|h| normalize_hint(h)).collect();
        hints.sort();
        hints.dedup();
        for hint in hints {
            let item = hint_item(&hint, &user.sub);
            items.push(TransactWriteItem::builder().put(self.put(item)?).build());
        }
        match self.transact("put_user", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons) => Err(StoreError::Fault(format!(
                "put_user: unexpected condition failure {reasons:?}"
            ))),
        }
    }

    // Users, their hints and device lists are read a moment old: a user changed or a device
    // enrolled within the last second may be missed once. Whether a device may decide is read
    // strongly (`get_device`).
    async fn get_user(&self, sub: &str) -> Result<Option<User>, StoreError> {
        self.get_eventually("get_user", user_pk(sub), SK_PROFILE)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }

    async fn find_user_by_hint(&self, hint: &str) -> Result<Option<User>, StoreError> {
        let pk = hint_pk(&normalize_hint(hint));
        let Some(item) = self
            .get_eventually("find_user_by_hint", pk, SK_HINT)
            .await?
        else {
            return Ok(None);
        };
        self.get_user(&req_s(&item, "sub")?).await
    }

    async fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        let (item, copy) = device_items(device)?;
        for attempt in 1..=MAX_ATTEMPTS {
            // A device that moves to another user leaves that user's list: the previous owner
            // is read, and the write is conditional on it being unchanged.
            let previous = self
                .get("put_device", device_pk(&device.device_id), SK_DEVICE)
                .await?
                .map(|item| req_s(&item, "sub"))
                .transpose()?;
            let main = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()));
            let main = match &previous {
                Some(sub) => main
                    .condition_expression("#sub = :previous")
                    .expression_attribute_names("#sub", "sub")
                    .expression_attribute_values(":previous", s(sub)),
                None => main.condition_expression("attribute_not_exists(pk)"),
            };
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(main.build().map_err(build_error)?)
                    .build(),
                TransactWriteItem::builder()
                    .put(self.put(copy.clone())?)
                    .build(),
            ];
            if let Some(old_sub) = previous.filter(|old| *old != device.sub) {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        user_pk(&old_sub),
                        &user_device_sk(&device.device_id),
                    )))
                    .build()
                    .map_err(build_error)?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
            match self.transact("put_device", items).await? {
                Transaction::Committed => return Ok(()),
                Transaction::Cancelled(_) => backoff(attempt).await,
            }
        }
        Err(StoreError::Unavailable(
            "put_device: device kept changing owner".into(),
        ))
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get("get_device", device_pk(device_id), SK_DEVICE)
            .await?
            .map(|item| from_json(&item))
            .transpose()
    }

    async fn disable_device(&self, read: &Device) -> Result<bool, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(item) = self
                .get("disable_device", device_pk(&read.device_id), SK_DEVICE)
                .await?
            else {
                return Ok(false);
            };
            let current: Device = from_json(&item)?;
            if current != *read {
                return Ok(false);
            }
            // Written only over the very item just read: a change since (a re-enrolment) fails
            // the condition, and the device is read again.
            let (main, copy) = device_items(&Device {
                enabled: false,
                ..current
            })?;
            let main = Put::builder()
                .table_name(&self.table)
                .set_item(Some(main))
                .condition_expression("#data = :read")
                .expression_attribute_names("#data", "data")
                .expression_attribute_values(":read", s(&req_s(&item, "data")?))
                .build()
                .map_err(build_error)?;
            let items = vec![
                TransactWriteItem::builder().put(main).build(),
                TransactWriteItem::builder().put(self.put(copy)?).build(),
            ];
            match self.transact("disable_device", items).await? {
                Transaction::Committed => return Ok(true),
                Transaction::Cancelled(_) => backoff(attempt).await,
            }
        }
        Err(StoreError::Unavailable(
            "disable_device: device kept changing".into(),
        ))
    }

    async fn put_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(enrollment_code_item(code)))
            .send()
            .await
            .map_err(|e| sdk_error("put_enrollment_code", e))?;
        Ok(())
    }

    async fn get_enrollment_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<EnrollmentCode>, StoreError> {
        let Some(item) = self
            .get("get_enrollment_code", enroll_pk(code_hash), SK_ENROLL)
            .await?
        else {
            return Ok(None);
        };
        let code = enrollment_code_from_item(code_hash, &item)?;
        Ok((code.expires_at > now).then_some(code))
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<(), EnrollError> {
        let (item, copy) = device_items(device)?;
        let consume = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(enroll_pk(code_hash), SK_ENROLL)))
            .condition_expression("attribute_exists(pk) AND expires_at > :now AND #sub = :sub")
            .expression_attribute_names("#sub", "sub")
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":sub", s(&device.sub))
            .build()
            .map_err(build_error)?;
        // A re-enrolled device keeps its owner: its id only ever names a device of `device.sub`.
        let main = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #sub = :sub")
            .expression_attribute_names("#sub", "sub")
            .expression_attribute_values(":sub", s(&device.sub))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().delete(consume).build(),
            TransactWriteItem::builder().put(main).build(),
            TransactWriteItem::builder().put(self.put(copy)?).build(),
        ];
        match self.transact("enroll_device", items).await? {
            Transaction::Committed => Ok(()),
            Transaction::Cancelled(reasons)
                if reasons.first().is_some_and(|r| r == CONDITION_FAILED) =>
            {
                Err(EnrollError::InvalidCode)
            }
            Transaction::Cancelled(reasons) => Err(EnrollError::Store(StoreError::Fault(format!(
                "enroll_device: device id owned by another user: {reasons:?}"
            )))),
        }
    }

    async fn list_devices(&self, sub: &str) -> Result<Vec<Device>, StoreError> {
        let mut devices = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(false)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&user_pk(sub)))
                .expression_attribute_values(":prefix", s(DEVICE_PREFIX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("list_devices", e))?;
            for item in out.items() {
                let device: Device = from_json(item)?;
                if device.sub == sub {
                    devices.push(device);
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(devices)
    }

    async fn begin_user_code_attempt(
        &self,
        client_id: &str,
        sub: &str,
        now: i64,
        limit: AttemptLimit,
    ) -> Result<Attempt, StoreError> {
        self.count_user_code_attempt(client_id, sub, now, limit)
            .await
    }

    async fn clear_user_code_attempts(&self, client_id: &str, sub: &str) -> Result<(), StoreError> {
        self.forget_user_code_attempts(client_id, sub).await
    }
}
