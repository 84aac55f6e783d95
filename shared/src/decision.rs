//! The rules of the authentication device's decision (`POST /device/decision`): an ES256 JWS
//! whose header `kid` names an enrolled, enabled device, verified with that device's key, naming
//! a `txn` of that device's user, used once, and recorded as the request's one decision.

use jsonwebtoken::Algorithm;

use crate::context::Ctx;
use crate::domain::{Decision, Device};
use crate::error::DeviceError;
use crate::ident::Ident;
use crate::jose;
use crate::jwt::Expect;
use crate::store::DecideError;

fn invalid(description: impl Into<String>) -> DeviceError {
    DeviceError::InvalidRequest(description.into().into())
}

/// Verifies the decision `jwt` and records it; answers the device that decided.
pub async fn decide(ctx: &Ctx, jwt: &str) -> Result<(Device, Decision), DeviceError> {
    let (_, kid) = jose::peek_header(jwt).map_err(|e| invalid(e.describe()))?;
    let kid = kid.ok_or_else(|| invalid("the decision header must name the device in kid"))?;
    if let Some(fault) = Ident::OpId.fault(&kid) {
        return Err(invalid(format!("the decision header's kid {fault}")));
    }
    // The device and the request its decision names are read at once, one round trip: the
    // request by the txn the unverified payload names, used only if the verified one names it.
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
    let expect = Expect::new("the decision", ctx.config.clock_skew)
        .expires_within(ctx.config.decision_max_exp)
        .iat_required()
        .jti(format!("decision#{}", device.device_id));
    let what = expect.what();
    let checked = expect
        .verify(jwt, &keys, &[Algorithm::ES256], now)
        .map_err(|e| invalid(e.describe(what)))?;
    let txn = checked
        .text("txn")
        .ok_or_else(|| invalid("the decision must carry txn"))?;
    if let Some(fault) = Ident::OpId.fault(txn) {
        return Err(invalid(format!("the decision's txn {fault}")));
    }
    let decision = match checked.text("action") {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        _ => return Err(invalid("action must be approve or deny")),
    };
    let jti = checked
        .jti
        .as_ref()
        .ok_or_else(|| invalid("the decision must carry jti"))?;

    // A txn of another user answers exactly like an unknown one.
    let request = match early_txn {
        Some(early) if early == txn => early_request?,
        _ => requests.get_auth_request_by_txn(txn).await?,
    }
    .filter(|r| r.sub == device.sub)
    .ok_or_else(|| invalid("unknown txn"))?;
    ctx.store
        .requests()
        .decide(&request.auth_req_id, decision, now, jti)
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
