//! Token issuance: opaque access and refresh tokens (stored only as hashes) and the ES256 ID
//! token (OIDC Core §2, CIBA Core §10.1.1).

use serde::Serialize;

use crate::config::Config;
use crate::context::Ctx;
use crate::domain::{AuthRequest, TokenKind, TokenRecord};
use crate::jose;
use crate::ports::{Random, Signer, SignerError};
use crate::secret::{self, Secret};
use crate::store::{RedeemError, StoreError};

/// The token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Serialize, Debug)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub id_token: String,
    pub scope: String,
}

/// A minted set of tokens: the response for the client and the records to store.
pub struct Minted {
    pub response: TokenResponse,
    pub records: Vec<TokenRecord>,
}

/// What tokens are issued for: an approved request, or the grant a refresh token carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub auth_req_id: String,
    pub auth_time: i64,
    pub acr: Option<String>,
}

impl Grant {
    pub fn of_request(request: &AuthRequest, now: i64) -> Self {
        Self {
            client_id: request.client_id.clone(),
            sub: request.sub.clone(),
            scope: request.scope.clone(),
            auth_req_id: request.auth_req_id.clone(),
            auth_time: request.decided_at.unwrap_or(now),
            acr: request
                .acr_values
                .as_deref()
                .and_then(|a| a.split(' ').next())
                .map(str::to_owned),
        }
    }

    /// The grant a refresh token carries, narrowed to `scope` when one is given.
    pub fn of_refresh(record: &TokenRecord, scope: Option<String>) -> Self {
        Self {
            client_id: record.client_id.clone(),
            sub: record.sub.clone(),
            scope: scope.unwrap_or_else(|| record.scope.clone()),
            auth_req_id: record.auth_req_id.clone(),
            auth_time: record.auth_time,
            acr: None,
        }
    }
}

/// The access and refresh token values of one issuance.
pub struct TokenValues {
    pub access: Secret,
    pub refresh: Secret,
}

impl TokenValues {
    pub fn random(random: &dyn Random) -> Self {
        Self {
            access: Secret::new(random.token(32)),
            refresh: Secret::new(random.token(32)),
        }
    }

    /// Values derived from `key` and the request id: every delivery attempt of a push-mode
    /// request carries the very tokens that were stored for it, without storing them in clear.
    pub fn derived(key: &Secret, auth_req_id: &str) -> Self {
        use hmac::{Hmac, Mac};
        use sha2::Sha256;
        let derive = |purpose: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(purpose.as_bytes());
            mac.update(b"|");
            mac.update(auth_req_id.as_bytes());
            use base64::Engine;
            Secret::new(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(mac.finalize().into_bytes()),
            )
        };
        Self {
            access: derive("access_token"),
            refresh: derive("refresh_token"),
        }
    }
}

/// Mints the tokens of `grant` at `now` (epoch seconds).
pub async fn mint(
    grant: &Grant,
    values: TokenValues,
    config: &Config,
    signer: &dyn Signer,
    now: i64,
) -> Result<Minted, SignerError> {
    let TokenValues { access, refresh } = values;
    let mut claims = serde_json::json!({
        "iss": config.issuer,
        "sub": grant.sub,
        "aud": grant.client_id,
        "exp": now + config.id_token_ttl,
        "iat": now,
        "auth_time": grant.auth_time,
        "urn:openid:params:jwt:claim:auth_req_id": grant.auth_req_id,
        "at_hash": secret::left_half_hash(access.expose()),
        "urn:openid:params:jwt:claim:rt_hash": secret::left_half_hash(refresh.expose()),
    });
    if let Some(acr) = &grant.acr {
        claims["acr"] = acr.as_str().into();
    }
    let id_token = jose::sign_es256(signer, "JWT", &claims).await?;
    let record = |token: &Secret, kind, ttl| TokenRecord {
        hash: token.hash(),
        kind,
        client_id: grant.client_id.clone(),
        sub: grant.sub.clone(),
        scope: grant.scope.clone(),
        auth_req_id: grant.auth_req_id.clone(),
        auth_time: grant.auth_time,
        expires_at: now + ttl,
    };
    let records = vec![
        record(&access, TokenKind::Access, config.access_token_ttl),
        record(&refresh, TokenKind::Refresh, config.refresh_token_ttl),
    ];
    Ok(Minted {
        response: TokenResponse {
            access_token: access.expose().to_owned(),
            token_type: "Bearer",
            expires_in: config.access_token_ttl,
            refresh_token: refresh.expose().to_owned(),
            id_token,
            scope: grant.scope.clone(),
        },
        records,
    })
}

/// Why an approved request's tokens were not issued.
#[derive(Debug)]
pub enum RedeemFailure {
    /// Not approved, expired or redeemed by another caller meanwhile.
    NotRedeemable,
    Store(StoreError),
    Signer(SignerError),
}

/// The tokens of an approved `request`, minted from `values` at `now`: its grant is the request's
/// scope, user and decision time (CIBA Core §10.1.1).
pub async fn mint_for_request(
    ctx: &Ctx,
    request: &AuthRequest,
    values: TokenValues,
    now: i64,
) -> Result<Minted, SignerError> {
    let grant = Grant::of_request(request, now);
    mint(&grant, values, &ctx.config, ctx.signer.as_ref(), now).await
}

/// Mints an approved request's tokens and redeems the request with them, in one atomic write:
/// exactly one caller ever gets tokens for a request. A store that was unavailable may have
/// committed the write all the same (its answers lost); then the tokens are issued: a client
/// told to try again would find its request redeemed, and its login lost.
pub async fn redeem(
    ctx: &Ctx,
    request: &AuthRequest,
    values: TokenValues,
    now: i64,
) -> Result<TokenResponse, RedeemFailure> {
    let minted = mint_for_request(ctx, request, values, now)
        .await
        .map_err(RedeemFailure::Signer)?;
    match ctx
        .store
        .requests()
        .redeem(&request.auth_req_id, now, &minted.records)
        .await
    {
        Ok(()) => Ok(minted.response),
        Err(RedeemError::NotRedeemable) => Err(RedeemFailure::NotRedeemable),
        Err(RedeemError::Store(e @ StoreError::Unavailable(_)))
            if stored_all_the_same(ctx, &minted).await =>
        {
            tracing::warn!(error = %e, "the redemption's answer was lost, but it committed");
            Ok(minted.response)
        }
        Err(RedeemError::Store(e)) => Err(RedeemFailure::Store(e)),
    }
}

/// Whether the write of `minted` committed though the store answered unavailable: its access
/// token's record, under the hash of the value just minted, is stored.
pub async fn stored_all_the_same(ctx: &Ctx, minted: &Minted) -> bool {
    let Some(access) = minted.records.first() else {
        return false;
    };
    matches!(
        ctx.store.tokens().get_token(&access.hash).await,
        Ok(Some(stored)) if stored == *access
    )
}
