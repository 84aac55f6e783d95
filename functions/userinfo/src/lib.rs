//! `GET or POST /userinfo`: the user's claims for a Bearer access token (OIDC Core §5.3,
//! RFC 6750 §2).

use ciba_shared::context::Ctx;
use ciba_shared::domain::{TokenKind, TokenRecord, User};
use ciba_shared::dpop::{self, DpopError, Target};
use ciba_shared::error::{BearerError, error_response};
use ciba_shared::http::{Form, bearer_token, dpop_token, json_response, media_type};
use ciba_shared::mtls;
use ciba_shared::protocol::Scope;
use ciba_shared::tokens::presented;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value};

/// Which standard claims each scope releases (OIDC Core §5.4).
const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("phone", &["phone_number", "phone_number_verified"]),
    ("address", &["address"]),
];

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    let response = match userinfo(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    };
    dpop::with_nonce(ctx, response)
}

async fn userinfo(ctx: &Ctx, req: &Request) -> Result<Response<Body>, BearerError> {
    let (token, scheme_dpop) = match dpop_token(req.headers()) {
        Some(token) => (token.to_owned(), true),
        None => (access_token(req)?, false),
    };
    let record = presented::find_active(ctx, &token, ctx.clock.now())
        .await?
        .map(|found| found.record)
        .filter(|r| r.kind == TokenKind::Access)
        .ok_or_else(|| {
            BearerError::InvalidToken("the access token is invalid, expired or revoked".into())
        })?;
    check_binding(ctx, req, &token, &record, scheme_dpop).await?;
    check_certificate(req, &record)?;
    let user = ctx
        .store
        .accounts()
        .get_user(&record.sub)
        .await?
        .ok_or_else(|| {
            BearerError::InvalidToken("the access token's user no longer exists".into())
        })?;
    Ok(json_response(
        StatusCode::OK,
        &claims(&user, &record.scope),
        true,
    ))
}

/// A DPoP-bound token is good only under the `DPoP` scheme with a proof of its key over this
/// request and this token (RFC 9449 §7); a Bearer token only as a Bearer token.
async fn check_binding(
    ctx: &Ctx,
    req: &Request,
    token: &str,
    record: &TokenRecord,
    scheme_dpop: bool,
) -> Result<(), BearerError> {
    let Some(bound) = &record.jkt else {
        return if scheme_dpop {
            Err(BearerError::DpopToken(
                "the access token is not bound to a DPoP key".into(),
            ))
        } else {
            Ok(())
        };
    };
    if !scheme_dpop {
        return Err(BearerError::DpopToken(
            "the access token is bound to a DPoP key: present it with the DPoP scheme and a proof"
                .into(),
        ));
    }
    let target = Target {
        method: req.method().as_str(),
        path: "/userinfo",
        access_token: Some(token),
    };
    let proof = dpop::verify(ctx, req.headers(), &target)
        .await
        .map_err(|e| match e {
            DpopError::Invalid(what) => BearerError::InvalidDpopProof(what.into()),
            DpopError::UseNonce(what) => BearerError::UseDpopNonce(what.into()),
            DpopError::Store(e) => e.into(),
        })?
        .ok_or_else(|| BearerError::InvalidDpopProof("a DPoP proof is required".into()))?;
    if &proof.jkt != bound {
        return Err(BearerError::DpopToken(
            "the DPoP proof is signed by another key than the token is bound to".into(),
        ));
    }
    Ok(())
}

/// A certificate-bound token is good only over mutual TLS with its certificate (RFC 8705 §3).
fn check_certificate(req: &Request, record: &TokenRecord) -> Result<(), BearerError> {
    let Some(bound) = &record.x5t else {
        return Ok(());
    };
    if mtls::from_request(req).is_some_and(|cert| &cert.thumbprint() == bound) {
        return Ok(());
    }
    Err(BearerError::InvalidToken(
        "the access token is bound to a client certificate: present it over mutual TLS with \
         that certificate"
            .into(),
    ))
}

/// The token from the `Authorization` header, or from a POST form's `access_token`; never both.
fn access_token(req: &Request) -> Result<String, BearerError> {
    let header = bearer_token(req.headers()).map(str::to_owned);
    let form_token = if req.method() == Method::POST
        && media_type(req.headers()).as_deref() == Some("application/x-www-form-urlencoded")
    {
        Form::from_request(req)
            .map_err(|e| BearerError::InvalidRequest(e.describe().into()))?
            .get("access_token")
            .map(str::to_owned)
    } else {
        None
    };
    match (header, form_token) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest(
            "send the access token in one place only".into(),
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(BearerError::Missing),
    }
}

fn claims(user: &User, scope: &str) -> Value {
    let mut out = Map::new();
    out.insert("sub".into(), user.sub.clone().into());
    for granted in Scope::parse(scope).values() {
        let Some((_, names)) = SCOPE_CLAIMS.iter().find(|(s, _)| *s == granted) else {
            continue;
        };
        for name in *names {
            if let Some(value) = user.claims.get(*name) {
                out.insert((*name).into(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_the_granted_scopes() {
        let user = User {
            sub: "u1".into(),
            login_hints: vec![],
            claims: serde_json::from_value(serde_json::json!({
                "name": "Alice", "email": "alice@example.com", "phone_number": "+1555"
            }))
            .unwrap(),
            user_code_hash: None,
        };
        let c = claims(&user, "openid email");
        assert_eq!(
            c,
            serde_json::json!({"sub": "u1", "email": "alice@example.com"})
        );
    }
}
