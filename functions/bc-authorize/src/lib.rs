//! `POST /bc-authorize`: the backchannel authentication endpoint (CIBA Core §7).
//!
//! parse → authenticate the client → accept the request (`backchannel::accept`: parameters,
//! user, devices, store, push) → acknowledge with `auth_req_id`, `expires_in`, `interval`.

use ciba_shared::backchannel;
use ciba_shared::client_auth;
use ciba_shared::context::Ctx;
use ciba_shared::error::{AuthnError, error_response};
use ciba_shared::http::{Form, json_response};
use ciba_shared::mtls;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

#[derive(Serialize)]
struct Acknowledgement<'a> {
    auth_req_id: &'a str,
    expires_in: i64,
    interval: i64,
}

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match authorize(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn authorize(ctx: &Ctx, req: &Request) -> Result<Response<Body>, AuthnError> {
    if req.method() != Method::POST {
        return Err(AuthnError::InvalidRequest(
            "the backchannel authentication endpoint accepts POST only".into(),
        ));
    }
    let form =
        Form::from_request(req).map_err(|e| AuthnError::InvalidRequest(e.describe().into()))?;
    let now = ctx.clock.now();
    let cert = mtls::from_request(req);
    let credentials = client_auth::Credentials {
        headers: req.headers(),
        form: &form,
        cert: cert.as_ref(),
    };
    let client =
        client_auth::authenticate(credentials, ctx.store.as_ref(), &ctx.config, now).await?;
    let request = backchannel::accept(ctx, &client, &form, now).await?;
    tracing::info!(client_id = %client.client_id, "authentication request accepted");

    let ack = Acknowledgement {
        auth_req_id: &request.auth_req_id,
        expires_in: request.expires_at - now,
        interval: request.interval,
    };
    Ok(json_response(StatusCode::OK, &ack, true))
}
