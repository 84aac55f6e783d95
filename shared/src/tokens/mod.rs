//! Token issuance: opaque or JWT access tokens and opaque refresh tokens (stored only as hashes),
//! their family, and the ES256 ID token (OIDC Core §2, CIBA Core §10.1.1, RFC 9068).

use serde::Serialize;

use crate::config::Config;
use crate::context::Ctx;
use crate::domain::{AccessTokenFormat, AuthRequest, DeliveryMode, Family, TokenKind, TokenRecord};
use crate::jose;
use crate::ports::{Random, Signer, SignerError};
use crate::secret::{self, Secret};
use crate::store::{RedeemError, StoreError};

pub mod presented;

/// The claim that carries the evidence of the device's decision (`transaction::approval_claim`)
/// in ID tokens, JWT access tokens and introspection answers.
pub const APPROVAL_CLAIM: &str = "txn_approval";

/// The `typ` of a JWT access token (RFC 9068 §2.1).
pub const AT_JWT_TYP: &str = "at+jwt";

/// The token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Serialize, Debug)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub id_token: String,
    pub scope: String,
    /// What the user approved (RFC 9396 §7), when the request carried `authorization_details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

/// A minted set of tokens: the response for the client and the records to store.
pub struct Minted {
    pub response: TokenResponse,
    pub records: Vec<TokenRecord>,
    pub family: Family,
}

/// The store key of an issued access or refresh token: the hash of its value, or for a JWT
/// access token the hash of its `jti` (every delivery attempt of a push-mode request signs the
/// token again, with the same `jti`), kept apart from opaque values.
pub fn record_hash(value: &str, format: AccessTokenFormat) -> String {
    match format {
        AccessTokenFormat::Opaque => secret::hash(value),
        AccessTokenFormat::Jwt => secret::hash(&format!("at+jwt:{value}")),
    }
}

/// What tokens are issued for: an approved request, or the grant a refresh token carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    /// The request the grant came from, which names its family.
    pub auth_req_id: String,
    pub auth_time: i64,
    pub acr: Option<String>,
    /// When the access and refresh tokens count as issued (epoch seconds).
    pub issued_at: i64,
    /// The family's absolute end: no token of the grant outlives it.
    pub family_expires_at: i64,
    pub format: AccessTokenFormat,
    /// What the tokens are bound to, if anything.
    pub binding: Binding,
    /// The RFC 9396 `authorization_details` the user approved, carried by every token of the
    /// grant.
    pub authorization_details: Option<serde_json::Value>,
    /// The `txn_approval` claim of its ID tokens, introspection and JWT access tokens: the
    /// evidence of the device's decision (`transaction::approval_claim`).
    pub approval: Option<serde_json::Value>,
}

/// What the tokens of a grant are bound to (their sender constraint): the DPoP key the token
/// request proved (RFC 9449, `cnf.jkt`), the client certificate it came with (RFC 8705,
/// `cnf.x5t#S256`), either or both. A bound token is good only with its key or certificate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Binding {
    pub jkt: Option<String>,
    pub x5t: Option<String>,
}

impl Binding {
    pub fn is_bound(&self) -> bool {
        self.jkt.is_some() || self.x5t.is_some()
    }

    /// The `cnf` claim (RFC 7800) of a token so bound, `None` for a bearer token.
    pub fn confirmation(jkt: Option<&str>, x5t: Option<&str>) -> Option<serde_json::Value> {
        let mut cnf = serde_json::Map::new();
        if let Some(jkt) = jkt {
            cnf.insert("jkt".into(), jkt.into());
        }
        if let Some(x5t) = x5t {
            cnf.insert("x5t#S256".into(), x5t.into());
        }
        (!cnf.is_empty()).then_some(serde_json::Value::Object(cnf))
    }
}

impl Grant {
    /// The grant of an approved request. A push-mode request's tokens count as issued at the
    /// decision, so every delivery attempt carries the very tokens that were stored for it.
    pub fn of_request(
        request: &AuthRequest,
        format: AccessTokenFormat,
        config: &Config,
        now: i64,
    ) -> Self {
        let auth_time = request.decided_at.unwrap_or(now);
        Self {
            client_id: request.client_id.clone(),
            sub: request.sub.clone(),
            scope: request.scope.clone(),
            auth_req_id: request.auth_req_id.clone(),
            auth_time,
            // What the OP performs, never what was merely asked for: the first requested value
            // it supports, or none.
            acr: request.acr_values.as_deref().and_then(|a| {
                a.split(' ')
                    .find(|v| config.acr_values_supported.iter().any(|s| s == v))
                    .map(str::to_owned)
            }),
            issued_at: if request.delivery_mode == DeliveryMode::Push {
                auth_time
            } else {
                now
            },
            family_expires_at: auth_time.saturating_add(config.refresh_family_lifetime),
            format,
            binding: Binding::default(),
            authorization_details: request.authorization_details.clone(),
            approval: request
                .evidence
                .as_ref()
                .map(|evidence| crate::transaction::approval_claim(request, evidence)),
        }
    }

    /// The grant a refresh token of `family` carries at `now`, narrowed to `scope` when one is
    /// given.
    pub fn of_refresh(
        record: &TokenRecord,
        family: &Family,
        format: AccessTokenFormat,
        scope: Option<String>,
        now: i64,
    ) -> Self {
        Self {
            client_id: record.client_id.clone(),
            sub: record.sub.clone(),
            scope: scope.unwrap_or_else(|| record.scope.clone()),
            auth_req_id: record.auth_req_id.clone(),
            auth_time: record.auth_time,
            acr: record.acr.clone(),
            issued_at: now,
            family_expires_at: family.expires_at,
            format,
            binding: Binding::default(),
            authorization_details: record.authorization_details.clone(),
            approval: record.approval.clone(),
        }
    }

