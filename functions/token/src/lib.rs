//! `POST /token`: the token endpoint, CIBA grant (CIBA Core §10, §11).
//!
//! parse → authenticate the client → look up the request → answer its state; an approved
//! request is redeemed exactly once, atomically with storing its tokens.

use ciba_shared::client_auth;
use ciba_shared::context::Ctx;
use ciba_shared::domain::{AuthRequest, Client, DeliveryMode, Family, TokenKind};
use ciba_shared::dpop::{self, DpopError, Proof, Target};
use ciba_shared::error::{TokenError, error_response};
use ciba_shared::fapi;
use ciba_shared::http::{Form, json_response};
use ciba_shared::ident::Ident;
use ciba_shared::mtls::{self, ClientCert};
use ciba_shared::protocol::{CIBA_GRANT, REFRESH_GRANT, Scope, Standing, standing};
use ciba_shared::store::{PollOutcome, RotateError, StoreError};
use ciba_shared::tokens::{self, Binding, Grant, RedeemFailure, TokenValues, presented};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    let response = match token(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    };
    dpop::with_nonce(ctx, response)
}

async fn token(ctx: &Ctx, req: &Request) -> Result<Response<Body>, TokenError> {
    if req.method() != Method::POST {
        return Err(TokenError::InvalidRequest(
            "the token endpoint accepts POST only".into(),
        ));
    }
    let form =
        Form::from_request(req).map_err(|e| TokenError::InvalidRequest(e.describe().into()))?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| TokenError::InvalidRequest("grant_type is required".into()))?;
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
    match grant_type {
        CIBA_GRANT => {
            let binding = sender_constraint(ctx, req, &client, cert.as_ref()).await?;
            ciba_grant(ctx, &client, &form, binding).await
        }
        REFRESH_GRANT => {
            let binding = sender_constraint(ctx, req, &client, cert.as_ref()).await?;
            refresh_grant(ctx, &client, &form, binding).await
        }
        other => Err(TokenError::UnsupportedGrantType(
            format!("grant_type {other} is not supported").into(),
        )),
    }
}

/// The request's DPoP proof (RFC 9449 §5), checked, if it has one: tokens issued now are bound
/// to its key. Every request brings a fresh proof, so its `jti` is spent whatever the answer
/// (`authorization_pending` included).
async fn dpop_proof(ctx: &Ctx, req: &Request) -> Result<Option<Proof>, TokenError> {
    let target = Target {
        method: "POST",
        path: "/token",
        access_token: None,
    };
    dpop::verify(ctx, req.headers(), &target)
        .await
        .map_err(|e| match e {
            DpopError::Invalid(what) => TokenError::InvalidDpopProof(what.into()),
            DpopError::UseNonce(what) => TokenError::UseDpopNonce(what.into()),
            DpopError::Store(e) => e.into(),
        })
}

/// What the tokens a request obtains are bound to: the key of its DPoP proof, and, for a client
/// registered with `tls_client_certificate_bound_access_tokens`, the certificate it came with
/// (RFC 8705 §3), which it must then have. A FAPI client's tokens must be bound one way or the
/// other (FAPI 1.0 Advanced §5.2.2).
async fn sender_constraint(
    ctx: &Ctx,
    req: &Request,
    client: &Client,
    cert: Option<&ClientCert>,
) -> Result<Binding, TokenError> {
    let proof = dpop_proof(ctx, req).await?;
    let x5t = if client.tls.tls_client_certificate_bound_access_tokens {
        let cert = cert.ok_or_else(|| {
            TokenError::InvalidRequest(
                "this client's tokens are bound to its certificate: send the request over \
                 mutual TLS (the mtls_endpoint_aliases)"
                    .into(),
            )
        })?;
        Some(cert.thumbprint())
    } else {
        None
    };
    let binding = Binding {
        jkt: proof.map(|p| p.jkt),
        x5t,
    };
    if !binding.is_bound() && fapi::applies(client, &ctx.config) {
        return Err(TokenError::InvalidRequest(
            "a FAPI client's access tokens are sender-constrained: send a DPoP proof, or \
             register tls_client_certificate_bound_access_tokens and use mutual TLS"
                .into(),
        ));
    }
    Ok(binding)
}

async fn ciba_grant(
    ctx: &Ctx,
    client: &Client,
    form: &Form,
    binding: Binding,
) -> Result<Response<Body>, TokenError> {
    if client.resource_server {
        return Err(TokenError::UnauthorizedClient(
            "a resource server starts no authentication requests".into(),
        ));
    }
    if client.backchannel_token_delivery_mode == DeliveryMode::Push {
        return Err(TokenError::UnauthorizedClient(
            "tokens of a push-mode client are delivered to its notification endpoint".into(),
        ));
    }
    let id = form
        .get("auth_req_id")
        .ok_or_else(|| TokenError::InvalidRequest("auth_req_id is required".into()))?;
    if let Some(fault) = Ident::OpId.fault(id) {
        return Err(TokenError::InvalidGrant(
            format!("auth_req_id {fault}").into(),
        ));
    }
    let unknown =
        || TokenError::InvalidGrant("auth_req_id is unknown, expired or already redeemed".into());
    let request = ctx
        .store
        .requests()
        .get_auth_request_for_poll(id)
        .await?
        .ok_or_else(unknown)?;
    // Another client's id answers exactly like an unknown one: ids are not confirmed to others.
    if request.client_id != client.client_id {
        return Err(unknown());
    }
    let now_ms = ctx.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    match standing(&request, now) {
        Standing::Redeemed => Err(unknown()),
        Standing::Refused(e) => Err(e),
        Standing::Approved => redeem(ctx, client, &request, binding, now).await,
        Standing::Pending => match ctx.store.requests().record_poll(id, now_ms).await? {
            PollOutcome::InTime => Err(TokenError::AuthorizationPending(
                "the user has not yet decided".into(),
            )),
            PollOutcome::TooSoon { interval } => Err(TokenError::SlowDown(
                format!("polled too soon: wait at least {interval} seconds between polls").into(),
            )),
            PollOutcome::Gone => Err(unknown()),
        },
    }
}

