//! `POST /device/decision`: the authentication device's signed approve or deny.
//!
//! parse the body (an ES256 JWS as `application/jwt`, or the form field `decision`) → verify and
//! record it (`decision::decide`) → 204.

use ciba_shared::context::Ctx;
use ciba_shared::decision;
use ciba_shared::error::{DeviceError, error_response};
use ciba_shared::http::{no_content, signed_body};
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

async fn decide(ctx: &Ctx, req: &Request) -> Result<Response<Body>, DeviceError> {
    if req.method() != Method::POST {
        return Err(invalid("the decision endpoint accepts POST only"));
    }
    let jwt = signed_body(req, "decision", "the decision").map_err(invalid)?;
    let (device, decision) = decision::decide(ctx, &jwt).await?;
    tracing::info!(device_id = %device.device_id, ?decision, "decision recorded");
    Ok(no_content())
}