    /// The family of this grant, as first stored (or as stored for tokens older than
    /// families).
    pub fn family(&self) -> Family {
        Family {
            id: self.auth_req_id.clone(),
            client_id: self.client_id.clone(),
            sub: self.sub.clone(),
            expires_at: self.family_expires_at,
            revoked_at: None,
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

/// Mints the tokens of `grant`; the ID token is issued at `now` (epoch seconds).
pub async fn mint(
    grant: &Grant,
    values: TokenValues,
    config: &Config,
    signer: &dyn Signer,
    now: i64,
) -> Result<Minted, SignerError> {
    let TokenValues { access, refresh } = values;
    let issued_at = grant.issued_at;
    let access_expires_at = (issued_at + config.access_token_ttl).min(grant.family_expires_at);
    let refresh_expires_at = (issued_at + config.refresh_token_ttl).min(grant.family_expires_at);
    let access_token = match grant.format {
        AccessTokenFormat::Opaque => access.expose().to_owned(),
        AccessTokenFormat::Jwt => {
            jwt_access_token(grant, access.expose(), access_expires_at, config, signer).await?
        }
    };
    let mut claims = serde_json::json!({
        "iss": config.issuer,
        "sub": grant.sub,
        "aud": grant.client_id,
        "exp": now + config.id_token_ttl,
        "iat": now,
        "auth_time": grant.auth_time,
        "urn:openid:params:jwt:claim:auth_req_id": grant.auth_req_id,
        "at_hash": secret::left_half_hash(&access_token),
        "urn:openid:params:jwt:claim:rt_hash": secret::left_half_hash(refresh.expose()),
    });
    if let Some(acr) = &grant.acr {
        claims["acr"] = acr.as_str().into();
    }
    if let Some(approval) = &grant.approval {
        claims[APPROVAL_CLAIM] = approval.clone();
    }
    let id_token = jose::sign_es256(signer, "JWT", &claims).await?;
    let record = |hash: String, kind, expires_at| TokenRecord {
        hash,
        kind,
        client_id: grant.client_id.clone(),
        sub: grant.sub.clone(),
        scope: grant.scope.clone(),
        auth_req_id: grant.auth_req_id.clone(),
        auth_time: grant.auth_time,
        acr: grant.acr.clone(),
        issued_at,
        expires_at,
        rotated_at: None,
        jkt: grant.binding.jkt.clone(),
        x5t: grant.binding.x5t.clone(),
        authorization_details: grant.authorization_details.clone(),
        approval: grant.approval.clone(),
    };
    let records = vec![
        record(
            record_hash(access.expose(), grant.format),
            TokenKind::Access,
            access_expires_at,
        ),
        record(refresh.hash(), TokenKind::Refresh, refresh_expires_at),
    ];
    Ok(Minted {
        response: TokenResponse {
            access_token,
            token_type: if grant.binding.jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: (access_expires_at - now).max(0),
            refresh_token: refresh.expose().to_owned(),
            id_token,
            scope: grant.scope.clone(),
            authorization_details: grant.authorization_details.clone(),
        },
        records,
        family: grant.family(),
    })
}

/// An RFC 9068 access token: the grant's claims, signed like ID tokens, `jti` the random value
/// an opaque token would have been.
async fn jwt_access_token(
    grant: &Grant,
    jti: &str,
    expires_at: i64,
    config: &Config,
    signer: &dyn Signer,
) -> Result<String, SignerError> {
    let mut claims = serde_json::json!({
        "iss": config.issuer,
        "sub": grant.sub,
        "aud": config.access_token_audience,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "iat": grant.issued_at,
        "exp": expires_at,
        "auth_time": grant.auth_time,
        "jti": jti,
    });
    if let Some(acr) = &grant.acr {
        claims["acr"] = acr.as_str().into();
    }
    let binding = &grant.binding;
    if let Some(cnf) = Binding::confirmation(binding.jkt.as_deref(), binding.x5t.as_deref()) {
        claims["cnf"] = cnf;
    }
    // RFC 9396 §9.1: an API checks what was approved in the token itself.
    if let Some(details) = &grant.authorization_details {
        claims["authorization_details"] = details.clone();
    }
    if let Some(approval) = &grant.approval {
        claims[APPROVAL_CLAIM] = approval.clone();
    }
    jose::sign_es256(signer, AT_JWT_TYP, &claims).await
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
/// scope, user and decision time (CIBA Core §10.1.1), its access token in the client's `format`
/// and bound as `binding` says.
pub async fn mint_for_request(
    ctx: &Ctx,
    request: &AuthRequest,
    format: AccessTokenFormat,
    binding: Binding,
    values: TokenValues,
    now: i64,
) -> Result<Minted, SignerError> {
    let grant = Grant {
        binding,
        ..Grant::of_request(request, format, &ctx.config, now)
    };
    mint(&grant, values, &ctx.config, ctx.signer.as_ref(), now).await
}

/// Mints an approved request's tokens and redeems the request with them, in one atomic write:
/// exactly one caller ever gets tokens for a request. A store that was unavailable may have
/// committed the write all the same (its answers lost); then the tokens are issued: a client
/// told to try again would find its request redeemed, and its login lost.
pub async fn redeem(
    ctx: &Ctx,
    request: &AuthRequest,
    format: AccessTokenFormat,
    binding: Binding,
    values: TokenValues,
    now: i64,
) -> Result<TokenResponse, RedeemFailure> {
    let minted = mint_for_request(ctx, request, format, binding, values, now)
        .await
        .map_err(RedeemFailure::Signer)?;
    match ctx
        .store
        .requests()
        .redeem(&request.auth_req_id, now, &minted.family, &minted.records)
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
