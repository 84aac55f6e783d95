//! `POST /revoke`: token revocation (RFC 7009).
//!
//! parse → authenticate the client as at `/token` → find the presented token → revoke it if it
//! is the client's own: a refresh token takes its whole family with it (every refresh token
//! rotated from the same grant and the access tokens issued with them); an access token goes
//! alone. Unknown tokens and other clients' tokens answer the same 200 and change nothing, so
//! revocation tells nobody which tokens exist.

use ciba_shared::context::Ctx;
use ciba_shared::domain::TokenKind;
use ciba_shared::error::{TokenManagementError, error_response};
use ciba_shared::http::empty_ok;
use ciba_shared::tokens::presented;
use lambda_http::{Body, Request, Response};

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match revoke(ctx, &req).await {
        Ok(()) => empty_ok(),
        Err(e) => error_response(&e),
    }
}

async fn revoke(ctx: &Ctx, req: &Request) -> Result<(), TokenManagementError> {
    let (client, token) = presented::read_request(ctx, req).await?;
    let Some(found) = presented::find(ctx, &token).await? else {
        return Ok(());
    };
    if found.record.client_id != client.client_id {
        tracing::warn!(client_id = %client.client_id, "revocation of another client's token ignored");
        return Ok(());
    }
    let tokens = ctx.store.tokens();
    match found.record.kind {
        TokenKind::Refresh => {
            let family = found.family_or_legacy(ctx.config.refresh_family_lifetime);
            tokens.revoke_family(&family, ctx.clock.now()).await?;
        }
        TokenKind::Access => tokens.revoke_access_token(&found.record.hash).await?,
    }
    tracing::info!(client_id = %client.client_id, kind = found.record.kind.as_str(), "token revoked");
    Ok(())
}