async fn redeem(
    ctx: &Ctx,
    client: &Client,
    request: &AuthRequest,
    binding: Binding,
    now: i64,
) -> Result<Response<Body>, TokenError> {
    let values = TokenValues::random(ctx.random.as_ref());
    match tokens::redeem(
        ctx,
        request,
        client.access_token_format,
        binding,
        values,
        now,
    )
    .await
    {
        Ok(response) => {
            tracing::info!(client_id = %request.client_id, "tokens issued");
            Ok(json_response(StatusCode::OK, &response, true))
        }
        Err(RedeemFailure::NotRedeemable) => Err(TokenError::InvalidGrant(
            "auth_req_id is unknown, expired or already redeemed".into(),
        )),
        Err(RedeemFailure::Store(e)) => Err(e.into()),
        Err(RedeemFailure::Signer(e)) => Err(e.into()),
    }
}

/// `grant_type=refresh_token` (RFC 6749 §6) with rotation: the presented refresh token is spent
/// in the same atomic write that stores its successors. Presenting a spent one again revokes
/// its whole family (RFC 9700 §4.14.2): a copy is in someone's hands. A write that committed
/// though the store answered unavailable issues its successors: the client could not try again
/// with the spent token.
async fn refresh_grant(
    ctx: &Ctx,
    client: &Client,
    form: &Form,
    binding: Binding,
) -> Result<Response<Body>, TokenError> {
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| TokenError::InvalidRequest("refresh_token is required".into()))?;
    let invalid =
        || TokenError::InvalidGrant("the refresh token is invalid, expired or already used".into());
    let now = ctx.clock.now();
    let found = presented::find(ctx, presented)
        .await?
        .filter(|f| f.record.kind == TokenKind::Refresh)
        .ok_or_else(invalid)?;
    // Another client's refresh token answers exactly like an unknown one, and is left alone.
    if found.record.client_id != client.client_id {
        return Err(invalid());
    }
    let family = found.family_or_legacy(ctx.config.refresh_family_lifetime);
    if found.record.rotated_at.is_some() {
        return Err(reused(ctx, &family, now).await);
    }
    if !found.is_active(now) || !family.is_live(now) {
        return Err(invalid());
    }
    // A grant bound to a DPoP key or a certificate stays bound to it: its refresh token is good
    // only with a proof of that key, over a connection with that certificate, so a stolen one
    // cannot be turned into bearer tokens.
    if let Some(bound) = &found.record.jkt {
        match &binding.jkt {
            None => {
                return Err(TokenError::InvalidDpopProof(
                    "this refresh token is bound to a DPoP key: send a DPoP proof".into(),
                ));
            }
            Some(jkt) if jkt != bound => {
                return Err(TokenError::InvalidGrant(
                    "the refresh token is bound to another DPoP key".into(),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(bound) = &found.record.x5t
        && binding.x5t.as_ref() != Some(bound)
    {
        return Err(TokenError::InvalidGrant(
            "the refresh token is bound to another client certificate".into(),
        ));
    }
    let scope = form
        .get("scope")
        .map(|requested| {
            Scope::parse(&found.record.scope)
                .narrow(requested)
                .map(|scope| scope.to_string())
                .map_err(|_| {
                    TokenError::InvalidScope(
                        "the requested scope exceeds the one originally granted".into(),
                    )
                })
        })
        .transpose()?;
    let grant = Grant {
        binding,
        ..Grant::of_refresh(
            &found.record,
            &family,
            client.access_token_format,
            scope,
            now,
        )
    };
    let values = TokenValues::random(ctx.random.as_ref());
    let minted = tokens::mint(&grant, values, &ctx.config, ctx.signer.as_ref(), now).await?;
    match ctx
        .store
        .tokens()
        .rotate_refresh_token(
            &found.record.hash,
            &client.client_id,
            now,
            &family,
            &minted.records,
        )
        .await
    {
        Ok(()) => Ok(json_response(StatusCode::OK, &minted.response, true)),
        Err(RotateError::Invalid) => Err(invalid()),
        // Spent by a concurrent request meanwhile: two holders of one refresh token.
        Err(RotateError::Reused) => Err(reused(ctx, &family, now).await),
        Err(RotateError::Store(e @ StoreError::Unavailable(_)))
            if tokens::stored_all_the_same(ctx, &minted).await =>
        {
            tracing::warn!(error = %e, "the rotation's answer was lost, but it committed");
            Ok(json_response(StatusCode::OK, &minted.response, true))
        }
        Err(RotateError::Store(e)) => Err(e.into()),
    }
}

/// Revokes the family of a refresh token presented after it was spent; the answer is the
/// `invalid_grant` any spent token gets. When the revocation itself fails the store error is
/// answered instead, so the client tries again and the revocation with it.
async fn reused(ctx: &Ctx, family: &Family, now: i64) -> TokenError {
    tracing::warn!(
        client_id = %family.client_id,
        family = %family.id,
        "a spent refresh token was presented again: its family is revoked"
    );
    match ctx.store.tokens().revoke_family(family, now).await {
        Ok(()) => {
            TokenError::InvalidGrant("the refresh token is invalid, expired or already used".into())
        }
        Err(e) => e.into(),
    }
}
