//! `POST /introspect`: token introspection (RFC 7662).
//!
//! parse → authenticate the caller as at `/token` → find the presented token → answer it if it
//! is active and the caller may see it, else exactly `{"active": false}`. A client sees its own
//! tokens; a resource server sees every client's access tokens (and no refresh token).

use ciba_shared::context::Ctx;
use ciba_shared::domain::{Client, TokenKind, TokenRecord};
use ciba_shared::error::{TokenManagementError, error_response};
use ciba_shared::http::json_response;
use ciba_shared::tokens::Binding;
use ciba_shared::tokens::presented::{self, token_type};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match introspect(ctx, &req).await {
        Ok(answer) => json_response(StatusCode::OK, &answer, true),
        Err(e) => error_response(&e),
    }
}

async fn introspect(ctx: &Ctx, req: &Request) -> Result<Value, TokenManagementError> {
    let (caller, token) = presented::read_request(ctx, req).await?;
    let now = ctx.clock.now();
    let answer = presented::find_active(ctx, &token, now)
        .await?
        .filter(|found| visible_to(&caller, &found.record))
        .map(|found| active(&found.record, &ctx.config.issuer));
    tracing::info!(
        client_id = %caller.client_id,
        active = answer.is_some(),
        "token introspected"
    );
    Ok(answer.unwrap_or_else(|| json!({"active": false})))
}

/// Whether `caller` may learn about the token of `record`.
pub fn visible_to(caller: &Client, record: &TokenRecord) -> bool {
    record.client_id == caller.client_id
        || (caller.resource_server && record.kind == TokenKind::Access)
}

/// The introspection answer of an active token (RFC 7662 §2.2).
fn active(record: &TokenRecord, issuer: &str) -> Value {
    let mut answer = json!({
        "active": true,
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": record.sub,
        "exp": record.expires_at,
        "iat": record.issued_at,
        "token_type": token_type(record),
        "auth_time": record.auth_time,
        "iss": issuer,
    });
    if let Some(acr) = &record.acr {
        answer["acr"] = acr.as_str().into();
    }
    // RFC 9396 §9.2: what the user approved, for the API to enforce.
    if let Some(details) = &record.authorization_details {
        answer["authorization_details"] = details.clone();
    }
    // Which device approved what (the ID token's claim): an API can hold the grant to it.
    if let Some(approval) = &record.approval {
        answer[ciba_shared::tokens::APPROVAL_CLAIM] = approval.clone();
    }
    if let Some(cnf) = Binding::confirmation(record.jkt.as_deref(), record.x5t.as_deref()) {
        answer["cnf"] = cnf;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_testkit::store_suite::client;

    fn record(client_id: &str, kind: TokenKind) -> TokenRecord {
        TokenRecord {
            approval: None,
            hash: "h".into(),
            kind,
            client_id: client_id.into(),
            sub: "alice".into(),
            scope: "openid".into(),
            auth_req_id: "r1".into(),
            auth_time: 10,
            acr: None,
            issued_at: 11,
            expires_at: 20,
            rotated_at: None,
            jkt: None,
            x5t: None,
            authorization_details: None,
        }
    }

    #[test]
    fn a_client_sees_its_own_tokens_only() {
        let rp = client("rp");
        assert!(visible_to(&rp, &record("rp", TokenKind::Access)));
        assert!(visible_to(&rp, &record("rp", TokenKind::Refresh)));
        assert!(!visible_to(&rp, &record("other", TokenKind::Access)));
    }

    #[test]
    fn a_resource_server_sees_every_access_token_and_no_refresh_token() {
        let api = Client {
            resource_server: true,
            ..client("api")
        };
        assert!(visible_to(&api, &record("rp", TokenKind::Access)));
        assert!(!visible_to(&api, &record("rp", TokenKind::Refresh)));
    }

    #[test]
    fn the_active_answer_names_the_token_and_its_grant() {
        let mut r = record("rp", TokenKind::Access);
        r.acr = Some("urn:acr:high".into());
        let a = active(&r, "https://op.example.com");
        assert_eq!(a["active"], true);
        assert_eq!(a["token_type"], "Bearer");
        assert_eq!(a["exp"], 20);
        assert_eq!(a["iat"], 11);
        assert_eq!(a["auth_time"], 10);
        assert_eq!(a["acr"], "urn:acr:high");
        assert!(
            active(&record("rp", TokenKind::Access), "x")
                .get("acr")
                .is_none()
        );
    }
}
