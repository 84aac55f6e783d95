//! Items ⇄ domain values: what each item holds (the table in the `dynamodb` module
//! documentation), and the attribute value helpers the conversions are made of.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::layout::{
    REQUEST_RETENTION_SECS, SK_AUTHREQ, SK_CLIENT, SK_DEVICE, SK_ENROLL, SK_FAMILY, SK_HINT,
    SK_JTI, SK_PROFILE, SK_TOKEN, SK_TXN, authreq_pk, client_pk, device_pk, due_pk, enroll_pk,
    family_pk, hint_pk, jti_pk, key, token_pk, txn_pk, user_device_sk, user_pk,
};
use crate::domain::{
    AuthRequest, Client, DeliveryMode, Device, EnrollmentCode, Evidence, Family, Status, TokenKind,
    TokenRecord, User,
};
use crate::store::{JtiUse, StoreError};

/// A DynamoDB item: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

// ---- items ------------------------------------------------------------------------------------

pub(super) fn client_item(client: &Client) -> Result<Item, StoreError> {
    let mut item = key(client_pk(&client.client_id), SK_CLIENT);
    item.insert("client_id".into(), s(&client.client_id));
    item.insert("data".into(), json(client)?);
    Ok(item)
}

/// A user's profile item (its hints are items of their own, `hint_item`).
pub(super) fn user_item(user: &User) -> Result<Item, StoreError> {
    let mut item = key(user_pk(&user.sub), SK_PROFILE);
    item.insert("sub".into(), s(&user.sub));
    item.insert("data".into(), json(user)?);
    Ok(item)
}

/// The item that makes `normalized_hint` find user `sub`.
pub(super) fn hint_item(normalized_hint: &str, sub: &str) -> Item {
    let mut item = key(hint_pk(normalized_hint), SK_HINT);
    item.insert("sub".into(), s(sub));
    item
}

/// A device item at `pk` / `sk`: the device's own item or its copy under its user.
/// A device's item and its copy under its user, which `list_devices` queries.
pub(super) fn device_items(device: &Device) -> Result<(Item, Item), StoreError> {
    Ok((
        device_item(device, device_pk(&device.device_id), SK_DEVICE)?,
        device_item(
            device,
            user_pk(&device.sub),
            &user_device_sk(&device.device_id),
        )?,
    ))
}

fn device_item(device: &Device, pk: String, sk: &str) -> Result<Item, StoreError> {
    let mut item = key(pk, sk);
    item.insert("device_id".into(), s(&device.device_id));
    item.insert("sub".into(), s(&device.sub));
    item.insert("data".into(), json(device)?);
    Ok(item)
}

pub(super) fn enrollment_code_item(code: &EnrollmentCode) -> Item {
    let mut item = key(enroll_pk(&code.code_hash), SK_ENROLL);
    item.insert("sub".into(), s(&code.sub));
    item.insert("expires_at".into(), num(code.expires_at));
    item.insert("ttl".into(), num(code.expires_at));
    item
}

pub(super) fn enrollment_code_from_item(
    code_hash: &str,
    item: &Item,
) -> Result<EnrollmentCode, StoreError> {
    Ok(EnrollmentCode {
        code_hash: code_hash.to_owned(),
        sub: req_s(item, "sub")?,
        expires_at: req_n(item, "expires_at")?,
    })
}

pub(super) fn jti_item(jti: &JtiUse) -> Item {
    let mut item = key(jti_pk(jti), SK_JTI);
    item.insert("scope".into(), s(&jti.scope));
    item.insert("jti".into(), s(&jti.jti));
    item.insert("ttl".into(), num(jti.expires_at));
    item
}

/// The item that finds a request by its `txn`.
pub(super) fn txn_item(r: &AuthRequest) -> Item {
    let mut item = key(txn_pk(&r.txn), SK_TXN);
    item.insert("auth_req_id".into(), s(&r.auth_req_id));
    item.insert("ttl".into(), num(r.expires_at + REQUEST_RETENTION_SECS));
    item
}

