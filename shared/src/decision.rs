//! The rules of the authentication device's calls: `POST /device/transaction` (the details of a
//! pending request) and `POST /device/decision` (the user's approve or deny). Both are ES256 JWSs
//! whose header `kid` names an enrolled, enabled device, verified with that device's key, naming a
//! `txn` of that device's user, each `jti` used once.
//!
//! A decision on a request with `authorization_details` must carry `txn_hash`, the hash of what
//! the device showed (`transaction`); any decision that carries one is checked against the
//! request. The decision is recorded with its evidence: the JWS itself, the device and its key's
//! thumbprint.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::domain::{AuthRequest, Decision, Device, Evidence, Status};
use crate::dpop;
use crate::error::DeviceError;
use crate::ident::Ident;
use crate::jose;
use crate::jwt::{Checked, Expect};
use crate::store::DecideError;
use crate::transaction;

fn invalid(description: impl Into<String>) -> DeviceError {
    DeviceError::InvalidRequest(description.into().into())
}

/// A device's JWS that checked out, and the request of its user that it names.
struct Signed {
    device: Device,
    checked: Checked,
    request: AuthRequest,
}

/// Verifies a device's JWS (`what`: "the decision", "the transaction request") and finds the
/// request its `txn` names; its `jti` is scoped to `jti_scope` and the device.
async fn verify(
    ctx: &Ctx,
    jwt: &str,
    what: &'static str,
    jti_scope: &str,
) -> Result<Signed, DeviceError> {
    let (_, kid) = jose::peek_header(jwt).map_err(|e| invalid(e.describe()))?;
    let kid = kid.ok_or_else(|| invalid(format!("{what}'s header must name the device in kid")))?;
    if let Some(fault) = Ident::OpId.fault(&kid) {
        return Err(invalid(format!("{what}'s header's kid {fault}")));
    }
    // The device and the request the JWS names are read at once, one round trip: the request by
    // the txn the unverified payload names, used only if the verified one names it.
    let early_txn = jose::peek_claim(jwt, "txn").filter(|t| Ident::OpId.fault(t).is_none());
    let requests = ctx.store.requests();
    let (device, early_request) =
        futures_util::future::join(ctx.store.accounts().get_device(&kid), async {
            match &early_txn {
                Some(txn) => requests.get_auth_request_by_txn(txn).await,
                None => Ok(None),
            }
        })
        .await;
    let device = device?
        .filter(|d| d.enabled)
        .ok_or_else(|| invalid("unknown device"))?;
    let keys = jose::single_key_set(&device.public_key).ok_or_else(|| invalid("unknown device"))?;

    let now = ctx.clock.now();
    let expect = Expect::new(what, ctx.config.clock_skew)
        .expires_within(ctx.config.decision_max_exp)
        .iat_required()
        .jti(format!("{jti_scope}#{}", device.device_id));
    let checked = expect
        .verify(jwt, &keys, &[Algorithm::ES256], now)
        .map_err(|e| invalid(e.describe(what)))?;
    let txn = checked
        .text("txn")
        .ok_or_else(|| invalid(format!("{what} must carry txn")))?;
    if let Some(fault) = Ident::OpId.fault(txn) {
        return Err(invalid(format!("{what}'s txn {fault}")));
    }
    if checked.jti.is_none() {
        return Err(invalid(format!("{what} must carry jti")));
    }
    // A txn of another user answers exactly like an unknown one.
    let request = match early_txn {
        Some(early) if early == txn => early_request?,
        _ => requests.get_auth_request_by_txn(txn).await?,
    }
    .filter(|r| r.sub == device.sub)
    .ok_or_else(|| invalid("unknown txn"))?;
    Ok(Signed {
        device,
        checked,
        request,
    })
}

/// What `POST /device/transaction` answers for a pending request of the device's user: the
/// `shown` object the device displays and hashes into `txn_hash`, the push's summary line and
/// the requested ACR. An expired request is `expired_token`; a decided one 409.
pub async fn details(ctx: &Ctx, jwt: &str) -> Result<Value, DeviceError> {
    let Signed {
        checked, request, ..
    } = verify(ctx, jwt, "the transaction request", "transaction").await?;
    let now = ctx.clock.now();
    if request.is_expired(now) && matches!(request.status, Status::Pending | Status::Expired) {
        return Err(DeviceError::ExpiredToken(
            "the authentication request has expired".into(),
        ));
    }
    if request.status != Status::Pending {
        return Err(DeviceError::AlreadyDecided(
            "the request was already decided".into(),
        ));
    }
    let jti = checked.jti.as_ref().expect("verify requires jti");
    if !ctx.store.jtis().use_jti(jti, now).await? {
        return Err(invalid("the transaction request's jti was already used"));
    }
    Ok(json!({
        "txn": request.txn,
        "summary": transaction::summary(request.authorization_details.as_ref()),
        "acr_values": request.acr_values,
        "shown": transaction::shown(&request),
    }))
}

/// Verifies the decision `jwt` and records it with its evidence; answers the device that decided.
pub async fn decide(ctx: &Ctx, jwt: &str) -> Result<(Device, Decision), DeviceError> {
    let Signed {
        device,
        checked,
        request,
    } = verify(ctx, jwt, "the decision", "decision").await?;
    let decision = match checked.text("action") {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        _ => return Err(invalid("action must be approve or deny")),
    };
    let txn_hash = match checked.claims.get("txn_hash") {
        None => None,
        Some(Value::String(hash)) => Some(hash.clone()),
        Some(_) => return Err(invalid("txn_hash must be a string")),
    };
    match &txn_hash {
        Some(hash) if *hash != transaction::txn_hash(&transaction::shown(&request)) => {
            return Err(invalid(
                "txn_hash does not match the transaction: the device showed something else",
            ));
        }
        None if decision == Decision::Approve && request.authorization_details.is_some() => {
            return Err(invalid(
                "the decision must carry txn_hash: the request has authorization_details",
            ));
        }
        _ => {}
    }
    let evidence = Evidence {
        decision_jws: jwt.to_owned(),
        device_id: device.device_id.clone(),
        device_key: device.public_key.clone(),
        device_jkt: dpop::thumbprint(&device.public_key).unwrap_or_default(),
        txn_hash,
    };
    let jti = checked.jti.as_ref().expect("verify requires jti");
    let now = ctx.clock.now();
    ctx.store
        .requests()
        .decide_with(&request.auth_req_id, decision, Some(&evidence), now, jti)
        .await
        .map_err(|e| match e {
            DecideError::NotFound => invalid("unknown txn"),
            DecideError::JtiReplayed => invalid("the decision's jti was already used"),
            DecideError::AlreadyDecided => {
                DeviceError::AlreadyDecided("the request was already decided".into())
            }
            DecideError::Expired => {
                DeviceError::ExpiredToken("the authentication request has expired".into())
            }
            DecideError::Store(e) => e.into(),
        })?;
    Ok((device, decision))
}
