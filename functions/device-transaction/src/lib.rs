//! `POST /device/transaction`: the authentication device fetches what it must show for a pending
//! request of its user (client name, binding message, scope, `authorization_details`, expiry),
//! the object whose hash its decision signs. Authenticated by an ES256 JWS of the device's
//! enrolled key; the device names the request by `txn`, never by `auth_req_id`.
//!
//! parse the body (the JWS as `application/jwt`, or the form field `request`) → verify it and
//! find the request (`decision::details`) → 200 with the details, `Cache-Control: no-store`.

use ciba_shared::context::Ctx;
use ciba_shared::decision;
use ciba_shared::error::{DeviceError, error_response};
use ciba_shared::http::{json_response, signed_body};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

fn invalid(description: impl Into<String>) -> DeviceError {
    DeviceError::InvalidRequest(description.into().into())
}

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match details(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn details(ctx: &Ctx, req: &Request) -> Result<Response<Body>, DeviceError> {
    if req.method() != Method::POST {
        return Err(invalid("the transaction endpoint accepts POST only"));
    }
    let jwt = signed_body(req, "request", "the signed transaction request").map_err(invalid)?;
    let details = decision::details(ctx, &jwt).await?;
    Ok(json_response(StatusCode::OK, &details, true))
}
