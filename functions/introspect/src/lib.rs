//! `POST /introspect`: token introspection (RFC 7662).

use ciba_shared::context::Ctx;
use lambda_http::{Body, Request, Response};

pub async fn handle(_ctx: &Ctx, _req: Request) -> Response<Body> {
    todo!("issue 14")
}
