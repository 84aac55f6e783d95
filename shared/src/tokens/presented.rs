//! A token presented back to the OP, at `/userinfo`, `/introspect` or `/revoke`: which issued
//! token it is, and whether it is still active.
//!
//! An opaque value is found by its hash. A JWT access token counts only when it is one this OP
//! signed: `typ: at+jwt`, this issuer, an ES256 signature by one of the published keys (the
//! signing key or one it replaced); it is found by its `jti`. Its claims say nothing more: the
//! stored record is what is answered, so a revoked JWT is inactive whatever its `exp` says.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use lambda_http::Request;
use lambda_http::http::Method;

use super::{AT_JWT_TYP, record_hash};
use crate::client_auth;
use crate::context::Ctx;
use crate::domain::{AccessTokenFormat, Client, Family, TokenKind, TokenRecord};
use crate::error::TokenManagementError;
use crate::http::Form;
use crate::jose;
use crate::mtls;
use crate::store::StoreError;

/// Longer than any token this OP issues: not looked up at all.
const MAX_PRESENTED: usize = 4096;

/// An issued token, found from what was presented.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub record: TokenRecord,
    /// The record's family, `None` for tokens issued before families were stored.
    pub family: Option<Family>,
}

impl Found {
    /// Whether the token may be used at `now`: unexpired, not spent by rotation, its family
    /// neither revoked nor over.
    pub fn is_active(&self, now: i64) -> bool {
        now < self.record.expires_at
            && self.record.rotated_at.is_none()
            && self.family.as_ref().is_none_or(|f| f.is_live(now))
    }

    /// The family as stored, or as it is first written for a token older than families: its
    /// grant plus `lifetime` seconds.
    pub fn family_or_legacy(&self, lifetime: i64) -> Family {
        self.family.clone().unwrap_or_else(|| Family {
            id: self.record.auth_req_id.clone(),
            client_id: self.record.client_id.clone(),
            sub: self.record.sub.clone(),
            expires_at: self.record.auth_time.saturating_add(lifetime),
            revoked_at: None,
        })
    }
}

/// The form of a POST with client authentication as at `/token`, and its `token` (RFC 7662
/// §2.1, RFC 7009 §2.1). `token_type_hint` needs no reading: one lookup finds either kind.
pub async fn read_request(
    ctx: &Ctx,
    req: &Request,
) -> Result<(Client, String), TokenManagementError> {
    if req.method() != Method::POST {
        return Err(TokenManagementError::InvalidRequest(
            "this endpoint accepts POST only".into(),
        ));
    }
    let form = Form::from_request(req)
        .map_err(|e| TokenManagementError::InvalidRequest(e.describe().into()))?;
    let cert = mtls::from_request(req);
    let credentials = client_auth::Credentials {
        headers: req.headers(),
        form: &form,
        cert: cert.as_ref(),
    };
    let client = client_auth::authenticate(
        credentials,
        ctx.store.as_ref(),
        &ctx.config,
        ctx.clock.now(),
    )
    .await?;
    let token = form
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenManagementError::InvalidRequest("token is required".into()))?;
    Ok((client, token.to_owned()))
}

/// The issued token `value` is, active or not; `None` when the OP never issued it.
pub async fn find(ctx: &Ctx, value: &str) -> Result<Option<Found>, StoreError> {
    let Some(hash) = store_key(ctx, value) else {
        return Ok(None);
    };
    let tokens = ctx.store.tokens();
    let Some(record) = tokens.get_token(&hash).await? else {
        return Ok(None);
    };
    let family = tokens.get_family(&record.auth_req_id).await?;
    Ok(Some(Found { record, family }))
}

/// `find`, keeping only a token active at `now`.
pub async fn find_active(ctx: &Ctx, value: &str, now: i64) -> Result<Option<Found>, StoreError> {
    Ok(find(ctx, value).await?.filter(|f| f.is_active(now)))
}

/// The store key of a presented value: an opaque token's hash, or a verified JWT access
/// token's `jti`, hashed apart; `None` for anything else.
fn store_key(ctx: &Ctx, value: &str) -> Option<String> {
    if value.is_empty() || value.len() > MAX_PRESENTED {
        return None;
    }
    if !value.contains('.') {
        return Some(record_hash(value, AccessTokenFormat::Opaque));
    }
    let jti = verified_jti(ctx, value)?;
    Some(record_hash(&jti, AccessTokenFormat::Jwt))
}

/// The `jti` of a JWT access token this OP signed.
fn verified_jti(ctx: &Ctx, value: &str) -> Option<String> {
    let header = jsonwebtoken::decode_header(value).ok()?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(AT_JWT_TYP))
    {
        return None;
    }
    let keys = JwkSet {
        keys: ctx
            .signer
            .published_jwks()
            .into_iter()
            .filter_map(|jwk| serde_json::from_value::<Jwk>(jwk).ok())
            .collect(),
    };
    let verified = jose::verify(value, &keys, &[Algorithm::ES256]).ok()?;
    if verified.claims.get("iss").and_then(|v| v.as_str()) != Some(ctx.config.issuer.as_str()) {
        return None;
    }
    verified
        .claims
        .get("jti")
        .and_then(|v| v.as_str())
        .filter(|jti| !jti.is_empty())
        .map(str::to_owned)
}

/// The `token_type` introspection answers for `record` (RFC 7662 §2.2): an access token is a
/// Bearer token, or a DPoP token when bound to a DPoP key; a refresh token is named by its hint
/// value (RFC 7009 §2.1).
pub fn token_type(record: &TokenRecord) -> &'static str {
    match (record.kind, &record.jkt) {
        (TokenKind::Access, None) => "Bearer",
        (TokenKind::Access, Some(_)) => "DPoP",
        (TokenKind::Refresh, _) => "refresh_token",
    }
}
