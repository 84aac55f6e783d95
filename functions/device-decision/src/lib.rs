//! `POST /device/decision`: the authentication device's signed approve or deny.
//!
//! The body is an ES256 JWS (`application/jwt`, or the form field `decision`) whose header `kid`
//! names the enrolled device; it must verify with that device's key, name a `txn` of that
//! device's user, and be used once.

use ciba_shared::context::Ctx;
use ciba_shared::domain::Decision;
use ciba_shared::error::{DeviceError, error_response};
use ciba_shared::http::{Form, body_bytes, media_type, no_content};
use ciba_shared::jose;
use ciba_shared::store::{DecideError, JtiUse};
use jsonwebtoken::Algorithm;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

fn invalid(description: impl Into<String>) -> DeviceError {
    DeviceError::InvalidRequest(description.into().into())
}

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match decide(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

fn decision_jwt(req: &Request) -> Result<String, DeviceError> {
    match media_type(req.headers()).as_deref() {
        Some("application/jwt") => std::str::from_utf8(body_bytes(req))
            .map(|s| s.trim().to_owned())
            .map_err(|_| invalid("the decision is not a JWT")),
        Some("application/x-www-form-urlencoded") => Form::from_request(req)
            .map_err(|e| invalid(e.describe()))?
            .get("decision")
            .map(str::to_owned)
            .ok_or_else(|| invalid("the decision field is required")),
        _ => Err(invalid(
            "send the decision as application/jwt or in the form field decision",
        )),
    }
}

async fn decide(ctx: &Ctx, req: &Request) -> Result<Response<Body>, DeviceError> {
    if req.method() != Method::POST {
        return Err(invalid("the decision endpoint accepts POST only"));
    }
    let jwt = decision_jwt(req)?;
    let (_, kid) = jose::peek_header(&jwt).map_err(|e| invalid(e.describe()))?;
    let kid = kid.ok_or_else(|| invalid("the decision header must name the device in kid"))?;
    let device = ctx
        .store
        .accounts()
        .get_device(&kid)
        .await?
        .filter(|d| d.enabled)
        .ok_or_else(|| invalid("unknown device"))?;
    let keys = jose::single_key_set(&device.public_key).ok_or_else(|| invalid("unknown device"))?;
    let claims = jose::verify(&jwt, &keys, &[Algorithm::ES256])
        .map_err(|e| invalid(format!("decision: {}", e.describe())))?
        .claims;

    let now = ctx.clock.now();
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let txn = text("txn").ok_or_else(|| invalid("the decision must carry txn"))?;
    let decision = match text("action") {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        _ => return Err(invalid("action must be approve or deny")),
    };
    jose::numeric_date(&claims, "iat").ok_or_else(|| invalid("the decision must carry iat"))?;
    let exp =
        jose::numeric_date(&claims, "exp").ok_or_else(|| invalid("the decision must carry exp"))?;
    if exp <= now {
        return Err(invalid("the decision has expired"));
    }
    if exp > now + ctx.config.decision_max_exp {
        return Err(invalid("the decision's exp is more than 5 minutes ahead"));
    }
    let jti = text("jti").ok_or_else(|| invalid("the decision must carry jti"))?;

    // A txn of another user answers exactly like an unknown one.
    let request = ctx
        .store
        .requests()
        .get_auth_request_by_txn(txn)
        .await?
        .filter(|r| r.sub == device.sub)
        .ok_or_else(|| invalid("unknown txn"))?;
    let jti = JtiUse {
        scope: format!("decision#{}", device.device_id),
        jti: jti.into(),
        expires_at: exp,
    };
    ctx.store
        .requests()
        .decide(&request.auth_req_id, decision, now, &jti)
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
    tracing::info!(device_id = %device.device_id, ?decision, "decision recorded");
    Ok(no_content())
}
