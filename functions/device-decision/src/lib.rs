//! `POST /device/decision`: the authentication device's signed approve or deny.
//!
//! parse the body (an ES256 JWS as `application/jwt`, or the form field `decision`) → verify and
//! record it (`decision::decide`) → 204.

use ciba_shared::context::Ctx;
use ciba_shared::decision;
use ciba_shared::error::{DeviceError, error_response};
use ciba_shared::http::{Form, body_bytes, media_type, no_content};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

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
    let (device, decision) = decision::decide(ctx, &jwt).await?;
    tracing::info!(device_id = %device.device_id, ?decision, "decision recorded");
    Ok(no_content())
}
