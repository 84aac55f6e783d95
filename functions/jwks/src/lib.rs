//! `GET /jwks`: the OP's public signing keys.

use ciba_shared::http::json_response;
use ciba_shared::ports::Signer;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{Value, json};

/// The JWK Set; built once per cold start.
pub fn key_set(signer: &dyn Signer) -> Value {
    json!({ "keys": signer.published_jwks() })
}

pub fn handle(key_set: &Value) -> Response<Body> {
    json_response(StatusCode::OK, key_set, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_shared::ports::LocalSigner;

    #[test]
    fn key_set_publishes_the_signing_key_with_kid_use_and_alg() {
        let signer = LocalSigner::generate();
        let set = key_set(&signer);
        let key = &set["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["kid"], signer.kid());
        assert!(key.get("d").is_none(), "never the private half");
    }
}
