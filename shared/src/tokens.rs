//! Token issuance: opaque access and refresh tokens (stored only as hashes) and the ES256 ID
//! token (OIDC Core §2, CIBA Core §10.1.1).

use serde::Serialize;

use crate::config::Config;
use crate::domain::{AuthRequest, TokenKind, TokenRecord};
use crate::jose;
use crate::ports::{Random, Signer, SignerError};
use crate::secret::{self, Secret};

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

/// Mints the tokens for an approved request at `now` (epoch seconds).
pub async fn mint(
    request: &AuthRequest,
    config: &Config,
    signer: &dyn Signer,
    random: &dyn Random,
    now: i64,
) -> Result<Minted, SignerError> {
    let access = Secret::new(random.token(32));
    let refresh = Secret::new(random.token(32));
    let auth_time = request.decided_at.unwrap_or(now);
    let mut claims = serde_json::json!({
        "iss": config.issuer,
        "sub": request.sub,
        "aud": request.client_id,
        "exp": now + config.id_token_ttl,
        "iat": now,
        "auth_time": auth_time,
        "urn:openid:params:jwt:claim:auth_req_id": request.auth_req_id,
        "at_hash": secret::left_half_hash(access.expose()),
        "urn:openid:params:jwt:claim:rt_hash": secret::left_half_hash(refresh.expose()),
    });
    if let Some(acr) = request
        .acr_values
        .as_deref()
        .and_then(|a| a.split(' ').next())
    {
        claims["acr"] = acr.into();
    }
    let id_token = jose::sign_es256(signer, "JWT", &claims).await?;
    let record = |token: &Secret, kind, ttl| TokenRecord {
        hash: token.hash(),
        kind,
        client_id: request.client_id.clone(),
        sub: request.sub.clone(),
        scope: request.scope.clone(),
        auth_req_id: request.auth_req_id.clone(),
        auth_time,
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
            scope: request.scope.clone(),
        },
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{LocalSigner, OsRandom};
    use crate::store::suite::request;
    use jsonwebtoken::Algorithm;

    #[tokio::test]
    async fn id_token_carries_the_ciba_claims_and_verifies_with_the_op_key() {
        let config = Config::new("https://op.example.com").unwrap();
        let signer = LocalSigner::generate();
        let mut r = request("r1");
        r.decided_at = Some(r.created_at + 7);
        r.acr_values = Some("urn:acr:high urn:acr:low".into());
        let minted = mint(&r, &config, &signer, &OsRandom, r.created_at + 9)
            .await
            .unwrap();
        let keys = jose::single_key_set(signer.public_jwk()).unwrap();
        let v = jose::verify(&minted.response.id_token, &keys, &[Algorithm::ES256]).unwrap();
        let c = v.claims;
        assert_eq!(v.kid.as_deref(), Some(signer.kid()));
        assert_eq!(c["iss"], "https://op.example.com");
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["aud"], "c1");
        assert_eq!(c["auth_time"], r.created_at + 7);
        assert_eq!(c["acr"], "urn:acr:high");
        assert_eq!(c["urn:openid:params:jwt:claim:auth_req_id"], "r1");
        assert_eq!(
            c["at_hash"],
            secret::left_half_hash(&minted.response.access_token)
        );
        assert_eq!(
            c["urn:openid:params:jwt:claim:rt_hash"],
            secret::left_half_hash(&minted.response.refresh_token)
        );
    }

    #[tokio::test]
    async fn tokens_are_stored_only_as_hashes() {
        let config = Config::new("https://op.example.com").unwrap();
        let r = request("r1");
        let minted = mint(
            &r,
            &config,
            &LocalSigner::generate(),
            &OsRandom,
            r.created_at,
        )
        .await
        .unwrap();
        let stored = serde_json::to_string(&minted.records).unwrap();
        assert!(!stored.contains(&minted.response.access_token));
        assert!(!stored.contains(&minted.response.refresh_token));
        assert_eq!(
            minted.records[0].hash,
            secret::hash(&minted.response.access_token)
        );
    }
}