pub(super) fn due_item(r: &AuthRequest) -> Item {
    let mut item = key(due_pk(r.expires_at, &r.auth_req_id), &r.auth_req_id);
    item.insert("expires_at".into(), num(r.expires_at));
    item.insert("ttl".into(), num(r.expires_at + REQUEST_RETENTION_SECS));
    item
}

pub(super) fn auth_request_item(r: &AuthRequest) -> Item {
    let mut item = key(authreq_pk(&r.auth_req_id), SK_AUTHREQ);
    let mut set = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    set("auth_req_id", s(&r.auth_req_id));
    set("txn", s(&r.txn));
    set("client_id", s(&r.client_id));
    if let Some(v) = &r.client_name {
        set("client_name", s(v));
    }
    set("sub", s(&r.sub));
    set("scope", s(&r.scope));
    if let Some(v) = &r.acr_values {
        set("acr_values", s(v));
    }
    if let Some(v) = &r.binding_message {
        set("binding_message", s(v));
    }
    if let Some(v) = &r.client_notification_token {
        set("client_notification_token", s(v));
    }
    set("delivery_mode", s(r.delivery_mode.as_str()));
    set("created_at", num(r.created_at));
    set("expires_at", num(r.expires_at));
    set("interval", num(r.interval));
    set("interval_ms", num(r.interval * 1000));
    if let Some(last) = r.last_poll_ms {
        set("last_poll_ms", num(last));
        set("next_poll_ms", num(last + r.interval * 1000));
    }
    set("status", s(r.status.as_str()));
    if let Some(at) = r.decided_at {
        set("decided_at", num(at));
    }
    if let Some(at) = r.notified_at {
        set("notified_at", num(at));
    }
    // As the JSON text it was checked as: stored, shown and approved byte for byte alike.
    if let Some(details) = &r.authorization_details {
        set("authorization_details", s(&details.to_string()));
    }
    if let Some(evidence) = &r.evidence {
        set("evidence", evidence_value(evidence));
    }
    set("ttl", num(r.expires_at + REQUEST_RETENTION_SECS));
    item
}

pub(super) fn auth_request_from_item(item: &Item) -> Result<AuthRequest, StoreError> {
    let status = req_s(item, "status")?;
    let delivery_mode = req_s(item, "delivery_mode")?;
    Ok(AuthRequest {
        auth_req_id: req_s(item, "auth_req_id")?,
        txn: req_s(item, "txn")?,
        client_id: req_s(item, "client_id")?,
        client_name: opt_s(item, "client_name")?,
        sub: req_s(item, "sub")?,
        scope: req_s(item, "scope")?,
        acr_values: opt_s(item, "acr_values")?,
        binding_message: opt_s(item, "binding_message")?,
        client_notification_token: opt_s(item, "client_notification_token")?,
        delivery_mode: DeliveryMode::parse(&delivery_mode).ok_or_else(|| {
            StoreError::Fault(format!("auth request has delivery_mode {delivery_mode:?}"))
        })?,
        created_at: req_n(item, "created_at")?,
        expires_at: req_n(item, "expires_at")?,
        interval: req_n(item, "interval")?,
        last_poll_ms: opt_n(item, "last_poll_ms")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Fault(format!("auth request has status {status:?}")))?,
        decided_at: opt_n(item, "decided_at")?,
        notified_at: opt_n(item, "notified_at")?,
        authorization_details: opt_json(item, "authorization_details")?,
        evidence: opt_json(item, "evidence")?
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    StoreError::Fault(format!("auth request has evidence that is not: {e}"))
                })
            })
            .transpose()?,
    })
}

/// A decision's evidence as stored: its JSON text.
pub(super) fn evidence_value(evidence: &Evidence) -> AttributeValue {
    s(&serde_json::to_string(evidence).unwrap_or_default())
}

/// A JSON document stored as text.
fn opt_json(item: &Item, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
    opt_s(item, name)?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Fault(format!("{name} is not JSON: {e}")))
        })
        .transpose()
}

