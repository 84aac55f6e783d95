//! `POST /revoke`: token revocation (RFC 7009).

use ciba_shared::context::Ctx;
use lambda_http::{Body, Request, Response};

pub async fn handle(_ctx: &Ctx, _req: Request) -> Response<Body> {
    todo!("issue 14")
}