/// A family item, as `Put` writes it whole.
pub(super) fn family_item(family: &Family) -> Item {
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

pub(super) fn family_from_item(item: &Item) -> Result<Family, StoreError> {
    Ok(Family {
        id: req_s(item, "id")?,
        client_id: req_s(item, "client_id")?,
        sub: req_s(item, "sub")?,
        expires_at: req_n(item, "expires_at")?,
        revoked_at: opt_n(item, "revoked_at")?,
    })
}

pub(super) fn token_item(t: &TokenRecord) -> Item {
    let mut item = key(token_pk(&t.hash), SK_TOKEN);
    item.insert("hash".into(), s(&t.hash));
    item.insert("kind".into(), s(t.kind.as_str()));
    item.insert("client_id".into(), s(&t.client_id));
    item.insert("sub".into(), s(&t.sub));
    item.insert("scope".into(), s(&t.scope));
    item.insert("auth_req_id".into(), s(&t.auth_req_id));
    item.insert("auth_time".into(), num(t.auth_time));
    if let Some(acr) = &t.acr {
        item.insert("acr".into(), s(acr));
    }
    item.insert("issued_at".into(), num(t.issued_at));
    item.insert("expires_at".into(), num(t.expires_at));
    if let Some(rotated_at) = t.rotated_at {
        item.insert("rotated_at".into(), num(rotated_at));
    }
    if let Some(jkt) = &t.jkt {
        item.insert("jkt".into(), s(jkt));
    }
    if let Some(x5t) = &t.x5t {
        item.insert("x5t".into(), s(x5t));
    }
    if let Some(details) = &t.authorization_details {
        item.insert("authorization_details".into(), s(&details.to_string()));
    }
    if let Some(approval) = &t.approval {
        item.insert("approval".into(), s(&approval.to_string()));
    }
    item.insert("ttl".into(), num(t.expires_at));
    item
}

pub(super) fn token_from_item(item: &Item) -> Result<TokenRecord, StoreError> {
    let kind = req_s(item, "kind")?;
    Ok(TokenRecord {
        hash: req_s(item, "hash")?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Fault(format!("token has kind {kind:?}")))?,
        client_id: req_s(item, "client_id")?,
        sub: req_s(item, "sub")?,
        scope: req_s(item, "scope")?,
        auth_req_id: req_s(item, "auth_req_id")?,
        auth_time: req_n(item, "auth_time")?,
        acr: opt_s(item, "acr")?,
        // Tokens stored before `issued_at` was: their grant's time stands in.
        issued_at: opt_n(item, "issued_at")?.map_or_else(|| req_n(item, "auth_time"), Ok)?,
        expires_at: req_n(item, "expires_at")?,
        rotated_at: opt_n(item, "rotated_at")?,
        jkt: opt_s(item, "jkt")?,
        x5t: opt_s(item, "x5t")?,
        authorization_details: opt_json(item, "authorization_details")?,
        approval: opt_json(item, "approval")?,
    })
}

// ---- attribute values -------------------------------------------------------------------------

pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(super) fn num(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Fault(format!("cannot serialize item data: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let data = req_s(item, "data")?;
    serde_json::from_str(&data)
        .map_err(|e| StoreError::Fault(format!("corrupt data in item {:?}: {e}", item.get("pk"))))
}

pub(super) fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(StoreError::Fault(format!(
            "attribute {name} is not a string"
        ))),
    }
}

pub(super) fn req_s(item: &Item, name: &str) -> Result<String, StoreError> {
    opt_s(item, name)?.ok_or_else(|| StoreError::Fault(format!("attribute {name} is missing")))
}

pub(super) fn opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Fault(format!("attribute {name} is not an integer"))),
        Some(_) => Err(StoreError::Fault(format!(
            "attribute {name} is not a number"
        ))),
    }
}

pub(super) fn req_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    opt_n(item, name)?.ok_or_else(|| StoreError::Fault(format!("attribute {name} is missing")))
}
